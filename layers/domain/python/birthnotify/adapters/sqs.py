"""Sends messages to SQS ten at a time, several requests at once, retrying only the entries SQS did not
accept.

A message counts as sent only once SQS has accepted it: callers learn of each acceptance through the
``on_accepted`` callback, with the tag they gave the message, always on the caller's own thread (in
``add`` or ``flush``), never from a worker.

Requests overlap (``concurrency`` at a time) across queues and message groups; FIFO order within a group
holds because a batch never carries two messages of one group, and a batch waits until every earlier
batch holding one of its groups has finished (retries included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from birthnotify.application.ports import Outgoing, SenderStats
from birthnotify.domain.messages import FileProcessedEvent, HeldActionEvent, MeshQuarantinedEvent
from birthnotify.shared.names import authority_queue_name

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
DEFAULT_CONCURRENCY = 16
"""Requests in flight at once: at a 15-20 ms round trip, enough for several thousand records a second. The
SQS client's connection pool must be at least this large (``adapters.aws.ingest`` sizes it)."""


class SendFailed(Exception):
    """SQS kept refusing some entries after every retry; nothing unaccepted was reported sent."""

    def __init__(self, queue_url: str, unsent: int, codes: list[str]) -> None:
        super().__init__(f"SQS did not accept {unsent} message(s) for {queue_url}: {sorted(set(codes))}")
        self.unsent = unsent
        self.codes = codes


@dataclass
class _Buffer:
    entries: list[Outgoing[Any]] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)
    size: int = 0


@dataclass
class _Outcome:
    """What one batch came to, handed back to the caller's thread."""

    accepted: list[Any] = field(default_factory=list)
    requests: int = 0
    retried_entries: int = 0
    error: Exception | None = None


class BatchSender:
    """Buffers messages per queue and sends full batches of ten, up to ``concurrency`` requests at once."""

    def __init__(
        self,
        sqs: Any,
        on_accepted: Callable[[Any], None],
        *,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._sqs = sqs
        self._on_accepted = on_accepted
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._sleep = sleep
        self._concurrency = max(1, concurrency)
        self._buffers: dict[str, _Buffer] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: set[Future[_Outcome]] = set()
        self._groups_in_flight: dict[tuple[str, str], Future[_Outcome]] = {}
        self._error: Exception | None = None
        self.stats = SenderStats()

    def add(self, queue_url: str, message: Outgoing[Any]) -> None:
        buffer = self._buffers.setdefault(queue_url, _Buffer())
        size = len(message.body.encode())
        # FIFO order holds within a group only if a batch never carries two of its messages: were the
        # first to fail and the second succeed, the retry would arrive out of order.
        if (message.group_id is not None and message.group_id in buffer.groups) or (
            buffer.size + size > MAX_BATCH_BYTES
        ):
            self._dispatch(queue_url, buffer)
        buffer.entries.append(message)
        buffer.size += size
        if message.group_id is not None:
            buffer.groups.add(message.group_id)
        if len(buffer.entries) == MAX_BATCH_ENTRIES:
            self._dispatch(queue_url, buffer)

    def flush(self) -> None:
        """Send every partly filled batch and wait for every request (before a checkpoint, and at the end of
        a file): on return, every message added was accepted and reported, or SendFailed is raised after
        every acceptance SQS gave has been reported."""
        try:
            for queue_url, buffer in self._buffers.items():
                if buffer.entries:
                    self._dispatch(queue_url, buffer)
            self._settle(wait_for=set(self._in_flight))
            self._raise_first_error()
        finally:  # a failed file leaves no idle threads behind in the container
            self._settle(wait_for=set(self._in_flight))
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def settle(self) -> None:
        """Wait for every request in flight and report its acceptances; a partly filled batch is not sent."""
        try:
            self._settle(wait_for=set(self._in_flight))
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def _dispatch(self, queue_url: str, buffer: _Buffer) -> None:
        entries, groups = buffer.entries, buffer.groups
        buffer.entries, buffer.groups, buffer.size = [], set(), 0
        self._raise_first_error()
        # An earlier batch holding one of these groups must finish first (its retries too).
        earlier = {
            self._groups_in_flight[(queue_url, group)]
            for group in groups
            if (queue_url, group) in self._groups_in_flight
        }
        self._settle(wait_for=earlier)
        while len(self._in_flight) >= self._concurrency:
            self._settle(wait_for=set(self._in_flight), first_only=True)
        self._raise_first_error()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="sqs-send")
        future = self._executor.submit(self._send, queue_url, entries)
        self._in_flight.add(future)
        for group in groups:
            self._groups_in_flight[(queue_url, group)] = future

    def _settle(self, wait_for: set[Future[_Outcome]], first_only: bool = False) -> None:
        """Wait for requests, then report every finished batch's acceptances (here, on the caller's thread)."""
        if wait_for:
            wait(wait_for, return_when=FIRST_COMPLETED if first_only else ALL_COMPLETED)
        done = {future for future in self._in_flight if future.done()}
        if not done:
            return
        self._in_flight -= done
        self._groups_in_flight = {key: future for key, future in self._groups_in_flight.items() if future not in done}
        for future in done:
            outcome = future.result()  # never raises: _send hands back its error, so no acceptance is lost
            self.stats.requests += outcome.requests
            self.stats.retried_entries += outcome.retried_entries
            for tag in outcome.accepted:
                self.stats.accepted += 1
                self._on_accepted(tag)
            if outcome.error is not None and self._error is None:
                self._error = outcome.error

    def _raise_first_error(self) -> None:
        """A batch failed for good: let every request in flight finish and be reported, then raise."""
        if self._error is None:
            return
        self._settle(wait_for=set(self._in_flight))
        error, self._error = self._error, None
        raise error

    def _send(self, queue_url: str, messages: list[Outgoing[Any]]) -> _Outcome:
        """One batch, retried until SQS accepts every entry (runs on a worker thread: touches no shared state)."""
        outcome = _Outcome()
        try:
            self._send_batch(queue_url, messages, outcome)
        except Exception as exc:  # noqa: BLE001 (raised on the caller's thread, after what was accepted is reported)
            outcome.error = exc
        return outcome

    def _send_batch(self, queue_url: str, messages: list[Outgoing[Any]], outcome: _Outcome) -> None:
        pending = {str(index): message for index, message in enumerate(messages)}
        codes: list[str] = []
        for attempt in range(self._max_attempts):
            if attempt:
                outcome.retried_entries += len(pending)
                self._sleep(min(self._base_delay * 2 ** (attempt - 1), 5.0))
            entries = [_entry(entry_id, message) for entry_id, message in pending.items()]
            outcome.requests += 1
            try:
                response = self._sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except ClientError as exc:
                if exc.response["Error"]["Code"] in _MISSING_QUEUE_CODES:
                    raise QueueMissing(queue_url) from None  # retrying cannot create it
                codes = [exc.response["Error"]["Code"]]
                continue
            except BotoCoreError as exc:
                # botocore has already retried throttling and 5xx; a few more tries ride out a longer blip.
                codes = [type(exc).__name__]
                continue
            for success in response.get("Successful", []):
                outcome.accepted.append(pending.pop(success["Id"]).tag)
            failed = response.get("Failed", [])
            codes = [failure.get("Code", "Unknown") for failure in failed]
            if not pending:
                return
            if any(failure.get("SenderFault") for failure in failed):
                break  # the request itself is wrong: retrying cannot help
        raise SendFailed(queue_url, len(pending), codes)


