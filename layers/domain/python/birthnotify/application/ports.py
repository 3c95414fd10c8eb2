"""What the application needs from the world outside it: Protocols the adapters implement, and the data
that crosses them. Nothing here calls AWS."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from birthnotify.domain.held import HeldAction, HeldStatus
from birthnotify.domain.messages import FileProcessedEvent, FileReport, HeldActionEvent, HeldMessage, HeldReason
from birthnotify.domain.record import NotificationType
from birthnotify.domain.uploads import InboundObject

if TYPE_CHECKING:
    from birthnotify.application.notify.compose import Email

Tag = TypeVar("Tag")


class Log(Protocol):
    """Where a service logs: the function's own logger (Powertools', structured), handed in by its handler,
    so a service never binds a logger of its own at import (several functions may share one process)."""

    def info(self, msg: object, *args: object, extra: Mapping[str, object] | None = None) -> None: ...

    def warning(self, msg: object, *args: object, extra: Mapping[str, object] | None = None) -> None: ...

    def error(self, msg: object, *args: object, extra: Mapping[str, object] | None = None) -> None: ...


# -- sending messages ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Outgoing(Generic[Tag]):
    """One message to send, with the tag its sender hands back when SQS accepts it."""

    body: str
    tag: Tag
    group_id: str | None = None
    deduplication_id: str | None = None


@dataclass
class SenderStats:
    requests: int = 0
    accepted: int = 0
    retried_entries: int = 0


class MessageSender(Protocol):
    """Sends messages in batches; reports each acceptance through the callback it was made with."""

    stats: SenderStats

    def add(self, queue_url: str, message: Outgoing[Any]) -> None: ...

    def flush(self) -> None: ...

    def settle(self) -> None:
        """Wait for the requests in flight and report what SQS accepted, sending nothing more (a run that
        failed for another reason must know every acceptance before it records its progress)."""
        ...


SenderFactory = Callable[[Callable[[Any], None]], MessageSender]
"""Makes a sender that calls the given function with a message's tag when SQS accepts the message."""


class QueueDirectory(Protocol):
    """Where forwarded records go: each authority's queue."""

    def authority_queue_url(self, gss_code: str) -> str: ...


# -- the held store ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldKey:
    """One held record: the row of a file's content (the same identity the file's progress uses)."""

    trust_ods_code: str
    sha256: str
    row: int

    def __str__(self) -> str:
        return f"{self.trust_ods_code} {self.sha256[:12]} row {self.row}"


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """What ingest stores for one held record: ``body`` is the record itself (messages.HeldMessage, every
    field); the rest names it without personal data, for listing, counting and telling the trust."""

    key: HeldKey
    file_key: str
    report_key: str
    reason: HeldReason
    authority_gss_code: str | None
    authority_name: str | None
    notification_id: str
    notification_type: NotificationType
    body: str


@dataclass
class HeldWriterStats:
    requests: int = 0
    stored: int = 0
    retried_items: int = 0


class HeldWriter(Protocol):
    """Stores held records, in batches where the store allows; reports each record the store accepted
    through the callback it was made with (a record counts as held only once stored)."""

    stats: HeldWriterStats

    def add(self, entry: HeldEntry, tag: Any) -> None: ...

    def flush(self) -> None: ...


HeldWriterFactory = Callable[[Callable[[Any], None], bool], HeldWriter]
"""Makes a held writer: the callback gets a record's tag once the store accepted it. With the flag set (a
retried run) the writer never overwrites a record an earlier attempt stored: it may have been released or
discarded since."""


@dataclass(frozen=True)
class HeldSummary:
    """A held record without personal data: what listing, counting and alarms need."""

    key: HeldKey
    file_key: str
    report_key: str
    reason: HeldReason
    authority_gss_code: str | None
    authority_name: str | None
    notification_type: NotificationType
    held_at: datetime
    expires_at: datetime | None
    """None while the record is open: it is kept until a person acts on it."""
    status: HeldStatus
    retention_days: int | None = None
    """How long it is kept once acted on (the stage's held retention when it was held)."""


@dataclass(frozen=True)
class HeldDetail:
    """A held record with what only the held reviewer may see: the record itself."""

    summary: HeldSummary
    message: HeldMessage

    @property
    def key(self) -> HeldKey:
        return self.summary.key


class HeldAges(Protocol):
    """The open held records without personal data (the store's ``open`` index): what reminders count."""

    def open_records(self, reasons: Iterable[HeldReason] | None = None) -> list[HeldSummary]: ...


