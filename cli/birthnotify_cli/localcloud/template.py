"""The synthesized CloudFormation template, adapted for moto's CloudFormation, and the intrinsic functions
needed to apply by hand what moto cannot (with the same values the template holds)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-2"

APPLIED_BY_HAND = {
    "Custom::S3BucketNotifications": "moto's CloudFormation cannot run custom resources: the bucket "
    "notification configuration from its properties is applied with PutBucketNotificationConfiguration",
    "AWS::S3::BucketPolicy": "moto's CloudFormation skips bucket policies: applied with PutBucketPolicy",
    "AWS::SQS::QueuePolicy": "moto's CloudFormation skips queue policies: applied with SetQueueAttributes",
    "AWS::Lambda::EventSourceMapping": "moto would invoke functions inside SendMessage, one message a call, "
    "ignoring partial batch failures (and needs Docker): the local runtime polls the queue instead",
    "AWS::SES::ConfigurationSet": "no moto CloudFormation model: created with SESv2 CreateConfigurationSet",
    "AWS::SES::EmailIdentity": "no moto CloudFormation model: created with SESv2 CreateEmailIdentity",
    "AWS::SES::ConfigurationSetEventDestination": "no moto CloudFormation model: created with SES "
    "CreateConfigurationSetEventDestination (moto records it; no bounce ever happens locally)",
    "AWS::SNS::TopicPolicy": "no moto CloudFormation model: applied with SetTopicAttributes",
    "AWS::SNS::Subscription": "no moto CloudFormation model: created with Subscribe",
    "AWS::CloudWatch::Alarm": "no moto CloudFormation model: created with PutMetricAlarm (moto stores alarms "
    "but never evaluates metrics, so they do not fire)",
}
CREATED_BEFORE_THE_STACK = {"AWS::SES::ConfigurationSet": "Name", "AWS::SES::EmailIdentity": "EmailIdentity"}
"""Resources others refer to by Ref: made first, and each Ref replaced with the name they are made with."""


@dataclass
class AdaptedTemplate:
    """The template moto deploys, and what was taken out of it to be applied or run locally."""

    body: dict[str, Any]
    removed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Logical id -> resource, for everything in APPLIED_BY_HAND."""
    names: dict[str, str] = field(default_factory=dict)
    """Logical id -> physical name of the resources created before the stack."""

    def removed_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.removed.items() if v["Type"] == resource_type}


def adapt(template: dict[str, Any]) -> AdaptedTemplate:
    body = copy.deepcopy(template)
    resources = body["Resources"]
    removed = {k: resources.pop(k) for k in [k for k, v in resources.items() if v["Type"] in APPLIED_BY_HAND]}
    names = {logical: removed[logical]["Properties"][prop] for logical in removed
             if (prop := CREATED_BEFORE_THE_STACK.get(removed[logical]["Type"]))}
    body["Resources"] = resources = _replace_refs(resources, names)
    body["Outputs"] = _replace_refs(body.get("Outputs", {}), names)
    for resource in resources.values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends is not None:
            kept = [d for d in depends if d not in removed]
            if kept:
                resource["DependsOn"] = kept
            else:
                resource.pop("DependsOn")
    return AdaptedTemplate(body, removed, names)


def _replace_refs(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_replace_refs(item, names) for item in value]
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in names:
            return names[value["Ref"]]
        return {key: _replace_refs(item, names) for key, item in value.items()}
    return value


class Resolver:
    """Resolves Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select and Fn::Split against deployed physical ids."""

    def __init__(self, template: dict[str, Any], physical: dict[str, str], stack_name: str) -> None:
        self._resources = template["Resources"]
        self._physical = physical
        self._pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws",
                        "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack_name}
        self._parameters = {name: spec.get("Default", "") for name, spec in template.get("Parameters", {}).items()}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (name, argument), = value.items()
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
                return self(items)[int(index)]
            if name == "Fn::Split":
                separator, text = argument
                return str(self(text)).split(separator)
        return {key: self(item) for key, item in value.items()}

    def ref(self, name: str) -> str:
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        return self._physical[name]

    def get_att(self, logical: str, attribute: str) -> str:
        kind = self._resources[logical]["Type"]
        physical = self._physical[logical]
        if kind == "AWS::SQS::Queue":
            name = physical.rsplit("/", 1)[-1]
            return {"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", "QueueName": name, "QueueUrl": physical}[attribute]
        arns = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{physical}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{physical}",
            "AWS::SNS::Topic": physical,
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        raise KeyError(f"the local cloud cannot resolve Fn::GetAtt {logical}.{attribute} ({kind})")

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name in variables:
                out.append(str(variables[name]))
            elif "." in name:
                out.append(self.get_att(*name.split(".", 1)))
            else:
                out.append(self.ref(name))
        out.append(rest)
        return "".join(out)


def policy_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))
