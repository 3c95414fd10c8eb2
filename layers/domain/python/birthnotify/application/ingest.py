"""Ingest of one uploaded file, end to end: checks, idempotency, resumable processing, report, event.

The Lambda handler (functions/ingest) only unpacks S3 notifications and calls ``IngestService.ingest``.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from pydantic import BaseModel

from birthnotify.application.destinations import Destinations
from birthnotify.application.ledger import LedgerRecorder, SubjectHasher
from birthnotify.application.pipeline import FileIncomplete, FilePipeline, Source
from birthnotify.application.ports import (
    DestinationStore,
    EventPublisher,
    FetchedUpload,
    HeldWriterFactory,
    LedgerStore,
    Log,
    Progress,
    ProgressStore,
    QueueDirectory,
    ReportStore,
    SenderFactory,
    SnapshotStore,
    UploadStore,
)
from birthnotify.application.resume import (
    ResumeContext,
    ResumeSnapshot,
    concealer,
    load_snapshot,
    restore,
    save_snapshot,
    take_snapshot,
)
from birthnotify.domain.mesh import mesh_origin
from birthnotify.domain.messages import (
    DuplicateOf,
    FileError,
    FileOutcome,
    FileProcessedEvent,
    FileReport,
    FileStatus,
    MeshOrigin,
)
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.reader import FileFacts, FileKind, FileRejected, RowReader, content_sha256, scan_file
from birthnotify.domain.record import ErrorCode
from birthnotify.domain.registry import Registry
from birthnotify.domain.routing import Router
from birthnotify.domain.uploads import InboundObject, is_folder_marker, parse_inbound_key, report_keys, upload_id
from birthnotify.domain.validation import RowRules, RowValidator
from birthnotify.shared.clock import london_day, utc_now
from birthnotify.shared.settings import IngestSettings

IN_MEMORY_BYTES = 8 * 2**20
"""An upload up to this size is fetched from S3 once and both passes read it from memory."""
IDEMPOTENCY_SECONDS = 35 * 24 * 3600
"""How long a file's content is remembered: longer than raw uploads are kept (30 days by default)."""


class UploadPasses:
    """How the passes open an upload (each reads it whole, a gzipped one twice in the first pass), from the one
    GetObject that gave its size and metadata.

    An upload no larger than IN_MEMORY_BYTES is read from that response into memory and every pass reads it
    there: one GetObject a file, whose size, metadata and bytes are of the same object. A larger one is
    streamed: the first opening reads that response's body (already open, and the very bytes its size and
    metadata describe; closing it to open another would cost a request and gain nothing), each later one makes
    a GetObject of its own, with the event's version id when it carried one. Under an unversioned key, an
    object replaced between two passes can give a later pass other bytes, as when every pass made its own
    request: a record count that differs from the first pass's fails the file (RowReader), never misreported."""

    def __init__(self, fetched: FetchedUpload, reopen: Callable[[], IO[bytes]]) -> None:
        self._reopen = reopen
        self._content: bytes | None = None
        self._unread: IO[bytes] | None = None
        if fetched.size > IN_MEMORY_BYTES:
            self._unread = fetched.body
            return
        content = fetched.body.read(IN_MEMORY_BYTES + 1)
        if len(content) == fetched.size:
            self._content = content
        # else the body and its size disagree: more bytes (a store that misreports), or fewer (a body cut short:
        # botocore checks the length only on a read after the last, and this read is the only one). Each pass
        # then streams its own request, read to its end, where a short body is an error, never a shorter file.

    def __call__(self) -> IO[bytes]:
        if self._content is not None:
            return io.BytesIO(self._content)
        if self._unread is not None:
            stream, self._unread = self._unread, None
            return stream
        return self._reopen()

    def first_pass_over(self) -> None:
        """The first response's body is closed after the first pass: no later pass may be handed it."""
        self._unread = None


