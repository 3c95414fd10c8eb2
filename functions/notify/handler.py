"""Lambda entry point: file-processed and MESH-quarantined events (SQS), and the daily digest schedule
(EventBridge)."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from birthnotify.adapters.aws.notify import notify_ports
from birthnotify.adapters.email import NotifyTransport, SesTransport
from birthnotify.adapters.tracing import traced_lambda_handler
from birthnotify.application.notify.compose import Composer
from birthnotify.application.notify.service import NotifyService
from birthnotify.application.ports import EmailTransport
from birthnotify.domain.messages import MeshQuarantinedEvent, notifier_event
from birthnotify.domain.registry import load_registry
from birthnotify.shared.settings import EmailTransportKind, NotifySettings
from botocore.config import Config

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, logger=logger)  # a failed record is logged with its traceback

SES_ATTEMPTS = 6
"""SES throttling: botocore's standard retry mode backs off (jittered, exponential) and tries a send this
many times in all before it counts as failed; the event is then retried by SQS."""
RETRYING = Config(retries={"mode": "standard", "total_max_attempts": SES_ATTEMPTS})


API_KEY_MAX_AGE_SECONDS = 300
"""How long a read of the GOV.UK Notify API key is reused before Secrets Manager is asked again."""
MESH_SECRET_MAX_AGE_SECONDS = 60
"""How long a read of the MESH secret is reused (a rotated password is used within a minute)."""


def transport(settings: NotifySettings) -> EmailTransport:
    if settings.email_transport is EmailTransportKind.NOTIFY:
        secret_id = settings.notify_api_key_secret_id

        def api_key(refresh: bool = False) -> str:
            return str(parameters.get_secret(secret_id, max_age=API_KEY_MAX_AGE_SECONDS, force_fetch=refresh))

        return NotifyTransport(api_key, settings.notify_base_url, settings.notify_template_id)
    # SES API v1: its SendBulkTemplatedEmail sends a run's emails in one request (SES v2's SendBulkEmail
    # does the same, but moto, on which the tests and the local cloud run, does not implement it).
    return SesTransport(
        boto3.client("ses", config=RETRYING),
        settings.email_sender,
        settings.ses_configuration_set,
        settings.ses_template,
    )


@cache
def service() -> NotifyService:
    """Built once per container: the registry is read at cold start only."""
    settings = NotifySettings.from_env()
    registry = load_registry(settings.registry_path)
    composer = Composer(registry, settings.stage, settings.consumer_guide_url, settings.reports_bucket)
    secret_id = settings.mesh_secret_id
    ports = notify_ports(
        settings,
        dynamodb=boto3.client("dynamodb"),
        transport=transport(settings),
        s3=boto3.client("s3"),
        read_mesh_secret=lambda: str(parameters.get_secret(secret_id, max_age=MESH_SECRET_MAX_AGE_SECONDS)),
    )
    return NotifyService(
        registry=registry,
        composer=composer,
        ports=ports,
        log=logger,
        mesh_report_workflow=settings.mesh_report_workflow_id,
    )


def _record_handler(record: SQSRecord) -> None:
    logger.remove_keys(["event_id"])  # not the previous record's
    notifier = service()
    reports_before, failures_before = len(notifier.reports_sent), notifier.report_failures
    try:
        event = notifier_event(record.body)
        logger.append_keys(event_id=event.event_id)
        if isinstance(event, MeshQuarantinedEvent):
            sent = notifier.handle_notice(event)
        else:
            sent = notifier.handle_event(event)
    except Exception:
        metrics.add_metric(name="EmailEventsFailed", unit=MetricUnit.Count, value=1)
        raise
    finally:
        metrics.add_metric(
            name="MeshReportsSent", unit=MetricUnit.Count, value=len(notifier.reports_sent) - reports_before
        )
        metrics.add_metric(
            name="MeshReportsFailed", unit=MetricUnit.Count, value=notifier.report_failures - failures_before
        )
    metrics.add_metric(name="EmailsSent", unit=MetricUnit.Count, value=sent)


@logger.inject_lambda_context(clear_state=True)
@traced_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    service().register_lambda_context(context)
    if event.get("detail-type") == "Scheduled Event":
        failure: Exception | None = None
        try:
            sent = service().send_digests()
        except Exception as exc:  # the invocation fails: Lambda retries it, then the async DLQ; the next run
            metrics.add_metric(name="DigestRunsFailed", unit=MetricUnit.Count, value=1)  # catches up
            failure, sent = exc, 0
        try:
            warned = service().send_expiry_warnings()
        except Exception as exc:  # the same: the next run sends what this one could not
            metrics.add_metric(name="ExpiryWarningRunsFailed", unit=MetricUnit.Count, value=1)
            failure, warned = failure or exc, 0
        if failure is not None:
            raise failure
        metrics.add_metric(name="DigestsSent", unit=MetricUnit.Count, value=sent)
        reminded = service().remind_held(timedelta(hours=NotifySettings.from_env().held_max_age_hours))
        metrics.add_metric(name="HeldRemindersSent", unit=MetricUnit.Count, value=reminded)
        metrics.add_metric(name="ExpiryWarningsSent", unit=MetricUnit.Count, value=warned)
        return {"digests_sent": sent, "held_reminders_sent": reminded, "expiry_warnings_sent": warned}
    return process_partial_response(event=event, record_handler=_record_handler, processor=processor, context=context)
