"""A role's permissions as one customer-managed policy, where every wildcard carries its reason.

Roles here get no inline policies (HIPAA/NIST IAMNoInlinePolicy) and no AWS-managed policies
(AwsSolutions-IAM4): each role is given exactly the statements written in its construct. A statement with
``*`` in an action or resource must say why, and that reason becomes the acknowledgement of the
AwsSolutions-IAM5 finding it causes, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.nag import acknowledge, wildcard_findings


def assumable_role(
    scope: Construct,
    *,
    name: str,
    description: str,
    principals: Sequence[str],
    policy_description: str,
    role_id: str,
    policy_id: str,
) -> tuple[iam.Role, LeastPrivilegePolicy]:
    """A role that the given outside principals assume, for an hour at most, with one least-privilege
    policy of its own (the caller adds its statements)."""
    role = iam.Role(
        scope,
        role_id,
        role_name=name,
        description=description,
        assumed_by=iam.CompositePrincipal(*(iam.ArnPrincipal(arn) for arn in principals)),
        max_session_duration=Duration.hours(1),
    )
    policy = LeastPrivilegePolicy(scope, policy_id, role=role, name=name, description=policy_description)
    return role, policy


class LeastPrivilegePolicy(Construct):
    """One ``AWS::IAM::ManagedPolicy`` attached to one role."""

    def __init__(self, scope: Construct, construct_id: str, *, role: iam.IRole, name: str, description: str) -> None:
        super().__init__(scope, construct_id)
        self.policy = iam.ManagedPolicy(
            self, "Resource", managed_policy_name=name, description=description, roles=[role]
        )
        self._sids: set[str] = set()

    def allow(
        self,
        sid: str,
        actions: Sequence[str],
        resources: Sequence[str],
        *,
        conditions: Mapping[str, Any] | None = None,
        wildcard_reason: str | None = None,
    ) -> None:
        if sid in self._sids:
            raise ValueError(f"statement {sid} is already in {self.node.path}")
        self._sids.add(sid)
        findings = wildcard_findings(self, list(actions), list(resources))
        if findings and not wildcard_reason:
            raise ValueError(f"{self.node.path} statement {sid} has wildcards {findings}: give a wildcard_reason")
        if wildcard_reason and not findings:
            raise ValueError(f"{self.node.path} statement {sid} has no wildcard: drop the wildcard_reason")
        self.policy.add_statements(
            iam.PolicyStatement(
                sid=sid,
                actions=list(actions),
                resources=list(resources),
                conditions=dict(conditions) if conditions else None,
            )
        )
        for finding in findings:
            acknowledge(self.policy, finding, wildcard_reason or "")
