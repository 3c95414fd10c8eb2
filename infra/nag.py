"""Compliance checks attached to the app, and the one way this code acknowledges a finding.

Synthesis runs cdk-nag's AWS Solutions, HIPAA Security and NIST 800-53 rev 5 packs and CDK's own
CloudFormation validation, and fails on any finding that is not acknowledged (warnings included).
An acknowledgement is recorded on the construct it concerns, with a reason; ``collect`` reads them back
from the construct tree, and docs/infrastructure.md lists them (``python -m infra.docs --write``).

checkov (run by ``make synth`` and tests/infra on the synthesized templates) reads its suppressions from
each resource's template Metadata; ``skip_checkov`` writes one with its reason and ``checkov_skips`` reads
them back from templates for the same document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsii
from aws_cdk import Acknowledgment, App, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks
from constructs import IConstruct

PACKS = ("AwsSolutions", "HIPAA.Security", "NIST.800.53.R5")
AUDIT_CONTEXT = "birthnotify:audit-acknowledgements"
"""Context flag: record acknowledgements without applying them, so a test can check that each one still
matches a finding (an acknowledgement nothing needs any more is removed, not kept as noise)."""
RECORD_KEY = "birthnotify:acknowledgement"
VALIDATION_REPORT = "validation-report.json"

STRICT_VALIDATION_CONTEXT = {
    # CDK's built-in CloudFormation validation: errors stay errors (not downgraded to warnings) ...
    "@aws-cdk/core:validateAgainstDefaultRules": True,
    # ... and any warning, from any plugin (cdk-nag included), fails synthesis.
    "@aws-cdk/core:strictCfnValidateErrors": True,
    # Construct annotations (deprecations, misconfigurations) are part of the same report.
    "@aws-cdk/core:annotationsInValidationReport": True,
    "@aws-cdk/core:failSynthOnValidationErrors": True,
}
"""Context that makes every validation finding fail synthesis (set by infra.app on every App)."""


def attach_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app), NIST80053R5Checks(app))


@dataclass(frozen=True, order=True)
class Acknowledgement:
    path: str
    """Construct path, without the stack: the finding is acknowledged there and below."""
    rule: str
    reason: str


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one finding (``AwsSolutions-S1``, or a granular ``AwsSolutions-IAM5[Resource::...]``)
    on ``scope`` and everything below it. ``reason`` must say why this finding is acceptable here."""
    if len(reason) < 40:
        raise ValueError(f"acknowledging {rule} needs a specific reason, not {reason!r}")
    scope.node.add_metadata(RECORD_KEY, {"rule": rule, "reason": reason})
    if scope.node.try_get_context(AUDIT_CONTEXT):
        return
    try:
        Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
    except RuntimeError as exc:  # how jsii surfaces the JavaScript error
        if "InvalidValidationId" not in str(exc):
            raise
        # Validations.acknowledge refuses some granular ids (several '::'); cdk-nag reads the metadata itself.
        scope.node.add_metadata(Validations.ACKNOWLEDGED_RULES_METADATA_KEY, {rule: reason})


def acknowledge_packs(scope: IConstruct, rule: str, reason: str, packs: tuple[str, ...] = PACKS[1:]) -> None:
    """The same finding reported by several packs (``LambdaDLQ`` is both HIPAA's and NIST's)."""
    for pack in packs:
        acknowledge(scope, f"{pack}-{rule}", reason)


CHECKOV_METADATA = "checkov"


def skip_checkov(scope: IConstruct, check: str, reason: str) -> None:
    """Suppress checkov's ``check`` (``CKV_AWS_117``) on the CloudFormation resource of ``scope`` (its default
    child for an L2 construct), with ``reason`` in the resource's Metadata where checkov reads it."""
    if len(reason) < 40:
        raise ValueError(f"skipping {check} needs a specific reason, not {reason!r}")
    resource = scope if isinstance(scope, CfnResource) else scope.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{scope.node.path} has no CloudFormation resource to carry a checkov suppression")
    current = dict(resource.get_metadata(CHECKOV_METADATA) or {})
    skips = list(current.get("skip", []))
    if any(dict(skip)["id"] == check for skip in skips):
        raise ValueError(f"{check} is already skipped on {scope.node.path}")
    resource.add_metadata(CHECKOV_METADATA, {**current, "skip": [*skips, {"id": check, "comment": reason}]})


