"""The ingest function's adapters, wired from boto3 clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from botocore.config import Config

from birthnotify.adapters.held import DynamoHeldStore
from birthnotify.adapters.ledger import S3Destinations, S3Ledger, S3Snapshots, ledger_key
from birthnotify.adapters.progress import DynamoProgressStore
from birthnotify.adapters.s3 import S3Reports, S3Uploads
from birthnotify.adapters.sqs import DEFAULT_CONCURRENCY, BatchSender, SqsEvents, SqsQueues
from birthnotify.application.ingest import IngestPorts
from birthnotify.shared.settings import IngestSettings

SQS_CLIENT_CONFIG = Config(max_pool_connections=DEFAULT_CONCURRENCY, parameter_validation=False)
"""The ingest function's SQS client: a connection for each request the sender has in flight (botocore's
default pool of 10 would make the rest wait), and no client-side parameter validation: the entries are built
by BatchSender from checked records, SQS validates every request itself (a refusal fails the file, which is
retried and alarmed), and botocore's walk over each entry was ~13% of a SendMessageBatch's CPU (make bench)."""


def ingest_ports(
    settings: IngestSettings,
    *,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    secrets: Any,
    sleep: Callable[[float], None] = time.sleep,
    send_concurrency: int = DEFAULT_CONCURRENCY,
) -> IngestPorts:
    """The ingest function's adapters over low-level boto3 clients (``sqs`` made with SQS_CLIENT_CONFIG; the
    ledger key is read here, once)."""
    return IngestPorts(
        uploads=S3Uploads(s3),
        reports=S3Reports(s3, settings.reports_bucket),
        events=SqsEvents(sqs, settings.file_events_queue_url),
        queues=SqsQueues(sqs, settings.authority_queue_prefix, settings.queue_url_base),
        progress=DynamoProgressStore(dynamodb, settings.state_table, sleep=sleep),
        sender=lambda on_accepted: BatchSender(sqs, on_accepted, sleep=sleep, concurrency=send_concurrency),
        held=lambda on_stored, conditional: DynamoHeldStore(dynamodb, settings.held_table, sleep=sleep).writer(
            on_stored, conditional, retention_days=settings.held_retention_days
        ),
        ledger=S3Ledger(s3, settings.ledger_bucket),
        ledger_key=ledger_key(secrets, settings.ledger_key_secret_id),
        destinations=S3Destinations(s3, settings.ledger_bucket),
        snapshots=S3Snapshots(s3, settings.ledger_bucket),
        idempotency_store=DynamoDBPersistenceLayer(table_name=settings.state_table, boto3_client=dynamodb),
    )
