"""Per registered authority: its FIFO queue (named by birthnotify.shared.names.authority_queue_name), a FIFO
dead-letter queue, its own KMS key, and a consumer role that its principals assume to drain the queue; these
live in the authority stacks (infra.shards). Also the held queue, in the core stack, where records wait for
a person to find their council or agreement.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from birthnotify.domain.registry import Authority
from birthnotify.shared.names import authority_queue_name
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.keys import customer_key, kms_via
from infra.constructs.policy import LeastPrivilegePolicy, assumable_role
from infra.constructs.queues import queue_with_dlq

CONSUMER_VISIBILITY = Duration.minutes(5)
CONSUMER_MAX_RECEIVES = 10
"""Receives before an authority's message moves to its DLQ (the consume command deletes what it wrote)."""
CONSUMER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


@dataclass(frozen=True)
class AuthorityResources:
    authority: Authority
    key: kms.Key
    queue: sqs.Queue
    dlq: sqs.Queue
    role: iam.Role | None
    policy: LeastPrivilegePolicy | None


class AuthorityQueues(Construct):
    """Every authority of one shard (infra.shards), in that shard's stack. Nothing here refers to the core
    stack by reference: the ingest role and the alarm topic are named by their predictable ARNs, so the core
    stack exports nothing and either stack can be updated on its own."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        authorities: list[Authority],
        sender_role_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        stack = Stack.of(self)
        self.sender = iam.ArnPrincipal(
            stack.format_arn(service="iam", region="", resource="role", resource_name=sender_role_name)
        )
        self.by_gss: dict[str, AuthorityResources] = {
            authority.gss_code: self._authority(authority) for authority in authorities
        }

    def _authority(self, authority: Authority) -> AuthorityResources:
        config, gss = self.config, authority.gss_code
        scope = Construct(self, gss)
        key = customer_key(scope, "Key", config, f"authority/{gss}", f"queue of {authority.name} ({gss})")
        # The ingest function encrypts for this authority through this grant, in the key policy, so that its
        # own policy names no authority key and does not grow with the registry.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="IngestSendsToThisAuthority",
                principals=[self.sender],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions=kms_via("sqs"),
            )
        )
        pair = queue_with_dlq(
            scope,
            "Queue",
            config=config,
            name=authority_queue_name(config.authority_queue_prefix, gss),
            key=key,
            fifo=True,
            visibility_timeout=CONSUMER_VISIBILITY,
            max_receive_count=CONSUMER_MAX_RECEIVES,
            dlq_name=f"{config.prefix}-dlq-authority-{gss}.fifo",
        )
        CfnOutput(
            scope, "QueueUrl", value=pair.queue.queue_url, description=f"{authority.name}: queue to consume"
        )
        role = policy = None
        if authority.consumer_principals:
            role, policy = assumable_role(
                scope,
                role_id="ConsumerRole",
                policy_id="ConsumerPolicy",
                name=f"{config.prefix}-consumer-{gss}",
                description=f"{authority.name} ({gss}) reads and deletes its own birth notifications",
                principals=authority.consumer_principals,
                policy_description=f"{authority.name}: its own queue and key, nothing else",
            )
            policy.allow("ConsumeOwnQueue", CONSUMER_ACTIONS, [pair.queue.queue_arn])
            policy.allow("DecryptOwnQueue", ["kms:Decrypt"], [key.key_arn], conditions=kms_via("sqs"))
            CfnOutput(
                scope,
                "ConsumerRoleArn",
                value=role.role_arn,
                description=f"{authority.name}: role its consumer_principals assume",
            )
        return AuthorityResources(authority, key, pair.queue, pair.dlq, role, policy)


def authority_queues_arn_pattern(scope: Construct, config: StageConfig) -> str:
    """Every authority queue of this stage and nothing else: ``<prefix>-`` and a nine-character GSS code,
    FIFO. ``?`` matches one character, so neither the DLQs (named ``...-dlq-authority-...``), nor another
    stage's queues, nor a longer name someone might create under the prefix, match."""
    sample = authority_queue_name(config.authority_queue_prefix, "?" * 9)
    return Stack.of(scope).format_arn(service="sqs", resource=sample)


class Held(Construct):
    """The held queue, where records wait for a person to find their council or agreement, and the optional
    reviewer role. In the core stack, under the construct id ``Authorities`` that held every authority when
    the app was one stack, so that these resources keep their logical ids."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, held_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        held = queue_with_dlq(
            self,
            "Held",
            config=config,
            name=f"{config.prefix}-held",
            key=held_key,
            visibility_timeout=CONSUMER_VISIBILITY,
            max_receive_count=CONSUMER_MAX_RECEIVES,
        )
        self.held_queue, self.held_dlq, self.held_key = held.queue, held.dlq, held_key
        self.reviewer_role = self._reviewer(config) if config.held_reviewer_principals else None

    def _reviewer(self, config: StageConfig) -> iam.Role:
        role, policy = assumable_role(
            self,
            role_id="HeldReviewerRole",
            policy_id="HeldReviewerPolicy",
            name=f"{config.prefix}-held-reviewer",
            description="Operators review records held for want of an authority or agreement",
            principals=config.held_reviewer_principals,
            policy_description="The held queue and its key, nothing else",
        )
        policy.allow(
            "ReviewHeldQueue", [*CONSUMER_ACTIONS, "sqs:ChangeMessageVisibility"], [self.held_queue.queue_arn]
        )
        policy.allow("DecryptHeldQueue", ["kms:Decrypt"], [self.held_key.key_arn], conditions=kms_via("sqs"))
        CfnOutput(self, "HeldReviewerRoleArn", value=role.role_arn)
        return role