@dataclass(frozen=True, order=True)
class CheckovSkip:
    path: str
    """Construct path of the resource, without the stack (``(stack)/...`` naming the stack's kind)."""
    check: str
    reason: str


def checkov_skips(template: dict[str, Any]) -> list[CheckovSkip]:
    """Every checkov suppression in one synthesized template."""
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        metadata = resource.get("Metadata", {})
        path = metadata.get("aws:cdk:path", logical_id).split("/", 1)[-1].removesuffix("/Resource")
        for skip in metadata.get(CHECKOV_METADATA, {}).get("skip", []):
            found.append(CheckovSkip(path, skip["id"], skip.get("comment", "")))
    return sorted(found)


def wildcard_findings(scope: IConstruct, actions: list[str], resources: list[str]) -> list[str]:
    """The AwsSolutions-IAM5 finding ids that cdk-nag reports for one Allow statement: each action or
    resource containing ``*``, with references flattened the way cdk-nag flattens them."""
    stack = Stack.of(scope)
    findings = [f"Action::{action}" for action in actions if "*" in action]
    for resource in resources:
        flat = _flatten(stack.resolve(resource))
        if "*" in flat:
            findings.append(f"Resource::{flat}")
    return [f"AwsSolutions-IAM5[{finding}]" for finding in findings]


def _flatten(node: Any) -> str:
    """cdk-nag's flattenCfnReference: Fn::Join joined, Fn::GetAtt as <Id.Attr>, Ref as <Id>."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(_flatten(item) for item in items)
        if "Fn::Sub" in node:
            return _flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return _flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    """Construct path of the resource, without the stack."""
    rule: str
    plugin: str
    severity: str


def read_findings(report: dict[str, Any]) -> list[Finding]:
    """Unacknowledged findings in a validation report (validation-report.json of the cloud assembly)."""
    found = set()
    for plugin in report.get("pluginReports", []):
        for violation in plugin.get("violations", []):
            for resource in violation.get("violatingConstructs", []) or [{"constructPath": "?"}]:
                path = resource.get("constructPath") or "?"
                found.add(
                    Finding(
                        path.split("/", 1)[1] if "/" in path else path,
                        violation["ruleName"],
                        plugin["pluginName"],
                        violation.get("severity", "?"),
                    )
                )
    return sorted(found)


def covers(acknowledgement: Acknowledgement, finding: Finding) -> bool:
    """An acknowledgement covers a finding of its rule on its construct or anything below it."""
    return acknowledgement.rule == finding.rule and (
        acknowledgement.path in ("(stack)", finding.path) or finding.path.startswith(acknowledgement.path + "/")
    )


def collect(root: IConstruct) -> list[Acknowledgement]:
    """Every acknowledgement made with ``acknowledge`` in the tree under ``root`` (paths relative to their
    stack), and any made otherwise (``Validations.of(...).acknowledge`` directly)."""
    found: set[Acknowledgement] = set()
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == RECORD_KEY:
                data = dict(entry.data)
                found.add(Acknowledgement(_relative_path(construct), data["rule"], data["reason"]))
            elif entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY and entry.data:
                for rule, reason in dict(entry.data).items():
                    rule = rule.split("::", 1)[1] if rule.lower().startswith("annotation::") else rule
                    found.add(Acknowledgement(_relative_path(construct), rule, reason))
    return sorted(found)


def _relative_path(construct: IConstruct) -> str:
    path = construct.node.path
    try:
        stack_path = Stack.of(construct).node.path
    except (jsii.errors.JSIIError, RuntimeError):  # not inside a stack
        return path
    return path[len(stack_path) :].lstrip("/") or "(stack)"
