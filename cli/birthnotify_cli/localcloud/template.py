"""The synthesized CloudFormation template, adapted for moto's CloudFormation, and the intrinsic functions
needed to apply by hand what moto cannot (with the values the template holds).

Every resource moto's CloudFormation cannot create is taken out of the template and given a treatment:
applied by hand after the stack (or before it, when others refer to it), played by the local runtime, or
skipped. Nothing is dropped without a reason that ``DeployReport`` shows.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
"""moto's default account: ARNs, the asset bucket and moto's in-process backends all use it."""
REGION = "eu-west-2"

APPLIED = "applied"
"""Applied by hand with the resource's own properties, after the stack (or before it: CREATED_BEFORE)."""
LOCAL_RUNTIME = "local-runtime"
"""Played by the local runtime (birthnotify_cli.localcloud.runtime)."""
SKIPPED = "skipped"
"""Not created at all."""
NOT_EMULATED = "not-emulated"
"""Created, but some of its behaviour does not happen locally."""

TREATMENTS: dict[str, tuple[str, str]] = {
    "Custom::S3BucketNotifications": (
        APPLIED,
        "moto's CloudFormation cannot run custom resources: the bucket "
        "notification configuration in its properties is applied with "
        "PutBucketNotificationConfiguration",
    ),
    "AWS::S3::BucketPolicy": (APPLIED, "moto's CloudFormation skips bucket policies: applied with PutBucketPolicy"),
    "AWS::SQS::QueuePolicy": (
        APPLIED,
        "moto's CloudFormation skips queue policies: applied with SetQueueAttributes Policy",
    ),
    "AWS::Lambda::EventSourceMapping": (
        LOCAL_RUNTIME,
        "moto would invoke the function inside SendMessage, one "
        "message a call, ignoring partial batch failures (and it needs Docker): "
        "the local runtime polls the queue instead",
    ),
    "AWS::SES::ConfigurationSet": (
        APPLIED,
        "no moto CloudFormation model: created with SESv2 CreateConfigurationSet before the stack",
    ),
    "AWS::SES::EmailIdentity": (
        APPLIED,
        "no moto CloudFormation model: created with SESv2 CreateEmailIdentity "
        "before the stack (moto verifies it at once)",
    ),
    "AWS::SES::Template": (
        APPLIED,
        "no moto CloudFormation model: created with SES CreateTemplate before the stack (the notifier's "
        "SendBulkTemplatedEmail fills it in)",
    ),
    "AWS::SES::ConfigurationSetEventDestination": (
        APPLIED,
        "no moto CloudFormation model: created with SES "
        "CreateConfigurationSetEventDestination (moto records it; no "
        "bounce or complaint ever happens locally)",
    ),
    "AWS::SNS::TopicPolicy": (APPLIED, "no moto CloudFormation model: applied with SetTopicAttributes Policy"),
    "AWS::SNS::Subscription": (APPLIED, "no moto CloudFormation model: created with Subscribe"),
    "AWS::CloudWatch::Alarm": (
        APPLIED,
        "no moto CloudFormation model: created with PutMetricAlarm (moto stores "
        "alarms but never evaluates metrics, so they do not fire)",
    ),
    "AWS::SecretsManager::Secret": (
        APPLIED,
        "no moto CloudFormation model: created with CreateSecret before the "
        "stack, with the template's name and description and a generated value as "
        "CloudFormation's GenerateSecretString gives (not encrypted with the stack's "
        "key, which does not exist yet: moto does not encrypt); each Ref is its ARN",
    ),
}
CREATED_BEFORE: dict[str, tuple[str, ...]] = {
    "AWS::SES::ConfigurationSet": ("Name",),
    "AWS::SES::EmailIdentity": ("EmailIdentity",),
    "AWS::SES::Template": ("Template", "TemplateName"),
}
"""Resources others refer to by Ref: made before the stack, each Ref replaced by the name they are made with
(the path of that name in the resource's properties)."""
CUSTOM_RESOURCE_WHY = (
    "a custom resource: moto's CloudFormation cannot invoke its provider, and the stack would "
    "wait in CREATE_IN_PROGRESS for ever; not applied locally"
)
NO_MODEL_WHY = "moto's CloudFormation has no model for {type}; not created locally"
SKIPPED_PLACEHOLDER = "localcloud-skipped-{logical}"
"""What a Ref or Fn::GetAtt to a skipped resource becomes, so the resources that refer to it still deploy."""