class HeldStore(Protocol):
    """The durable store of held records (adapters.held), independent of any queue's retention.

    A record moves HELD -> RELEASING (claimed by one release) -> RELEASED, or HELD -> DISCARDED; released and
    discarded records keep no personal data, only who did what, when, and under which action."""

    def open_records(self, reasons: Iterable[HeldReason] | None = None) -> list[HeldSummary]:
        """Records not yet released or discarded (RELEASING ones included: a release that stopped half-way),
        oldest first."""
        ...

    def details(self, keys: Iterable[HeldKey]) -> list[HeldDetail]:
        """The records themselves (personal data), for those keys that are still open."""
        ...

    def claim(self, key: HeldKey, action: HeldAction, stale_before: datetime) -> bool:
        """HELD (or RELEASING since before ``stale_before``) -> RELEASING under ``action``; False when another
        action has it or it is no longer held."""
        ...

    def unclaim(self, key: HeldKey, action: HeldAction) -> None: ...

    def mark_released(self, key: HeldKey, action: HeldAction, gss_code: str, agreement_id: str) -> bool:
        """RELEASING (under ``action``) -> RELEASED, the record itself deleted."""
        ...

    def discard(self, key: HeldKey, action: HeldAction) -> bool:
        """HELD -> DISCARDED, the record itself deleted; False when it is no longer held."""
        ...

    def save_action(self, action: HeldAction) -> None:
        """Record (or update) an action: who, when, what, why, and which records."""
        ...

    def actions(self, since: datetime) -> list[HeldAction]: ...


# -- the sharing ledger ---------------------------------------------------------------------------------


@dataclass
class LedgerStats:
    requests: int = 0
    entries: int = 0


class LedgerStore(Protocol):
    """Where ledger entries are kept (domain.ledger): objects of JSON Lines, each written whole, by key."""

    stats: LedgerStats

    def put(self, key: str, lines: list[str]) -> None:
        """Write (or overwrite: a retry writes the same entries again) one object of entries."""
        ...

    def lines(self, since: date | None = None) -> Iterable[str]:
        """Every entry (a JSON object), of the days from ``since`` when given."""
        ...


class DestinationStore(Protocol):
    """Per trust: which councils received each notification chain (original notification id -> council ->
    agreement id). No personal data: the trust's own ids and council codes."""

    stats: LedgerStats

    def get(self, trust: str) -> tuple[dict[str, Any], str | None]:
        """The trust's index and its version (None when there is none yet)."""
        ...

    def put(self, trust: str, index: dict[str, Any], version: str | None) -> bool:
        """Write the index if it is still at ``version``; False when another file's run changed it first."""
        ...


# -- a file's progress ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    rows_done: int
    """Every row up to this one was sent or counted; the next run starts after it."""
    processing_day: date
    """The day agreements were judged on, kept so a resumed run decides exactly as the first did."""
    accepted_rows: frozenset[int] = field(default_factory=frozenset)
    """Rows after ``rows_done`` that SQS accepted before the run gave up: never sent again."""


class ProgressStore(Protocol):
    def begin(self, trust: str, sha256: str, fresh: Progress) -> Progress | None:
        """Save ``fresh`` unless a checkpoint exists; return that one (None: the first attempt)."""
        ...

    def load(self, trust: str, sha256: str) -> Progress | None: ...

    def save(self, trust: str, sha256: str, progress: Progress) -> None: ...


class SnapshotStore(Protocol):
    """A file's resume snapshot (application.resume), one object per trust and content, encrypted at rest."""

    stats: LedgerStats

    def load(self, trust: str, sha256: str) -> bytes | None:
        """The snapshot's bytes, or None when there is none."""
        ...

    def save(self, trust: str, sha256: str, data: bytes) -> None: ...


# -- uploads, reports, events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedUpload:
    """An upload as one request for it answered: its size, time and metadata, and its bytes as a stream that
    nothing has read yet (the caller reads or closes it)."""

    size: int
    last_modified: datetime
    body: IO[bytes]
    metadata: Mapping[str, str] = field(default_factory=dict)
    """The object's user metadata (the mesh function's, for a file that came by MESH)."""


class UploadStore(Protocol):
    """The inbound bucket: an upload's size, time and metadata, and its bytes as a stream (never all in memory)."""

    def fetch(self, upload: InboundObject) -> FetchedUpload:
        """The upload (the version named, if any) in one request: what S3 says of it, and its unread bytes."""
        ...

    def open(self, upload: InboundObject) -> IO[bytes]:
        """The upload's bytes again, as a stream (one request, made when first read)."""
        ...


@dataclass(frozen=True)
class StoredUpload:
    """One version of an upload's key still in the inbound bucket."""

    upload: InboundObject
    uploaded_at: datetime


