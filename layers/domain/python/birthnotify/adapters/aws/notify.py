"""The notify function's adapters, wired from boto3 clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from birthnotify.adapters.deliveries import DynamoDeliveries
from birthnotify.adapters.digest import DynamoDigestStore, DynamoSentMarks
from birthnotify.adapters.held import DynamoHeldStore
from birthnotify.adapters.mesh import mesh_connector
from birthnotify.adapters.s3 import S3ReportReader
from birthnotify.application.notify.service import NotifyPorts
from birthnotify.application.ports import EmailTransport
from birthnotify.shared.settings import NotifySettings


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
