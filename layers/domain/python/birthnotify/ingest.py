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
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from aws_lambda_powertools.utilities.streaming import S3Object
from pydantic import BaseModel

from birthnotify.messages import (
    DuplicateOf,
    FileError,
    FileOutcome,
    FileProcessedEvent,
    FileReport,
    FileStatus,
)
from birthnotify.pipeline import FileIncomplete, FilePipeline, Source
from birthnotify.postcodes import PostcodeDirectory
from birthnotify.progress import Progress, ProgressStore
from birthnotify.reader import FileFacts, FileKind, FileRejected, RowReader, scan_file
from birthnotify.record import ERROR_HELP, ErrorCode
from birthnotify.registry import Registry
from birthnotify.reports import report_keys, upload_id, write_report
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
    """One upload, as its S3 event names it."""

    bucket: str
    key: str
    version_id: str | None = None
    sequencer: str | None = None
    event_time: datetime | None = None

    @property
    def upload_ref(self) -> str:
        """Tells this upload apart from another of the same key (S3's version id; else the event's
        sequencer, which S3 makes unique per key and upload), and is the same on a redelivered event."""
        return self.version_id or self.sequencer or ""


class FileIdentity(BaseModel):
    """The business key of a file: who sent it and what it contains. Idempotency keys on these two."""

    trust_ods_code: str
    sha256: str
    bucket: str
    key: str
    version_id: str | None = None
    upload_ref: str = ""
    uploaded_at: datetime
    upload_day: date


class IngestSummary(BaseModel):
    """What ingesting one upload came to (counts and keys only): the handler's metrics read it, and for a
    file's first upload it is remembered, so a later upload of the same content can point to it."""

    key: str
    upload_ref: str = ""
    status: FileStatus
    report_key: str | None = None
    file_error: ErrorCode | None = None
    outcome: FileOutcome
    send_requests: int = 0


def parse_inbound_key(key: str) -> tuple[str, str]:
    """``inbound/<ODS>/<file name>`` -> (ODS code, file name)."""
    parts = key.split("/")
    if len(parts) != 3 or f"{parts[0]}/" != INBOUND_PREFIX or not parts[1] or not parts[2]:
        raise FileRejected(ErrorCode.FILE_BAD_LOCATION, ERROR_HELP[ErrorCode.FILE_BAD_LOCATION])
    return parts[1].upper(), parts[2]


