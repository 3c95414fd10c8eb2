"""S3 ObjectCreated under inbound/ -> ingest queue (+ DLQ) -> the ingest function, and what it may touch:
read uploads, write reports, send to authority queues and the file-events queue, store held records, and
read/write its state. Nothing more."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from birthnotify.shared.names import INBOUND_PREFIX, REPORTS_PREFIX
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.authorities import authority_queues_arn_pattern
from infra.constructs.function import PipelineFunction
from infra.constructs.held import Held
from infra.constructs.keys import Keys, kms_via
from infra.constructs.layers import Layers
from infra.constructs.queues import queue_with_dlq
from infra.constructs.storage import Storage
from infra.nag import acknowledge_packs, skip_checkov

VISIBILITY_PER_TIMEOUT = 6
"""The ingest queue's visibility timeout is six times the function timeout, as AWS recommends for SQS
event sources (a retried batch must not become visible while an earlier attempt is still running)."""
INGEST_BATCH_SIZE = 1
"""One file per invocation: a file can use most of the timeout, and a second file in the same batch would
only be interrupted and resumed."""
INGEST_MAX_RECEIVES = 10
"""Each time a large file is interrupted at the timeout it goes back to the queue and resumes from its
checkpoint, which counts as a receive; a file failing this often goes to the DLQ (and alarms)."""
QUEUE_CONSUMER_ACTIONS = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
]
STATE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
PIPELINE_KEY_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
SQS_TRIGGERED_NO_LAMBDA_DLQ = (
    "Invoked only by its SQS event source mapping (synchronously), never asynchronously: a file that keeps "
    "failing moves to the ingest queue's dead-letter queue, which alarms."
)


class Ingest(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        keys: Keys,
        storage: Storage,
        layers: Layers,
        held: Held,
        file_events: sqs.IQueue,
        table: dynamodb.ITable,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        timeout = Duration.seconds(config.ingest_timeout_seconds)
        pair = queue_with_dlq(
            self,
            "Queue",
            config=config,
            name=f"{config.prefix}-ingest",
            key=keys.pipeline,
            visibility_timeout=Duration.seconds(config.ingest_timeout_seconds * VISIBILITY_PER_TIMEOUT),
            max_receive_count=INGEST_MAX_RECEIVES,
        )
        self.queue, self.dlq = pair.queue, pair.dlq
        storage.notify_queue(self.queue, keys.pipeline)
        self.function = PipelineFunction(
            self,
            "Function",
            config=config,
            name="ingest",
            layers=layers,
            environment=environment,
            description="Validates each uploaded file and forwards every record to its authority's queue",
            memory_mb=config.ingest_memory_mb,
            timeout=timeout,
            log_key=keys.ops,
            environment_key=keys.ops,
        )
        self.function.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=INGEST_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=config.ingest_max_concurrency,
            )
        )
        acknowledge_packs(self.function.function, "LambdaDLQ", SQS_TRIGGERED_NO_LAMBDA_DLQ)
        skip_checkov(self.function.function, "CKV_AWS_116", SQS_TRIGGERED_NO_LAMBDA_DLQ)
        self._permissions(config, keys, storage, held, file_events, table)

    def _permissions(
        self,
        config: StageConfig,
        keys: Keys,
        storage: Storage,
        held: Held,
        file_events: sqs.IQueue,
        table: dynamodb.ITable,
    ) -> None:
        policy = self.function.policy
        policy.allow("ConsumeIngestQueue", [*QUEUE_CONSUMER_ACTIONS, "sqs:GetQueueUrl"], [self.queue.queue_arn])
        policy.allow(
            "ReadUploads",
            ["s3:GetObject", "s3:GetObjectVersion"],
            [storage.inbound_prefix_arn()],
            wildcard_reason=f"Uploads are any file a trust puts under {INBOUND_PREFIX}<ODS>/, not known in "
            "advance; reading is confined to that prefix of the inbound bucket.",
        )
        policy.allow("DecryptUploads", ["kms:Decrypt"], [keys.inbound.key_arn], conditions=kms_via("s3"))
        policy.allow(
            "WriteReports",
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            [storage.reports_prefix_arn()],
            wildcard_reason=f"A report is written per uploaded file under {REPORTS_PREFIX}<ODS>/; writing "
            "is confined to that prefix of the reports bucket.",
        )
        policy.allow(
            "EncryptReports",
            ["kms:GenerateDataKey", "kms:Decrypt"],
            [keys.reports.key_arn],
            conditions=kms_via("s3"),
        )
        # One statement for every authority queue, in whichever authority stack: the function finds each queue by
        # name (authority_queue_name), the pattern admits exactly those names, and the policy stays the same
        # size however many authorities the registry lists. Each authority key's own policy lets this role
        # encrypt for it, so no statement here names an authority key.
        policy.allow(
            "SendToAuthorityQueues",
            ["sqs:SendMessage", "sqs:GetQueueUrl"],
            [authority_queues_arn_pattern(self, config)],
        )
        policy.allow("SendFileEvents", ["sqs:SendMessage"], [file_events.queue_arn])
        held.allow_write(policy)
        policy.allow(
            "UsePipelineKey",
            PIPELINE_KEY_ACTIONS,
            [keys.pipeline.key_arn],
            conditions=kms_via("sqs", "dynamodb"),
        )
        policy.allow("ReadWriteState", STATE_ACTIONS, [table.table_arn])