def _entry(entry_id: str, message: Outgoing[Any]) -> dict[str, str]:
    entry = {"Id": entry_id, "MessageBody": message.body}
    if message.group_id is not None:
        entry["MessageGroupId"] = message.group_id
    if message.deduplication_id is not None:
        entry["MessageDeduplicationId"] = message.deduplication_id
    return entry


class QueueMissing(Exception):
    """An authority's queue does not exist (not deployed, or the URL base names another account or region)."""

    def __init__(self, queue_url: str) -> None:
        super().__init__(
            f"SQS queue {queue_url} does not exist: deploy the stack that holds this authority's queue, or "
            "check the function's QUEUE_URL_BASE names this account and region"
        )


_MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


class SqsQueues:
    """The authority queues, by their predictable names: with ``url_base`` (the deployment's
    ``https://sqs.<region>.<url suffix>/<account>/``) their URLs are built, with no request; without it
    (operators' commands) each is looked up once."""

    def __init__(self, sqs: Any, authority_queue_prefix: str, url_base: str | None = None) -> None:
        self._sqs = sqs
        self._prefix = authority_queue_prefix
        self._url_base = url_base
        self._urls: dict[str, str] = {}

    def authority_queue_url(self, gss_code: str) -> str:
        url = self._urls.get(gss_code)
        if url is None:
            name = authority_queue_name(self._prefix, gss_code)
            if self._url_base:
                url = self._urls[gss_code] = self._url_base + name
            else:
                url = self._urls[gss_code] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return url


class SqsEvents:
    """The file-events queue the notifier consumes: files processed, MESH messages quarantined."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def publish(self, event: FileProcessedEvent | MeshQuarantinedEvent | HeldActionEvent) -> None:
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=event.model_dump_json())
