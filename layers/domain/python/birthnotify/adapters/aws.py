"""The functions' adapters, wired from boto3 clients: one place, used by the handlers and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from botocore.config import Config

from birthnotify.adapters.deliveries import DynamoDeliveries
from birthnotify.adapters.digest import DynamoDigestStore, DynamoSentMarks
from birthnotify.adapters.held import DynamoHeldStore
from birthnotify.adapters.ledger import S3Destinations, S3Ledger, S3Snapshots, ledger_key
from birthnotify.adapters.lock import DynamoRunLock
from birthnotify.adapters.mesh import S3InboundWriter, mesh_connector
from birthnotify.adapters.progress import DynamoProgressStore
from birthnotify.adapters.s3 import S3ReportReader, S3Reports, S3Uploads
from birthnotify.adapters.sqs import DEFAULT_CONCURRENCY, BatchSender, SqsEvents, SqsQueues
from birthnotify.application.ingest import IngestPorts
from birthnotify.application.mesh import MeshPorts
from birthnotify.application.notify.service import NotifyPorts
from birthnotify.application.ports import EmailTransport
from birthnotify.shared.names import MESH_RUN_LEASE
from birthnotify.shared.settings import IngestSettings, MeshSettings, NotifySettings

MESH_LOCK = MESH_RUN_LEASE

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


def notify_ports(
    settings: NotifySettings,
    *,
    dynamodb: Any,
    transport: EmailTransport,
    s3: Any = None,
    read_mesh_secret: Callable[[], str] | None = None,
) -> NotifyPorts:
    """The notify function's adapters; with ``read_mesh_secret`` (the MESH secret's value) and ``s3``, it
    sends reports of files that came by MESH back by MESH."""
    mesh = bool(settings.mesh_secret_id) and read_mesh_secret is not None and s3 is not None
    return NotifyPorts(
        transport=transport,
        digests=DynamoDigestStore(dynamodb, settings.state_table),
        marks=DynamoSentMarks(dynamodb, settings.state_table),
        deliveries=DynamoDeliveries(dynamodb, settings.state_table),
        idempotency_store=DynamoDBPersistenceLayer(table_name=settings.state_table, boto3_client=dynamodb),
        mesh=mesh_connector(settings.mesh_secret_id, read_mesh_secret) if mesh and read_mesh_secret else None,
        reports=S3ReportReader(s3, settings.reports_bucket) if mesh else None,
        held=DynamoHeldStore(dynamodb, settings.held_table) if settings.held_table else None,
    )


def mesh_ports(
    settings: MeshSettings, *, s3: Any, sqs: Any, dynamodb: Any, read_secret: Callable[[], str]
) -> MeshPorts:
    """The mesh function's adapters; ``read_secret`` gives the MESH secret's value."""
    return MeshPorts(
        connect=mesh_connector(settings.mesh_secret_id, read_secret),
        inbound=S3InboundWriter(s3, settings.inbound_bucket),
        lock=DynamoRunLock(dynamodb, settings.state_table, MESH_LOCK),
        notices=SqsEvents(sqs, settings.file_events_queue_url),
    )
