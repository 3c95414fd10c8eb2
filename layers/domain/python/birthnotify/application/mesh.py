"""Receive trusts' files from the service's MESH mailbox into the inbound bucket: one run of the scheduled
mesh function.

A run takes the run lock (never two at once), handshakes, lists the inbox for the service's workflows and
takes each message in turn until its message or time budget is spent: it streams the message into S3 (the
trust's folder, or quarantine), and only then acknowledges it. A message whose run stopped after the write
and before the acknowledgement is listed again by the next run, which finds the object already there and
only acknowledges. The first failure ends the run (the function fails and alarms); nothing it did not
store is acknowledged.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Protocol

from birthnotify.application.ports import Log
from birthnotify.domain.mesh import (
    GZIP_MAGIC,
    Destination,
    MeshMessage,
    MeshWorkflows,
    destination,
    object_metadata,
)
from birthnotify.domain.messages import MeshQuarantinedEvent, QuarantineReason
from birthnotify.domain.registry import Registry
from birthnotify.shared.clock import utc_now

SNIFF_BYTES = 64 * 1024
"""Read ahead of the first bytes, to tell gzip content (the key's extension) before anything is stored."""
MIN_LIST_RESULTS = 10
"""MESH lists at least ten messages a page."""


@dataclass
class ReceivedMessage:
    """A message being retrieved: MESH's headers and a stream of its content (every chunk in turn)."""

    headers: MeshMessage
    body: IO[bytes]


class MeshInbox(Protocol):
    """The service's MESH mailbox, for one run."""

    def handshake(self) -> None: ...

    def list(self, workflow_id: str, limit: int) -> list[str]: ...

    def retrieve(self, message_id: str) -> AbstractContextManager[ReceivedMessage]: ...

    def acknowledge(self, message_id: str) -> None: ...


MeshConnector = Callable[[], AbstractContextManager[MeshInbox]]
"""Opens a session with the service's mailbox (credentials read when it opens) and closes it after."""


class InboundWriter(Protocol):
    """The inbound bucket, as the mesh function writes to it."""

    def holds(self, key: str, message_id: str) -> bool:
        """True when ``key`` already holds the whole of this MESH message (written by an earlier run)."""
        ...

    def write(self, key: str, body: IO[bytes], metadata: dict[str, str]) -> int:
        """Stream ``body`` to ``key`` (the object appears whole or not at all); returns its size."""
        ...


class RunLock(Protocol):
    def acquire(self, owner: str, seconds: int) -> bool: ...

    def release(self, owner: str) -> None: ...


class NoticePublisher(Protocol):
    def publish(self, event: MeshQuarantinedEvent) -> None: ...


@dataclass(frozen=True)
class MeshPorts:
    connect: MeshConnector
    inbound: InboundWriter
    lock: RunLock
    notices: NoticePublisher


@dataclass
class MeshRun:
    """What one run did (counts and message ids only)."""

    skipped: bool = False
    """Another run held the lock: this one did nothing."""
    listed: int = 0
    stored: list[str] = field(default_factory=list)
    """Message ids stored in a trust's folder (and acknowledged)."""
    quarantined: dict[str, QuarantineReason] = field(default_factory=dict)
    already_stored: list[str] = field(default_factory=list)
    """Messages an earlier run stored but did not acknowledge: acknowledged now, not written again."""
    bytes_stored: int = 0
    left: int = 0
    """Listed messages left for the next run (the budget was spent)."""


class MeshRunFailed(RuntimeError):
    """A message could not be taken; it stays in the inbox (unacknowledged) for the next run."""

    def __init__(self, message_id: str, run: MeshRun, cause: Exception) -> None:
        # The cause is an AWS or MESH client error: ids and keys, never a file name or content.
        super().__init__(
            f"MESH message {message_id} could not be received ({type(cause).__name__}: "
            f"{str(cause)[:300]}); it stays in the inbox for the next run"
        )
        self.message_id = message_id
        self.run = run


class MeshReceiver:
    """Everything one run of the mesh function does, with its MESH, S3, DynamoDB and SQS adapters injected."""

    def __init__(
        self,
        *,
        registry: Registry,
        workflows: MeshWorkflows,
        inbound_bucket: str,
        ports: MeshPorts,
        max_messages: int,
        clock: Callable[[], datetime] = utc_now,
        log: Log | None = None,
    ) -> None:
        self.registry = registry
        self.workflows = workflows
        self.inbound_bucket = inbound_bucket
        self.ports = ports
        self.max_messages = max_messages
        self._clock = clock
        self.log: Log = log or logging.getLogger("birthnotify.mesh")

    def run(self, owner: str, lease_seconds: int, should_stop: Callable[[], bool] = lambda: False) -> MeshRun:
        """One run: ``owner`` names it in the lock, held for ``lease_seconds`` at most (longer than the run
        can last); ``should_stop`` says when the time budget is spent (checked before each message)."""
        if not self.ports.lock.acquire(owner, lease_seconds):
            self.log.info("another run holds the MESH lock: nothing to do")
            return MeshRun(skipped=True)
        try:
            with self.ports.connect() as inbox:
                return self._run(inbox, should_stop)
        finally:
            self.ports.lock.release(owner)

    def _run(self, inbox: MeshInbox, should_stop: Callable[[], bool]) -> MeshRun:
        inbox.handshake()
        run = MeshRun()
        listed = list(self._listed(inbox))
        run.listed = len(listed)
        for index, message_id in enumerate(listed):
            if index >= self.max_messages or should_stop():
                run.left = len(listed) - index
                self.log.info("budget spent: the rest is left for the next run", extra={"left": run.left})
                break
            try:
                self._take(inbox, message_id, run)
            except Exception as exc:
                # The message id is MESH's, not the trust's: safe to log; the file name is not logged.
                self.log.error(
                    "MESH message not received", extra={"message_id": message_id, "error": type(exc).__name__}
                )
                raise MeshRunFailed(message_id, run, exc) from exc
        return run

    def _listed(self, inbox: MeshInbox) -> Iterator[str]:
        seen: set[str] = set()
        limit = max(MIN_LIST_RESULTS, self.max_messages)
        for workflow_id in self.workflows.received:
            for message_id in inbox.list(workflow_id, limit):
                if message_id not in seen:
                    seen.add(message_id)
                    yield message_id

    def _take(self, inbox: MeshInbox, message_id: str, run: MeshRun) -> None:
        with inbox.retrieve(message_id) as received:
            headers = received.headers
            body = io.BufferedReader(_Raw(received.body), buffer_size=SNIFF_BYTES)
            where = destination(
                headers, self.registry, self.workflows, gzip_content=body.peek(len(GZIP_MAGIC)).startswith(GZIP_MAGIC)
            )
            if self.ports.inbound.holds(where.key, message_id):
                run.already_stored.append(message_id)
                self.log.info("MESH message already stored by an earlier run", extra={"message_id": message_id})
            else:
                run.bytes_stored += self.ports.inbound.write(where.key, body, object_metadata(headers, where))
        if where.quarantined is not None:
            self._report_quarantine(headers, where)
            run.quarantined[message_id] = where.quarantined
        elif message_id not in run.already_stored:
            run.stored.append(message_id)
        inbox.acknowledge(message_id)
        self.log.info(
            "MESH message received",
            extra={"message_id": message_id, "key": where.key, "quarantined": where.quarantined},
        )

    def _report_quarantine(self, headers: MeshMessage, where: Destination) -> None:
        """Before the acknowledgement: the operators hear of it even if the run stops now (the notifier sends
        each event's email once)."""
        assert where.quarantined is not None
        self.log.warning(
            "MESH message quarantined", extra={"message_id": headers.message_id, "reason": where.quarantined.value}
        )
        self.ports.notices.publish(
            MeshQuarantinedEvent(
                event_id=f"mesh-quarantined:{headers.message_id}",
                message_id=headers.message_id,
                sender_mailbox=headers.sender.upper(),
                trust_ods_code=where.trust.ods_code if where.trust else None,
                workflow_id=headers.workflow_id,
                message_type=headers.message_type,
                reason=where.quarantined,
                bucket=self.inbound_bucket,
                key=where.key,
                received_at=self._clock(),
            )
        )


class _Raw(io.RawIOBase):
    """Any object with ``read(n)`` as a raw binary stream (io.BufferedReader reads from it)."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
