"""Ingest of one uploaded file, end to end: checks, idempotency, resumable processing, report, event.

The Lambda handler (functions/ingest) only unpacks S3 notifications and calls ``IngestService.ingest``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.streaming import S3Object
from pydantic import BaseModel

from birthnotify.messages import FileError, FileOutcome, FileProcessedEvent, FileReport, FileStatus
from birthnotify.pipeline import FilePipeline, Source
from birthnotify.postcodes import PostcodeDirectory
from birthnotify.progress import Progress, ProgressStore
from birthnotify.reader import FileKind, FileRejected, RowReader, inspect_file, open_text
from birthnotify.record import ERROR_HELP, ErrorCode
from birthnotify.registry import Registry
from birthnotify.reports import report_keys, write_report
from birthnotify.routing import Router
from birthnotify.sender import BatchSender
from birthnotify.settings import INBOUND_PREFIX, IngestSettings, authority_queue_name
from birthnotify.validation import RowRules, RowValidator

logger = Logger(child=True)
LONDON = ZoneInfo("Europe/London")
IDEMPOTENCY_SECONDS = 35 * 24 * 3600
"""How long a file's content is remembered: longer than raw uploads are kept (30 days by default)."""


@dataclass(frozen=True)
class InboundObject:
    bucket: str
    key: str
    version_id: str | None = None


class FileIdentity(BaseModel):
    """The business key of a file: who sent it and what it contains. Idempotency keys on these two."""

    trust_ods_code: str
    sha256: str
    bucket: str
    key: str
    version_id: str | None = None
    upload_day: date


def parse_inbound_key(key: str) -> tuple[str, str]:
    """``inbound/<ODS>/<file name>`` -> (ODS code, file name)."""
    parts = key.split("/")
    if len(parts) != 3 or f"{parts[0]}/" != INBOUND_PREFIX or not parts[1] or not parts[2]:
        raise FileRejected(ErrorCode.FILE_BAD_LOCATION, ERROR_HELP[ErrorCode.FILE_BAD_LOCATION])
    return parts[1].upper(), parts[2]


def london_day(moment: datetime) -> date:
    """The calendar day in England of an instant (an upload at 00:30 BST belongs to that day)."""
    return moment.astimezone(LONDON).date()


