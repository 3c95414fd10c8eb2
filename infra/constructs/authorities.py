"""Per registered authority: its FIFO queue (named by birthnotify.shared.names.authority_queue_name), a FIFO
dead-letter queue, its own KMS key, and a consumer role that its principals assume to drain the queue; these
live in the authority stacks (infra.shards). (The held store is in the core stack: infra/constructs/held.py.)
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
        sender_role_names: list[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        stack = Stack.of(self)
        # Ingest, and the roles of the operators' commands that send to a council (a held record's release,
        # a re-delivery), when the stage has them.
        self.senders = [
            iam.ArnPrincipal(stack.format_arn(service="iam", region="", resource="role", resource_name=name))
            for name in sender_role_names
        ]
        self.by_gss: dict[str, AuthorityResources] = {
            authority.gss_code: self._authority(authority) for authority in authorities
        }

    def _authority(self, authority: Authority) -> AuthorityResources:
        config, gss = self.config, authority.gss_code
        scope = Construct(self, gss)
        key = customer_key(scope, "Key", config, f"authority/{gss}", f"queue of {authority.name} ({gss})")
        # The ingest function (and the operators' release and re-delivery roles) encrypt for this authority
        # through this grant, in the key policy, so that their own policies name no authority key and do not
        # grow with the registry.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="IngestSendsToThisAuthority",
                principals=self.senders,
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
        CfnOutput(scope, "QueueUrl", value=pair.queue.queue_url, description=f"{authority.name}: queue to consume")
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