@dataclass(frozen=True)
class IngestPorts:
    """Everything the ingest of a file needs from AWS."""

    uploads: UploadStore
    reports: ReportStore
    events: EventPublisher
    queues: QueueDirectory
    progress: ProgressStore
    sender: SenderFactory
    held: HeldWriterFactory
    idempotency_store: BasePersistenceLayer
    ledger: LedgerStore
    ledger_key: bytes
    """The HMAC key of the ledger's subject hashes (from Secrets Manager)."""
    destinations: DestinationStore
    snapshots: SnapshotStore
    """Where a file stopped part-way keeps its state for the next attempt (application.resume)."""


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
    mesh: MeshOrigin | None = None


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
    held_store_requests: int = 0
    ledger_requests: int = 0


class IngestService:
    """Everything the ingest function does to one object, with its AWS clients injected."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        registry: Registry,
        postcodes: PostcodeDirectory,
        ports: IngestPorts,
        clock: Callable[[], datetime] = utc_now,
        log: Log | None = None,
    ) -> None:
        self.settings = settings
        self.log: Log = log or logging.getLogger("birthnotify.ingest")
        self.registry = registry
        self.postcodes = postcodes
        self.ports = ports
        self._clock = clock
        self._hasher = SubjectHasher(ports.ledger_key)
        self._conceal = concealer(ports.ledger_key)
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="[trust_ods_code, sha256]",
            expires_after_seconds=IDEMPOTENCY_SECONDS,
            raise_on_no_idempotency_key=True,
        )
        self._process_once = idempotent_function(
            data_keyword_argument="file",
            persistence_store=ports.idempotency_store,
            config=self.idempotency,
            output_serializer=PydanticSerializer(model=IngestSummary),
        )(self._process_content)

    def ingest(self, obj: InboundObject, should_stop: Callable[[], bool] = lambda: False) -> IngestSummary | None:
        """Process one uploaded object; returns a summary (counts and keys only), or None for an object
        that is not an upload (a folder marker)."""
        if is_folder_marker(obj.key):
            self.log.info("folder marker ignored")
            return None
        trust_code: str | None = None
        origin: MeshOrigin | None = None
        uploaded_at = obj.event_time or self._clock()
        try:
            trust_code, file_name = parse_inbound_key(obj.key)
            trust = self.registry.trust(trust_code)
            if trust is None:
                raise FileRejected(
                    ErrorCode.FILE_UNKNOWN_TRUST,
                    f"No trust with ODS code {trust_code} is registered: check the upload folder.",
                )
            fetched = self.ports.uploads.fetch(obj)
            with closing(fetched.body):  # closed unread when the file is refused before its bytes are needed
                uploaded_at = obj.event_time or fetched.last_modified  # the event's has milliseconds
                # Before any check that may reject it: a file that came by MESH is answered by MESH, rejected or not.
                origin = mesh_origin(fetched.metadata, trust)
                kind = FileKind.from_name(file_name)
                if fetched.size > self.settings.max_file_bytes:
                    raise FileRejected(
                        ErrorCode.FILE_TOO_LARGE,
                        f"The file is over the {self.settings.max_file_bytes // 2**20} MB limit; split it.",
                    )
                open_upload = UploadPasses(fetched, lambda: self.ports.uploads.open(obj))
                try:
                    facts, snapshot = self._first_pass(open_upload, trust_code, kind, deliveries=obj.deliveries)
                finally:
                    open_upload.first_pass_over()
        except FileRejected as rejection:
            return self._reject(obj, trust_code, rejection, None, uploaded_at, origin)
        identity = FileIdentity(
            trust_ods_code=trust_code,
            sha256=facts.sha256,
            bucket=obj.bucket,
            key=obj.key,
            version_id=obj.version_id,
            upload_ref=obj.upload_ref,
            uploaded_at=uploaded_at,
            upload_day=london_day(uploaded_at),
            mesh=origin,
        )
        first: IngestSummary = self._process_once(
            file=identity, facts=facts, should_stop=should_stop, snapshot=snapshot, open_upload=open_upload
        )
        if (first.key, first.upload_ref) != (obj.key, obj.upload_ref):
            # The same content again, under another name or as another upload of this one.
            return self._duplicate(obj, trust_code, facts, uploaded_at, first, origin)
        return first

    def _first_pass(
        self, open_upload: Callable[[], IO[bytes]], trust: str, kind: FileKind, *, deliveries: int = 1
    ) -> tuple[FileFacts, ResumeSnapshot | None]:
        """The file's facts. A redelivered file may have been stopped part-way: its content is hashed first (at C
        speed) to find a snapshot, whose facts the first pass established then (same content, same facts);
        otherwise, and for a first delivery, the first pass parses the file."""
        max_bytes = self.settings.max_file_bytes
        if deliveries > 1 and not kind.format.is_bundle:
            sha256 = content_sha256(open_upload, kind, max_bytes)
            snapshot = self._snapshot(trust, sha256)
            if snapshot is not None and (snapshot.trust_ods_code, snapshot.sha256) == (trust, sha256):
                return snapshot.facts, snapshot
        return scan_file(open_upload, kind, max_bytes), None

    def _snapshot(self, trust: str, sha256: str) -> ResumeSnapshot | None:
        """A stored snapshot of this content, before its checkpoint is read (checked against it later)."""
        try:
            data = self.ports.snapshots.load(trust, sha256)
            return ResumeSnapshot.decode(data) if data is not None else None
        except Exception as exc:  # noqa: BLE001 (an unreadable snapshot costs time, never correctness)
            self.log.warning("resume snapshot not loaded", extra={"error": type(exc).__name__})
            return None

    def register_lambda_context(self, context: Any) -> None:
        """Let idempotency expire an in-progress record when the function times out."""
        self.idempotency.register_lambda_context(context)

    # -- one file's content, at most once ------------------------------------------------------------

    def _process_content(
        self,
        file: FileIdentity,
        facts: FileFacts,
        should_stop: Callable[[], bool],
        snapshot: ResumeSnapshot | None = None,
        open_upload: Callable[[], IO[bytes]] | None = None,
    ) -> IngestSummary:
        identity = FileIdentity.model_validate(file)
        obj = InboundObject(identity.bucket, identity.key, identity.version_id)
        trust = identity.trust_ods_code
        store = self.ports.progress
        fresh = Progress(0, london_day(self._clock()))
        earlier = store.begin(trust, identity.sha256, fresh)
        retrying = earlier is not None  # an earlier attempt may have stored some held records
        progress = earlier or fresh
        if progress.rows_done or progress.accepted_rows:
            self.log.info(
                "resuming file", extra={"rows_done": progress.rows_done, "accepted_after": len(progress.accepted_rows)}
            )
        file_name = obj.file_name
        kind = FileKind.from_name(file_name)
        report_key, rejected_key = report_keys(trust, file_name, upload_id(identity.uploaded_at, identity.upload_ref))
        context = ResumeContext(
            trust, identity.sha256, progress.processing_day, identity.upload_day, self.settings.max_baby_age_days
        )
        if snapshot is not None and not snapshot.usable(context, progress.rows_done):
            self.log.info("resume snapshot does not match the checkpoint: replaying")
            snapshot = None
        elif snapshot is None and progress.rows_done and not kind.format.is_bundle:
            snapshot = load_snapshot(self.ports.snapshots, context, progress.rows_done, self.log)
        pipeline = FilePipeline(
            source=Source(trust, obj.key, identity.sha256),
            validator=RowValidator(RowRules(identity.upload_day, self.settings.max_baby_age_days)),
            router=Router(self.registry, self.postcodes, progress.processing_day),
            sender_factory=self.ports.sender,
            queue_url=self.ports.queues.authority_queue_url,
            held_writer_factory=self.ports.held,
            report_key=report_key,
            retrying=retrying,
            on_unexpected=self._log_unexpected_row,
            ledger=LedgerRecorder(
                self.ports.ledger,
                trust_ods_code=trust,
                file_sha256=identity.sha256,
                day=progress.processing_day,
                clock=self._clock,
                first_row=progress.rows_done + 1,
            ),
            hasher=self._hasher,
            destinations=(destinations := Destinations.load(self.ports.destinations, trust)),
        )
        ledger_requests = self.ports.ledger.stats.requests
        if snapshot is not None:
            try:
                restore(snapshot, pipeline, destinations)
                self.log.info("resuming from snapshot", extra={"snapshot_rows": snapshot.rows_done})
            except ValueError:  # nothing restored: replay
                self.log.warning("resume snapshot unreadable: replaying the rows before the checkpoint")
                snapshot = None
        reader = RowReader(
            open_upload() if open_upload is not None else self.ports.uploads.open(obj),
            kind,
            facts,
            self.settings.max_file_bytes,
            start=snapshot.position if snapshot is not None else None,
            unknown=snapshot.unknown_columns if snapshot is not None else None,
            conceal=self._conceal,
        )

        def checkpoint(rows_done: int) -> None:
            store.save(trust, identity.sha256, Progress(rows_done, progress.processing_day))

        try:
            tally = pipeline.run(reader, resume=progress, checkpoint=checkpoint, should_stop=should_stop)
            destinations.save(self.ports.destinations, trust, progress.processing_day, self.settings.max_baby_age_days)
            if destinations.unindexed:
                self.log.warning(
                    "destination index full for this file: later AMEND and CANCEL of these chains reach "
                    "only the council they route to",
                    extra={"unindexed": destinations.unindexed},
                )
            checkpoint(tally.rows_in)
            pipeline.settled_through, pipeline.accepted_since = tally.rows_in, set()
            outcome = tally.outcome()
            if tally.rows_in != facts.records or not outcome.balanced:  # a bug: never report a file that
                counts = outcome.model_dump_json(include={"rows_in", "forwarded", "rejected", "withheld", "held"})
                raise RuntimeError(f"reconciliation failed: {counts}, records {facts.records}")  # doesn't add up
            report = FileReport(
                event_id=f"{trust}:{identity.sha256}",
                status=FileStatus.PROCESSED,
                trust_ods_code=trust,
                trust_name=self.registry.trust_name(trust),
                bucket=obj.bucket,
                key=obj.key,
                sha256=identity.sha256,
                processed_at=self._clock(),
                outcome=outcome,
                report_key=report_key,
                rejected_rows_key=rejected_key if outcome.rejected else None,
                ignored_columns=reader.ignored_columns,
                ignored_names_not_listed=reader.ignored_names_not_listed,
                mesh=identity.mesh,
            )
            self.ports.reports.write(report, tally.row_errors(), tally.row_warnings())
            self._emit(report)
        except FileIncomplete:
            # Checkpointed where it stopped; the snapshot spares the next attempt the rows before it.
            snapshot = take_snapshot(context, facts, pipeline, reader, destinations, self._conceal)
            save_snapshot(self.ports.snapshots, snapshot, self.log)
            raise
        except BaseException:
            try:  # batches still in flight when the run failed elsewhere may yet be accepted: count them first
                pipeline.sender.settle()
            except Exception as exc:  # noqa: BLE001 (the original failure is what the retry must see)
                self.log.warning("requests in flight could not be settled", extra={"error": type(exc).__name__})
            self._record_accepted(trust, identity.sha256, pipeline.progress(progress.processing_day))
            raise
        self.log.info(
            "file processed",
            extra={
                "outcome": outcome.model_dump(mode="json", exclude={"authorities"}),
                "requests": pipeline.sender.stats.requests,
                "held_store_requests": pipeline.held.stats.requests,
                "ledger_requests": self.ports.ledger.stats.requests - ledger_requests,
            },
        )
        return IngestSummary(
            key=obj.key,
            upload_ref=identity.upload_ref,
            status=report.status,
            report_key=report.report_key,
            outcome=outcome,
            send_requests=pipeline.sender.stats.requests,
            held_store_requests=pipeline.held.stats.requests,
            ledger_requests=self.ports.ledger.stats.requests - ledger_requests,
        )

    def _record_accepted(self, trust: str, sha256: str, progress: Progress) -> None:
        """Before a failed run gives up: remember what SQS accepted, so the retry sends none of it again."""
        try:
            self.ports.progress.save(trust, sha256, progress)
            self.log.warning(
                "file failed; progress saved",
                extra={"rows_done": progress.rows_done, "accepted_after": len(progress.accepted_rows)},
            )
        except Exception as exc:  # noqa: BLE001 (the original failure is what the retry must see)
            self.log.error(
                "file failed and its progress could not be saved: a retry may send records again",
                extra={"error": type(exc).__name__},
            )

    # -- outcomes without processing ----------------------------------------------------------------

    def _reject(
        self,
        obj: InboundObject,
        trust_code: str | None,
        rejection: FileRejected,
        sha256: str | None,
        uploaded_at: datetime,
        origin: MeshOrigin | None,
    ) -> IngestSummary:
        self.log.warning("file rejected", extra={"code": rejection.code.value})
        stable = f"{obj.bucket}/{obj.key}/{obj.upload_ref}/{sha256}/{rejection.code.value}"
        report = self._report(
            obj,
            trust_code,
            uploaded_at,
            f"rejected:{hashlib.sha256(stable.encode()).hexdigest()}",
            FileStatus.REJECTED,
            sha256,
            mesh=origin,
            file_error=FileError(code=rejection.code, message=rejection.message),
        )
        return IngestSummary(
            key=obj.key,
            upload_ref=obj.upload_ref,
            status=report.status,
            report_key=report.report_key,
            file_error=rejection.code,
            outcome=report.outcome,
        )

    def _duplicate(
        self,
        obj: InboundObject,
        trust_code: str,
        facts: FileFacts,
        uploaded_at: datetime,
        first: IngestSummary,
        origin: MeshOrigin | None,
    ) -> IngestSummary:
        self.log.info("duplicate content", extra={"first_key": first.key})
        stable = f"{obj.bucket}/{obj.key}/{obj.upload_ref}/{facts.sha256}"
        report = self._report(
            obj,
            trust_code,
            uploaded_at,
            f"duplicate:{hashlib.sha256(stable.encode()).hexdigest()}",
            FileStatus.DUPLICATE,
            facts.sha256,
            mesh=origin,
            duplicate_of=DuplicateOf(key=first.key, report_key=first.report_key),
        )
        return IngestSummary(
            key=obj.key,
            upload_ref=obj.upload_ref,
            status=report.status,
            report_key=report.report_key,
            outcome=report.outcome,
        )

    def _report(
        self,
        obj: InboundObject,
        trust_code: str | None,
        uploaded_at: datetime,
        event_id: str,
        status: FileStatus,
        sha256: str | None,
        **details: Any,
    ) -> FileReport:
        trust = self.registry.trust(trust_code) if trust_code else None
        report_key, _ = report_keys(
            trust_code or "_unattributed", obj.file_name, upload_id(uploaded_at, obj.upload_ref)
        )
        report = FileReport(
            event_id=event_id,
            status=status,
            trust_ods_code=trust_code,
            trust_name=trust.name if trust else None,
            bucket=obj.bucket,
            key=obj.key,
            sha256=sha256,
            processed_at=self._clock(),
            outcome=FileOutcome(),
            report_key=report_key,
            **details,
        )
        self.ports.reports.write(report, (), ())
        self._emit(report)
        return report

    def _emit(self, report: FileReport) -> None:
        event = FileProcessedEvent.model_validate(
            report.model_dump(exclude={"errors", "warnings", "ignored_columns", "ignored_names_not_listed"})
        )
        self.ports.events.publish(event)

    def _log_unexpected_row(self, row: int, notification_id: str | None, exc: Exception) -> None:
        # The exception's message may quote the row's values: log where it happened, never what it says.
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else "?"
        self.log.error(
            "row failed unexpectedly",
            extra={"row": row, "notification_id": notification_id, "error": type(exc).__name__, "where": where},
        )