def is_folder_marker(key: str) -> bool:
    """A zero-byte ``inbound/RX1/`` object that consoles create for a "folder": not an upload."""
    return key.endswith("/")


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
        self._progress = ProgressStore(dynamodb, settings.state_table, **({"sleep": sleep} if sleep else {}))
        self._queue_urls: dict[str, str] = {}
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="[trust_ods_code, sha256]",
            expires_after_seconds=IDEMPOTENCY_SECONDS,
            raise_on_no_idempotency_key=True,
        )
        persistence = DynamoDBPersistenceLayer(table_name=settings.state_table, boto3_client=dynamodb)
        self._process_once = idempotent_function(
            data_keyword_argument="file", persistence_store=persistence, config=self.idempotency,
            output_serializer=PydanticSerializer(model=IngestSummary),
        )(self._process_content)

    def ingest(self, obj: InboundObject, should_stop: Callable[[], bool] = lambda: False) -> IngestSummary | None:
        """Process one uploaded object; returns a summary (counts and keys only), or None for an object
        that is not an upload (a folder marker)."""
        if is_folder_marker(obj.key):
            logger.info("folder marker ignored")
            return None
        trust_code: str | None = None
        uploaded_at = obj.event_time or self._clock()
        try:
            trust_code, file_name = parse_inbound_key(obj.key)
            if self.registry.trust(trust_code) is None:
                raise FileRejected(ErrorCode.FILE_UNKNOWN_TRUST,
                                   f"No trust with ODS code {trust_code} is registered: check the upload folder.")
            kind = FileKind.from_name(file_name)
            head = self._s3.head_object(**self._object_args(obj))
            uploaded_at = head["LastModified"]
            if head["ContentLength"] > self.settings.max_file_bytes:
                raise FileRejected(ErrorCode.FILE_TOO_LARGE,
                                   f"The file is over the {self.settings.max_file_bytes // 2**20} MB limit; split it.")
            facts = scan_file(lambda: self._open(obj), kind, self.settings.max_file_bytes)
        except FileRejected as rejection:
            return self._reject(obj, trust_code, rejection, None, uploaded_at)
        identity = FileIdentity(
            trust_ods_code=trust_code, sha256=facts.sha256, bucket=obj.bucket, key=obj.key,
            version_id=obj.version_id, upload_ref=obj.upload_ref, uploaded_at=uploaded_at,
            upload_day=london_day(uploaded_at),
        )
        first = self._process_once(file=identity, facts=facts, should_stop=should_stop)
        if (first.key, first.upload_ref) != (obj.key, obj.upload_ref):
            # The same content again, under another name or as another upload of this one.
            return self._duplicate(obj, trust_code, facts, uploaded_at, first)
        return first

    def register_lambda_context(self, context: Any) -> None:
        """Let idempotency expire an in-progress record when the function times out."""
        self.idempotency.register_lambda_context(context)

    # -- one file's content, at most once ------------------------------------------------------------

    def _process_content(self, file: FileIdentity, facts: FileFacts,
                         should_stop: Callable[[], bool]) -> IngestSummary:
        identity = FileIdentity.model_validate(file)
        obj = InboundObject(identity.bucket, identity.key, identity.version_id)
        trust = identity.trust_ods_code
        progress = self._progress.load(trust, identity.sha256)
        if progress is None:
            progress = Progress(0, london_day(self._clock()))
            self._progress.save(trust, identity.sha256, progress)
        elif progress.rows_done or progress.accepted_rows:
            logger.info("resuming file", extra={"rows_done": progress.rows_done,
                                                "accepted_after": len(progress.accepted_rows)})
        file_name = obj.key.rsplit("/", 1)[-1]
        kind = FileKind.from_name(file_name)
        pipeline = FilePipeline(
            source=Source(trust, obj.key, identity.sha256),
            validator=RowValidator(RowRules(identity.upload_day, self.settings.max_baby_age_days)),
            router=Router(self.registry, self.postcodes, progress.processing_day),
            sender_factory=self._sender,
            queue_url=self._authority_queue_url,
            held_queue_url=self.settings.held_queue_url,
            on_unexpected=_log_unexpected_row,
        )
        reader = RowReader(self._open(obj), kind, facts, self.settings.max_file_bytes)

        def checkpoint(rows_done: int) -> None:
            self._progress.save(trust, identity.sha256, Progress(rows_done, progress.processing_day))

        try:
            tally = pipeline.run(reader, resume=progress, checkpoint=checkpoint, should_stop=should_stop)
            checkpoint(tally.rows_in)
            pipeline.settled_through, pipeline.accepted_since = tally.rows_in, set()
            outcome = tally.outcome()
            if tally.rows_in != facts.records or not outcome.balanced:  # a bug: never report a file that
                counts = outcome.model_dump_json(include={"rows_in", "forwarded", "rejected", "withheld", "held"})
                raise RuntimeError(f"reconciliation failed: {counts}, records {facts.records}")  # doesn't add up
            report_key, rejected_key = report_keys(trust, file_name, upload_id(identity.uploaded_at,
                                                                               identity.upload_ref))
            report = FileReport(
                event_id=f"{trust}:{identity.sha256}", status=FileStatus.PROCESSED, trust_ods_code=trust,
                trust_name=self.registry.trust(trust).name, bucket=obj.bucket, key=obj.key, sha256=identity.sha256,
                processed_at=self._clock(), outcome=outcome, report_key=report_key,
                rejected_rows_key=rejected_key if outcome.rejected else None, ignored_columns=reader.ignored_columns,
                ignored_names_not_listed=reader.ignored_names_not_listed,
            )
            write_report(self._s3, self.settings.reports_bucket, report, tally.row_errors())
            self._emit(report)
        except FileIncomplete:
            raise  # checkpointed where it stopped
        except BaseException:
            self._record_accepted(trust, identity.sha256, pipeline.progress(progress.processing_day))
            raise
        logger.info("file processed", extra={"outcome": outcome.model_dump(mode="json", exclude={"authorities"}),
                                             "requests": pipeline.sender.stats.requests})
        return IngestSummary(key=obj.key, upload_ref=identity.upload_ref, status=report.status,
                             report_key=report.report_key, outcome=outcome,
                             send_requests=pipeline.sender.stats.requests)

    def _record_accepted(self, trust: str, sha256: str, progress: Progress) -> None:
        """Before a failed run gives up: remember what SQS accepted, so the retry sends none of it again."""
        try:
            self._progress.save(trust, sha256, progress)
            logger.warning("file failed; progress saved", extra={"rows_done": progress.rows_done,
                                                                  "accepted_after": len(progress.accepted_rows)})
        except Exception as exc:  # noqa: BLE001 (the original failure is what the retry must see)
            logger.error("file failed and its progress could not be saved: a retry may send records again",
                         extra={"error": type(exc).__name__})

    # -- outcomes without processing ----------------------------------------------------------------

    def _reject(self, obj: InboundObject, trust_code: str | None, rejection: FileRejected,
                sha256: str | None, uploaded_at: datetime) -> IngestSummary:
        logger.warning("file rejected", extra={"code": rejection.code.value})
        stable = f"{obj.bucket}/{obj.key}/{obj.upload_ref}/{sha256}/{rejection.code.value}"
        report = self._report(obj, trust_code, uploaded_at, f"rejected:{hashlib.sha256(stable.encode()).hexdigest()}",
                              FileStatus.REJECTED, sha256,
                              file_error=FileError(code=rejection.code, message=rejection.message))
        return IngestSummary(key=obj.key, upload_ref=obj.upload_ref, status=report.status,
                             report_key=report.report_key, file_error=rejection.code, outcome=report.outcome)

    def _duplicate(self, obj: InboundObject, trust_code: str, facts: FileFacts, uploaded_at: datetime,
                   first: IngestSummary) -> IngestSummary:
        logger.info("duplicate content", extra={"first_key": first.key})
        stable = f"{obj.bucket}/{obj.key}/{obj.upload_ref}/{facts.sha256}"
        report = self._report(obj, trust_code, uploaded_at, f"duplicate:{hashlib.sha256(stable.encode()).hexdigest()}",
                              FileStatus.DUPLICATE, facts.sha256,
                              duplicate_of=DuplicateOf(key=first.key, report_key=first.report_key))
        return IngestSummary(key=obj.key, upload_ref=obj.upload_ref, status=report.status,
                             report_key=report.report_key, outcome=report.outcome)

    def _report(self, obj: InboundObject, trust_code: str | None, uploaded_at: datetime, event_id: str,
                status: FileStatus, sha256: str | None, **details: Any) -> FileReport:
        trust = self.registry.trust(trust_code) if trust_code else None
        report_key, _ = report_keys(trust_code or "_unattributed", obj.key.rsplit("/", 1)[-1],
                                    upload_id(uploaded_at, obj.upload_ref))
        report = FileReport(
            event_id=event_id, status=status, trust_ods_code=trust_code, trust_name=trust.name if trust else None,
            bucket=obj.bucket, key=obj.key, sha256=sha256, processed_at=self._clock(), outcome=FileOutcome(),
            report_key=report_key, **details,
        )
        write_report(self._s3, self.settings.reports_bucket, report, ())
        self._emit(report)
        return report

    def _emit(self, report: FileReport) -> None:
        event = FileProcessedEvent.model_validate(report.model_dump(
            exclude={"errors", "ignored_columns", "ignored_names_not_listed"}))
        self._sqs.send_message(QueueUrl=self.settings.file_events_queue_url, MessageBody=event.model_dump_json())

    # -- helpers ---------------------------------------------------------------------------------------

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


def _log_unexpected_row(row: int, notification_id: str | None, exc: Exception) -> None:
    # The exception's message may quote the row's values: log where it happened, never what it says.
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else "?"
    logger.error("row failed unexpectedly", extra={"row": row, "notification_id": notification_id,
                                                   "error": type(exc).__name__, "where": where})
