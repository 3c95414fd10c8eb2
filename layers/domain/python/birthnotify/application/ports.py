"""What the application needs from the world outside it: Protocols the adapters implement, and the data
that crosses them. Nothing here calls AWS."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from birthnotify.domain.messages import FileProcessedEvent, FileReport
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


SenderFactory = Callable[[Callable[[Any], None]], MessageSender]
"""Makes a sender that calls the given function with a message's tag when SQS accepts the message."""


class QueueDirectory(Protocol):
    """Where records go: each authority's queue, and the held queue."""

    @property
    def held_queue_url(self) -> str: ...

    def authority_queue_url(self, gss_code: str) -> str: ...


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
    def load(self, trust: str, sha256: str) -> Progress | None: ...

    def save(self, trust: str, sha256: str, progress: Progress) -> None: ...


# -- uploads, reports, events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadHead:
    size: int
    last_modified: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    """The object's user metadata (the mesh function's, for a file that came by MESH)."""


class UploadStore(Protocol):
    """The inbound bucket: an upload's size and time, and its bytes as a stream (never all in memory)."""

    def head(self, upload: InboundObject) -> UploadHead: ...

    def open(self, upload: InboundObject) -> IO[bytes]: ...


class ReportStore(Protocol):
    def write(self, report: FileReport, row_errors: Iterable[str], row_warnings: Iterable[str]) -> None:
        """Store the report with every row error and warning (each a JSON object), streamed."""


class EventPublisher(Protocol):
    def publish(self, event: FileProcessedEvent) -> None: ...


# -- reports back by MESH --------------------------------------------------------------------------------


class MeshOutbox(Protocol):
    """The service's MESH mailbox, sending."""

    def send(self, recipient: str, body: IO[bytes], size: int, *, workflow_id: str, file_name: str, local_id: str,
             subject: str, content_type: str) -> str:
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


class DigestStore(Protocol):
    """Digest counts per authority and day, each event counted once."""

    def add(self, gss_code: str, day: date, event_id: str, trust: str, agreement_id: str, new: int, amend: int,
            cancel: int) -> date | None: ...

    def unsent(self, gss_codes: Iterable[str], days: Iterable[date]) -> list[DigestDay]: ...

    def close(self, gss_code: str, day: date) -> DigestDay: ...

    def mark_sent(self, gss_code: str, day: date) -> None: ...