@dataclass(frozen=True)
class Treatment:
    logical_id: str
    resource_type: str
    action: str
    why: str


@dataclass
class AdaptedTemplate:
    """The template moto deploys, and what was taken out of it to be applied, run locally or skipped."""

    body: dict[str, Any]
    removed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Logical id -> resource, for every resource taken out."""
    treatments: dict[str, Treatment] = field(default_factory=dict)
    """Logical id -> what happens to it instead, and why."""
    names: dict[str, str] = field(default_factory=dict)
    """Logical id -> physical name of the resources created before the stack."""
    notes: list[str] = field(default_factory=list)
    """Other changes made to the template (rules removed, references to skipped resources replaced)."""

    def removed_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.removed.items() if v["Type"] == resource_type}


def is_custom_resource(resource_type: str) -> bool:
    return resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource"


def moto_supported_types() -> set[str]:
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    return set(get_model_map()) | set(NULL_MODELS)


def adapt(
    template: dict[str, Any], supported: Iterable[str] | None = None, created: dict[str, str] | None = None
) -> AdaptedTemplate:
    """Take out of the template what moto's CloudFormation cannot create, and say what happens instead.
    ``created``: logical id -> physical id (what a Ref gives) of resources already made before the stack."""
    supported = set(moto_supported_types() if supported is None else supported)
    body = copy.deepcopy(template)
    resources: dict[str, Any] = body.get("Resources", {})
    treatments: dict[str, Treatment] = {}
    for logical, resource in resources.items():
        kind = resource["Type"]
        if kind in TREATMENTS:
            action, why = TREATMENTS[kind]
        elif is_custom_resource(kind):
            action, why = SKIPPED, CUSTOM_RESOURCE_WHY
        elif kind not in supported:
            action, why = SKIPPED, NO_MODEL_WHY.format(type=kind)
        else:
            continue
        treatments[logical] = Treatment(logical, kind, action, why)
    removed = {logical: resources.pop(logical) for logical in treatments}
    names = {
        logical: functools.reduce(lambda value, key: value[key], path, removed[logical]["Properties"])
        for logical in removed
        if (path := CREATED_BEFORE.get(removed[logical]["Type"]))
    }
    names.update(created or {})
    skipped = {logical for logical, t in treatments.items() if t.action == SKIPPED}
    notes: list[str] = []

    # Bootstrap version check: moto does not evaluate rules; the SSM parameter the Parameter reads is put
    # before the stack, and the rule goes so nothing depends on how moto treats it.
    rules = body.get("Rules", {})
    if "CheckBootstrapVersion" in rules:
        rules.pop("CheckBootstrapVersion")
        notes.append(
            "rule CheckBootstrapVersion removed (the SSM parameter /cdk-bootstrap/hnb659fds/version is put "
            "as 21 before the stack)"
        )
        if not rules:
            body.pop("Rules")

    replaced: set[str] = set()
    body["Resources"] = _replace_refs(resources, names, skipped, replaced)
    outputs = body.get("Outputs", {})
    for name in [n for n, output in outputs.items() if _refers_to(output, skipped)]:
        outputs.pop(name)
        notes.append(f"output {name} removed: it refers to a skipped resource")
    if outputs:
        body["Outputs"] = _replace_refs(outputs, names, set(), set())
    for logical in sorted(replaced):
        notes.append(f"references to skipped {logical} replaced by {SKIPPED_PLACEHOLDER.format(logical=logical)!r}")
    for resource in body["Resources"].values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends is not None:
            kept = [d for d in depends if d not in removed]
            if kept:
                resource["DependsOn"] = kept
            else:
                resource.pop("DependsOn")
    return AdaptedTemplate(body, removed, treatments, names, notes)


def _refers_to(value: Any, logical_ids: set[str]) -> bool:
    if isinstance(value, list):
        return any(_refers_to(item, logical_ids) for item in value)
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return value["Ref"] in logical_ids
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            return (target[0] if isinstance(target, list) else str(target).split(".", 1)[0]) in logical_ids
        return any(_refers_to(item, logical_ids) for item in value.values())
    return False


def _replace_refs(value: Any, names: dict[str, str], skipped: set[str], replaced: set[str]) -> Any:
    if isinstance(value, list):
        return [_replace_refs(item, names, skipped, replaced) for item in value]
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in names:
            return names[value["Ref"]]
        if _refers_to(value, skipped) and set(value) & {"Ref", "Fn::GetAtt"} and len(value) == 1:
            target = value.get("Ref") or (
                value["Fn::GetAtt"][0]
                if isinstance(value["Fn::GetAtt"], list)
                else value["Fn::GetAtt"].split(".", 1)[0]
            )
            replaced.add(target)
            return SKIPPED_PLACEHOLDER.format(logical=target)
        return {key: _replace_refs(item, names, skipped, replaced) for key, item in value.items()}
    return value


class Resolver:
    """Resolves Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select and Fn::Split against deployed physical ids."""

    def __init__(self, template: dict[str, Any], physical: dict[str, str], stack_name: str) -> None:
        self._resources = template["Resources"]
        self._physical = physical
        self._pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack_name}/local",
            "AWS::NoValue": None,
        }
        self._parameters = {name: spec.get("Default", "") for name, spec in template.get("Parameters", {}).items()}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self(item) for item in value) if item is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                return self.ref(argument)
            if name == "Fn::GetAtt":
                logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(logical, attribute)
            if name == "Fn::Join":
                separator, parts = argument
                return separator.join(str(self(part)) for part in parts)
            if name == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                return self._sub(text, {k: self(v) for k, v in variables.items()})
            if name == "Fn::Select":
                index, items = argument
                return self(items)[int(self(index))]
            if name == "Fn::Split":
                separator, text = argument
                return str(self(text)).split(separator)
            if name.startswith("Fn::"):
                raise KeyError(f"the local cloud cannot resolve {name}")
        resolved = {key: self(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not None}

    def ref(self, name: str) -> Any:
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        try:
            return self._physical[name]
        except KeyError:
            raise KeyError(f"the local cloud has no physical id for Ref {name}") from None

    def get_att(self, logical: str, attribute: str) -> str:
        kind = self._resources[logical]["Type"]
        physical = self.ref(logical)
        if kind == "AWS::SQS::Queue":
            name = physical.rsplit("/", 1)[-1]
            attributes = {"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", "QueueName": name, "QueueUrl": physical}
        elif kind == "AWS::S3::Bucket":
            attributes = {
                "Arn": f"arn:aws:s3:::{physical}",
                "DomainName": f"{physical}.s3.amazonaws.com",
                "RegionalDomainName": f"{physical}.s3.{REGION}.amazonaws.com",
            }
        else:
            arns = {
                "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}",
                "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{physical}",
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}",
                "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{physical}",
                "AWS::SNS::Topic": physical,
                "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{physical}",
                "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{physical}:*",
            }
            attributes = {"Arn": arns[kind]} if kind in arns else {}
            if kind == "AWS::SNS::Topic":
                attributes["TopicName"] = physical.rsplit(":", 1)[-1]
        if attribute not in attributes:
            raise KeyError(f"the local cloud cannot resolve Fn::GetAtt {logical}.{attribute} ({kind})")
        return attributes[attribute]

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif "." in name and not name.startswith("AWS::"):
                out.append(self.get_att(*name.split(".", 1)))
            else:
                out.append(str(self.ref(name)))
        out.append(rest)
        return "".join(out)


def policy_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))