class IngestService:
    """Everything the ingest function does to one object, with its AWS clients injected."""

    def __init__(self, settings: IngestSettings, *, registry: Registry, postcodes: PostcodeDirectory,
                 s3: Any, sqs: Any, dynamodb: Any,  # low-level boto3 clients
 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.postcodes = postcodes
        self._s3 = s3
        self._sqs = sqs
        self._clock = clock
        self._sleep = sleep
        self._progress = ProgressStore(dynamodb, settings.state_table)
        self._queue_urls: dict[str, str] = {}
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="[trust_ods_code, sha256]",
            expires_after_seconds=IDEMPOTENCY_SECONDS,
            raise_on_no_idempotency_key=True,
        )
        persistence = DynamoDBPersistenceLayer(
            table_name=settings.state_table, boto3_client=dynamodb
        )
        self._process_once = idempotent_function(
            data_keyword_argument="file", persistence_store=persistence, config=self.idempotency,
        )(self._process_content)

    def ingest(self, obj: InboundObject, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Process one uploaded object; returns a summary (counts and keys only)."""
        trust_code: str | None = None
        try:
            trust_code, file_name = parse_inbound_key(obj.key)
            if self.registry.trust(trust_code) is None:
                raise FileRejected(ErrorCode.FILE_UNKNOWN_TRUST,
                                   f"No trust with ODS code {trust_code} is registered: check the upload folder.")
            kind = FileKind.from_name(file_name)
            head = self._s3.head_object(**self._object_args(obj))
            if head["ContentLength"] > self.settings.max_file_bytes:
                raise FileRejected(ErrorCode.FILE_TOO_LARGE,
                                   f"The file is over the {self.settings.max_file_bytes // 2**20} MB limit; split it.")
            facts = inspect_file(self._open(obj), kind, self.settings.max_file_bytes)
        except FileRejected as rejection:
            return self._reject(obj, trust_code, rejection, sha256=None)
        identity = FileIdentity(
            trust_ods_code=trust_code, sha256=facts.sha256, bucket=obj.bucket, key=obj.key,
            version_id=obj.version_id, upload_day=london_day(head["LastModified"]),
        )
        self._should_stop = should_stop
        summary = self._process_once(file=identity)
        if (summary["key"], summary.get("version_id")) != (obj.key, obj.version_id):
            # The same content again under another name or version: tell the trust, forward nothing.
            logger.info("duplicate content", extra={"first_key": summary["key"]})
            return self._reject(obj, trust_code, FileRejected(
                ErrorCode.FILE_DUPLICATE,
                f"This file is identical to {summary['key']}, which was already processed; nothing was "
                "forwarded again. To correct records, send AMEND or CANCEL rows in a new file.",
            ), sha256=facts.sha256)
        return summary

    def register_lambda_context(self, context: Any) -> None:
        """Let idempotency expire an in-progress record when the function times out."""
        self.idempotency.register_lambda_context(context)

    # -- one file's content, at most once ------------------------------------------------------------

    def _process_content(self, file: dict[str, Any]) -> dict[str, Any]:
        identity = FileIdentity.model_validate(file)
        obj = InboundObject(identity.bucket, identity.key, identity.version_id)
        trust = identity.trust_ods_code
        progress = self._progress.load(trust, identity.sha256)
        if progress is None:
            progress = Progress(0, london_day(self._clock()))
            self._progress.save(trust, identity.sha256, progress)
        elif progress.rows_done:
            logger.info("resuming file", extra={"rows_done": progress.rows_done})
        kind = FileKind.from_name(obj.key.rsplit("/", 1)[-1])
        source = Source(trust, obj.key, identity.sha256)
        pipeline = FilePipeline(
            source=source,
            validator=RowValidator(RowRules(identity.upload_day, self.settings.max_baby_age_days)),
            router=Router(self.registry, self.postcodes, progress.processing_day),
            sender_factory=self._sender,
            queue_url=self._authority_queue_url,
            held_queue_url=self.settings.held_queue_url,
        )
        try:
            reader = RowReader(open_text(self._open(obj), kind), kind)
        except FileRejected as rejection:
            return self._reject(obj, trust, rejection, sha256=identity.sha256)

        def checkpoint(rows_done: int) -> None:
            self._progress.save(trust, identity.sha256, Progress(rows_done, progress.processing_day))

        tally = pipeline.run(reader, resume_after=progress.rows_done, checkpoint=checkpoint,
                             should_stop=self._should_stop)
        checkpoint(tally.rows_in)
        outcome = tally.outcome()
        if not outcome.balanced:  # a bug, never expected: refuse to report a file that does not add up
            counts = outcome.model_dump_json(include={"rows_in", "forwarded", "rejected", "withheld", "held"})
            raise RuntimeError(f"reconciliation failed: {counts}")
        report_key, rejected_key = report_keys(trust, obj.key.rsplit("/", 1)[-1])
        report = FileReport(
            event_id=f"{trust}:{identity.sha256}", status=FileStatus.PROCESSED, trust_ods_code=trust,
            trust_name=self.registry.trust(trust).name, bucket=obj.bucket, key=obj.key, sha256=identity.sha256,
            processed_at=self._clock(), outcome=outcome, report_key=report_key,
            rejected_rows_key=rejected_key if outcome.rejected else None, ignored_columns=reader.ignored_columns,
        )
        write_report(self._s3, self.settings.reports_bucket, report, tally.row_errors())
        self._emit(report)
        logger.info("file processed", extra={"outcome": outcome.model_dump(mode="json", exclude={"authorities"}),
                                             "requests": pipeline.sender.stats.requests})
        return self._summary(report, obj, pipeline.sender.stats.requests)

    # -- helpers ---------------------------------------------------------------------------------------

    def _reject(self, obj: InboundObject, trust_code: str | None, rejection: FileRejected,
                sha256: str | None) -> dict[str, Any]:
        logger.warning("file rejected", extra={"code": rejection.code.value})
        trust = self.registry.trust(trust_code) if trust_code else None
        file_name = obj.key.rsplit("/", 1)[-1]
        report_key, _ = report_keys(trust_code or "_unattributed", file_name)
        stable = f"{obj.bucket}/{obj.key}/{obj.version_id}/{sha256}/{rejection.code.value}"
        report = FileReport(
            event_id=f"rejected:{hashlib.sha256(stable.encode()).hexdigest()}", status=FileStatus.REJECTED,
            trust_ods_code=trust_code, trust_name=trust.name if trust else None, bucket=obj.bucket, key=obj.key,
            sha256=sha256, processed_at=self._clock(), outcome=FileOutcome(),
            file_error=FileError(code=rejection.code, message=rejection.message), report_key=report_key,
        )
        write_report(self._s3, self.settings.reports_bucket, report, ())
        self._emit(report)
        return self._summary(report, obj, 0)

    def _emit(self, report: FileReport) -> None:
        event = FileProcessedEvent.model_validate(report.model_dump(exclude={"errors", "ignored_columns"}))
        self._sqs.send_message(QueueUrl=self.settings.file_events_queue_url, MessageBody=event.model_dump_json())

    @staticmethod
    def _summary(report: FileReport, obj: InboundObject, requests: int) -> dict[str, Any]:
        return {
            "key": obj.key, "version_id": obj.version_id, "status": report.status.value,
            "report_key": report.report_key, "file_error": report.file_error.code.value if report.file_error else None,
            "outcome": report.outcome.model_dump(mode="json"), "send_requests": requests,
        }

    def _object_args(self, obj: InboundObject) -> dict[str, str]:
        args = {"Bucket": obj.bucket, "Key": obj.key}
        if obj.version_id:
            args["VersionId"] = obj.version_id
        return args

    def _open(self, obj: InboundObject) -> S3Object:
        # Powertools' streaming object: reads ranges on demand, so memory does not grow with the file.
        return S3Object(bucket=obj.bucket, key=obj.key, version_id=obj.version_id, boto3_client=self._s3)

    def _sender(self, on_accepted: Callable[[Any], None]) -> BatchSender:
        if self._sleep is None:
            return BatchSender(self._sqs, on_accepted)
        return BatchSender(self._sqs, on_accepted, sleep=self._sleep)

    def _authority_queue_url(self, gss_code: str) -> str:
        url = self._queue_urls.get(gss_code)
        if url is None:
            name = authority_queue_name(self.settings.authority_queue_prefix, gss_code)
            url = self._queue_urls[gss_code] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return url
