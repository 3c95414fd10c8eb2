"""Lambda entry point: S3 ObjectCreated notifications, delivered through SQS, to IngestService."""

from __future__ import annotations

import gc
import os

# The imports make hundreds of thousands of objects that live as long as the container (boto3's models, pydantic's
# schemas): the cyclic garbage collector, run as they are made, finds nothing to free and cost ~30 ms of a cold
# start (make bench). It is off until they are done; they are then frozen (never traversed again, as gc's docs
# advise for long-lived objects before a fork) and collection goes on as it was for everything made after.
# Frozen only in a process Lambda's runtime started for this function (it sets AWS_LAMBDA_RUNTIME_API): the local
# cloud and the tests import the handler into a long-lived process of their own, whose objects would be frozen
# with it and their garbage never freed. A failed import leaves the collector as it found it.
_collecting = gc.isenabled()
gc.disable()
try:
    import json
    from datetime import datetime
    from functools import cache
    from pathlib import Path
    from urllib.parse import unquote_plus

    import boto3
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes import S3Event
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from birthnotify.adapters.aws.ingest import SQS_CLIENT_CONFIG, ingest_ports
    from birthnotify.adapters.tracing import traced_lambda_handler
    from birthnotify.application.ingest import IngestService, IngestSummary
    from birthnotify.application.pipeline import FileIncomplete
    from birthnotify.domain.postcodes import PostcodeDirectory
    from birthnotify.domain.record import ErrorCode
    from birthnotify.domain.registry import load_registry
    from birthnotify.domain.uploads import InboundObject
    from birthnotify.shared.settings import IngestSettings

    if "AWS_LAMBDA_RUNTIME_API" in os.environ:
        gc.freeze()
finally:
    if _collecting:
        gc.enable()

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, logger=logger)  # a failed record is logged with its traceback

STOP_MARGIN_MS = 60_000
"""Stop and checkpoint a file this long before the function would time out."""
RESUME_DELAY_SECONDS = 5


@cache
def service() -> IngestService:
    """Built once per container: registry and postcode directory are read at cold start only."""
    settings = IngestSettings.from_env()
    registry = load_registry(settings.registry_path)
    postcodes = PostcodeDirectory.load(
        Path(settings.registry_path).parent / registry.postcode_directory.file, registry.postcode_directory
    )
    ports = ingest_ports(
        settings,
        s3=boto3.client("s3"),
        sqs=boto3.client("sqs", config=SQS_CLIENT_CONFIG),
        dynamodb=boto3.client("dynamodb"),
        secrets=boto3.client("secretsmanager"),
    )
    return IngestService(settings, registry=registry, postcodes=postcodes, ports=ports, log=logger)


def _record_handler(record: SQSRecord, context: LambdaContext) -> None:
    body = json.loads(record.body)
    if body.get("Event") == "s3:TestEvent":
        logger.info("skipping s3:TestEvent")
        metrics.add_metric(name="S3TestEventsSkipped", unit=MetricUnit.Count, value=1)
        return
    ingest = service()
    for s3_record in S3Event(body).records:
        if not s3_record.event_name.startswith("ObjectCreated"):
            continue
        # S3 URL-encodes keys in notifications ("inbound/RX1/my+file.csv" for "my file.csv").
        key = unquote_plus(s3_record.raw_event["s3"]["object"]["key"])
        details = s3_record.raw_event["s3"]["object"]
        obj = InboundObject(
            s3_record.s3.bucket.name,
            key,
            details.get("versionId"),
            details.get("sequencer"),
            _event_time(s3_record.raw_event.get("eventTime")),
            _deliveries(record),
        )
        logger.append_keys(object_key=obj.key)
        try:
            summary = ingest.ingest(obj, should_stop=lambda: context.get_remaining_time_in_millis() < STOP_MARGIN_MS)
        except FileIncomplete:
            metrics.add_metric(name="FilesInterrupted", unit=MetricUnit.Count, value=1)
            _resume_soon(record)
            raise
        except Exception:  # retried by SQS from its checkpoint; the DLQ and its alarm after maxReceiveCount
            metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=1)
            raise
        if summary is None:
            metrics.add_metric(name="FolderMarkersIgnored", unit=MetricUnit.Count, value=1)
            continue
        _count(summary)


def _event_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _deliveries(record: SQSRecord) -> int:
    """SQS's receive count: above 1 the file may have been stopped part-way, and is looked for as such."""
    count = record.raw_event.get("attributes", {}).get("ApproximateReceiveCount", "1")
    return int(count) if str(count).isdigit() else 1


def _count(summary: IngestSummary) -> None:
    outcome = summary.outcome
    metrics.add_metric(name=f"Files{summary.status.value.title()}", unit=MetricUnit.Count, value=1)
    for name in ("rows_in", "forwarded", "rejected", "withheld", "held"):
        metrics.add_metric(name=f"Rows_{name}", unit=MetricUnit.Count, value=getattr(outcome, name))
    metrics.add_metric(name="SendMessageBatchRequests", unit=MetricUnit.Count, value=summary.send_requests)
    metrics.add_metric(name="HeldStoreWriteRequests", unit=MetricUnit.Count, value=summary.held_store_requests)
    metrics.add_metric(name="LedgerPutRequests", unit=MetricUnit.Count, value=summary.ledger_requests)
    unprocessable = outcome.rejected_by_code.get(ErrorCode.ROW_UNPROCESSABLE, 0)
    if unprocessable:  # a fault in the service, not the trust's data: operators are alarmed on it
        metrics.add_metric(name="RowsUnprocessable", unit=MetricUnit.Count, value=unprocessable)


def _resume_soon(record: SQSRecord) -> None:
    """Make the interrupted file's message visible again in seconds rather than after the queue's long
    visibility timeout, so the next invocation resumes from the checkpoint."""
    _, _, _, region, account, queue_name = record.event_source_arn.split(":")
    sqs = boto3.client("sqs", region_name=region)
    url = sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=RESUME_DELAY_SECONDS
    )


@logger.inject_lambda_context(clear_state=True)
@traced_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    service().register_lambda_context(context)
    return process_partial_response(
        event=event,
        record_handler=lambda record: _record_handler(record, context),
        processor=processor,
        context=context,
    )
