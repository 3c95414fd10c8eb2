"""An SQS queue with its dead-letter queue: KMS-encrypted with a customer-managed key, TLS-only."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig

MAX_RETENTION = Duration.days(14)


@dataclass(frozen=True)
class QueuePair:
    queue: sqs.Queue
    dlq: sqs.Queue


def queue_with_dlq(
    scope: Construct,
    construct_id: str,
    *,
    config: StageConfig,
    name: str,
    key: kms.IKey,
    visibility_timeout: Duration,
    max_receive_count: int,
    fifo: bool = False,
    retention: Duration = MAX_RETENTION,
    dlq_name: str | None = None,
) -> QueuePair:
    """``name`` is the full queue name (with ``.fifo`` for a FIFO queue); the DLQ is ``dlq_name`` or
    ``<name>-dlq``."""
    removal = config.removal_policy
    base = name.removesuffix(".fifo")
    fifo_props = (
        {
            "fifo": True,
            "content_based_deduplication": False,
            "deduplication_scope": sqs.DeduplicationScope.MESSAGE_GROUP,
            "fifo_throughput_limit": sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
        }
        if fifo
        else {}
    )
    common = {
        "encryption": sqs.QueueEncryption.KMS,
        "encryption_master_key": key,
        "data_key_reuse": Duration.hours(1),
        "enforce_ssl": True,
        "removal_policy": removal,
    }
    dlq_name = dlq_name or f"{base}-dlq{'.fifo' if fifo else ''}"
    dlq = sqs.Queue(
        scope,
        f"{construct_id}Dlq",
        queue_name=dlq_name,
        retention_period=MAX_RETENTION,
        **({"fifo": True} if fifo else {}),
        **common,
    )
    queue = sqs.Queue(
        scope,
        construct_id,
        queue_name=name,
        visibility_timeout=visibility_timeout,
        retention_period=retention,
        dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=max_receive_count),
        **fifo_props,
        **common,
    )
    return QueuePair(queue, dlq)