class ProcessedFiles(Protocol):
    """The processed files' reports and the uploads they came from (adapters.s3), for re-delivery
    (application.redeliver)."""

    def reports(self) -> Iterable[FileReport]:
        """Every report in the reports bucket."""
        ...

    def versions(self, bucket: str, key: str) -> list[StoredUpload]:
        """The versions of an upload's key still kept, newest first."""
        ...

    def open(self, upload: InboundObject) -> IO[bytes]: ...


class ReportStore(Protocol):
    def write(self, report: FileReport, row_errors: Iterable[str], row_warnings: Iterable[str]) -> None:
        """Store the report with every row error and warning (each a JSON object), streamed."""


class EventPublisher(Protocol):
    def publish(self, event: FileProcessedEvent | HeldActionEvent) -> None: ...


# -- reports back by MESH --------------------------------------------------------------------------------


class MeshOutbox(Protocol):
    """The service's MESH mailbox, sending."""

    def send(
        self,
        recipient: str,
        body: IO[bytes],
        size: int,
        *,
        workflow_id: str,
        file_name: str,
        local_id: str,
        subject: str,
        content_type: str,
    ) -> str:
        """Send ``size`` bytes of ``body`` to the ``recipient`` mailbox; returns MESH's message id."""
        ...


MeshSender = Callable[[], AbstractContextManager[MeshOutbox]]
"""Opens a session with the service's mailbox (credentials read from the secret when it opens)."""


class ReportSource(Protocol):
    """The reports bucket, read: a report's bytes as a stream, and its size."""

    def open(self, key: str) -> tuple[IO[bytes], int]: ...


# -- emails and digests ---------------------------------------------------------------------------------


class EmailTransport(Protocol):
    def send(self, email: Email, recipient: str) -> str:
        """Send ``email`` to one recipient; returns the provider's message id, raises on failure."""
        ...


class DestinationRefused(RuntimeError):
    """The provider took a bulk request but refused one destination of it (its status code, never the
    address): that recipient is not marked, so the next attempt mails it."""


@runtime_checkable
class BulkEmailTransport(EmailTransport, Protocol):
    """A transport that sends many (email, recipient) pairs in one request (SES SendBulkTemplatedEmail)."""

    max_destinations: int
    """The most destinations one request may carry (SES: 50)."""

    def send_bulk(self, deliveries: Sequence[tuple[Email, str]]) -> list[str | DestinationRefused]:
        """Send each email to its recipient in one request; returns, in the same order, each destination's
        message id or why it was refused. Raises when the request as a whole failed (nobody was mailed)."""
        ...


@dataclass(frozen=True)
class DigestDay:
    gss_code: str
    day: date
    new: int
    amend: int
    cancel: int
    files: int
    trusts: list[str]
    agreements: list[str]
    closed: bool
    sent: bool

    @property
    def total(self) -> int:
        return self.new + self.amend + self.cancel


class DeliveryInProgress(RuntimeError):
    """Another invocation is mailing the same recipients (a duplicate delivery of the event): this one
    fails, and SQS retries it once that one is done."""


class DeliveryRun(Protocol):
    """The recipients of one run of emails (an event's), claimed before they are mailed: one at a time
    (``claim``), or all at once before one bulk request (``claim_all``)."""

    def claim(self, mark: str) -> bool:
        """True: mail this recipient now; False: it was mailed before. Raises DeliveryInProgress."""
        ...

    def claim_all(self, marks: Sequence[str]) -> list[str]:
        """Take the run in one write; returns the marks not yet mailed (in order), which this invocation may
        now mail. Raises DeliveryInProgress while another invocation holds the run and some are not mailed."""
        ...

    def sent(self, mark: str) -> None: ...

    def remember(self) -> None:
        """Write the marks reported sent so far, keeping the run (between two bulk requests of one run)."""
        ...

    def close(self) -> None:
        """Remember every recipient reported sent, and let the next invocation take the run."""
        ...


class Deliveries(Protocol):
    """A durable memory of who was mailed, so each recipient gets an email at most once across retries."""

    def run(self, key: str, lease_seconds: float) -> DeliveryRun:
        """Start a run; ``lease_seconds``: how long, at most, this invocation may still be mailing."""
        ...


class SentMarks(Protocol):
    """A durable memory of warnings sent (longer than the per-recipient delivery memory of 35 days)."""

    def was_sent(self, key: str) -> bool: ...

    def mark_sent(self, key: str) -> None: ...


class DigestStore(Protocol):
    """Digest counts per authority and day, each event counted once."""

    def add(
        self, gss_code: str, day: date, event_id: str, trust: str, agreement_id: str, new: int, amend: int, cancel: int
    ) -> date | None: ...

    def unsent(self, gss_codes: Iterable[str], days: Iterable[date]) -> list[DigestDay]: ...

    def close(self, gss_code: str, day: date) -> DigestDay: ...

    def mark_sent(self, gss_code: str, day: date) -> None: ...
