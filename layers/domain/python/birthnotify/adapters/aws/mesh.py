"""The mesh function's adapters, wired from boto3 clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from birthnotify.adapters.lock import DynamoRunLock
from birthnotify.adapters.mesh import S3InboundWriter, mesh_connector
from birthnotify.adapters.sqs import SqsEvents
from birthnotify.application.mesh import MeshPorts
from birthnotify.shared.names import MESH_RUN_LEASE
from birthnotify.shared.settings import MeshSettings

MESH_LOCK = MESH_RUN_LEASE


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
