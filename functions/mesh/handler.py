"""Lambda entry point: the every-minute schedule (EventBridge) to MeshReceiver, one run of the MESH inbox."""

from __future__ import annotations

from functools import cache

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from birthnotify.adapters.aws.mesh import mesh_ports
from birthnotify.adapters.tracing import traced_lambda_handler
from birthnotify.application.mesh import MeshReceiver, MeshRun, MeshRunFailed
from birthnotify.domain.mesh import MeshWorkflows
from birthnotify.domain.registry import load_registry
from birthnotify.shared.settings import MeshSettings

logger = Logger()
metrics = Metrics()

STOP_MARGIN_MS = 120_000
"""No message is started with less than this left (or half the run, if the function's timeout is short): a
message cut off by the timeout is only fetched again by the next run."""
LEASE_MARGIN_SECONDS = 60
"""The run lock outlives the invocation by this much at most, then the next run may take it."""
SECRET_MAX_AGE_SECONDS = 60
"""A read of the MESH secret is reused this long: a rotated password is used within a minute."""


@cache
def service() -> MeshReceiver:
    """Built once per container: the registry is read at cold start only."""
    settings = MeshSettings.from_env()
    registry = load_registry(settings.registry_path)
    ports = mesh_ports(
        settings,
        s3=boto3.client("s3"),
        sqs=boto3.client("sqs"),
        dynamodb=boto3.client("dynamodb"),
        read_secret=lambda: str(parameters.get_secret(settings.mesh_secret_id, max_age=SECRET_MAX_AGE_SECONDS)),
    )
    workflows = MeshWorkflows(
        files=settings.mesh_file_workflow_id,
        nems=settings.mesh_nems_workflow_id,
        reports=settings.mesh_report_workflow_id,
    )
    return MeshReceiver(
        registry=registry,
        workflows=workflows,
        inbound_bucket=settings.inbound_bucket,
        ports=ports,
        max_messages=settings.mesh_max_messages,
        log=logger,
    )


def _count(run: MeshRun) -> None:
    metrics.add_metric(name="MeshMessagesStored", unit=MetricUnit.Count, value=len(run.stored))
    metrics.add_metric(name="MeshMessagesQuarantined", unit=MetricUnit.Count, value=len(run.quarantined))
    metrics.add_metric(name="MeshMessagesAlreadyStored", unit=MetricUnit.Count, value=len(run.already_stored))
    metrics.add_metric(name="MeshMessagesLeft", unit=MetricUnit.Count, value=run.left)
    metrics.add_metric(name="MeshBytesStored", unit=MetricUnit.Bytes, value=run.bytes_stored)


@logger.inject_lambda_context(clear_state=True)
@traced_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    receiver = service()
    remaining = context.get_remaining_time_in_millis()
    margin = min(STOP_MARGIN_MS, remaining // 2)
    try:
        run = receiver.run(
            context.aws_request_id,
            remaining // 1000 + LEASE_MARGIN_SECONDS,
            should_stop=lambda: context.get_remaining_time_in_millis() < margin,
        )
    except MeshRunFailed as failed:  # the invocation fails (errors alarm); the next run tries the message again
        _count(failed.run)
        metrics.add_metric(name="MeshRunsFailed", unit=MetricUnit.Count, value=1)
        raise
    except Exception:  # MESH unreachable or refusing, the secret unset: nothing was acknowledged
        metrics.add_metric(name="MeshRunsFailed", unit=MetricUnit.Count, value=1)
        raise
    if run.skipped:
        metrics.add_metric(name="MeshRunsSkipped", unit=MetricUnit.Count, value=1)
    else:
        _count(run)
    return {
        "skipped": run.skipped,
        "listed": run.listed,
        "stored": run.stored,
        "quarantined": {message_id: reason.value for message_id, reason in run.quarantined.items()},
        "already_stored": run.already_stored,
        "left": run.left,
    }
