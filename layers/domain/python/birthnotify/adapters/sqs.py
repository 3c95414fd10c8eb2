"""Sends messages to SQS ten at a time, retrying only the entries SQS did not accept.

A message counts as sent only once SQS has accepted it: callers learn of each acceptance through the
``on_accepted`` callback, with the tag they gave the message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from birthnotify.application.ports import Outgoing, SenderStats
from birthnotify.domain.messages import FileProcessedEvent, HeldActionEvent, MeshQuarantinedEvent
from birthnotify.shared.names import authority_queue_name

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024


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


class BatchSender:
    """Buffers messages per queue and sends full batches of ten."""

    def __init__(self, sqs: Any, on_accepted: Callable[[Any], None], *, max_attempts: int = 6,
                 base_delay: float = 0.05, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sqs = sqs
        self._on_accepted = on_accepted
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._sleep = sleep
        self._buffers: dict[str, _Buffer] = {}
        self.stats = SenderStats()

    def add(self, queue_url: str, message: Outgoing[Any]) -> None:
        buffer = self._buffers.setdefault(queue_url, _Buffer())
        size = len(message.body.encode())
        # FIFO order holds within a group only if a batch never carries two of its messages: were the
        # first to fail and the second succeed, the retry would arrive out of order.
        if (message.group_id is not None and message.group_id in buffer.groups) or (
            buffer.size + size > MAX_BATCH_BYTES
        ):
            self._flush(queue_url, buffer)
        buffer.entries.append(message)
        buffer.size += size
        if message.group_id is not None:
            buffer.groups.add(message.group_id)
        if len(buffer.entries) == MAX_BATCH_ENTRIES:
            self._flush(queue_url, buffer)

    def flush(self) -> None:
        """Send every partly filled batch (before a checkpoint, and at the end of a file)."""
        for queue_url, buffer in self._buffers.items():
            if buffer.entries:
                self._flush(queue_url, buffer)

    def _flush(self, queue_url: str, buffer: _Buffer) -> None:
        pending = {str(index): message for index, message in enumerate(buffer.entries)}
        buffer.entries, buffer.groups, buffer.size = [], set(), 0
        for attempt in range(self._max_attempts):
            if attempt:
                self.stats.retried_entries += len(pending)
                self._sleep(min(self._base_delay * 2 ** (attempt - 1), 5.0))
            entries = [_entry(entry_id, message) for entry_id, message in pending.items()]
            self.stats.requests += 1
            try:
                response = self._sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                # botocore has already retried throttling and 5xx; a few more tries ride out a longer blip.
                codes = [exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__]
                continue
            for success in response.get("Successful", []):
                message = pending.pop(success["Id"])
                self.stats.accepted += 1
                self._on_accepted(message.tag)
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


class SqsQueues:
    """The authority queues, found by their predictable names."""

    def __init__(self, sqs: Any, authority_queue_prefix: str) -> None:
        self._sqs = sqs
        self._prefix = authority_queue_prefix
        self._urls: dict[str, str] = {}

    def authority_queue_url(self, gss_code: str) -> str:
        url = self._urls.get(gss_code)
        if url is None:
            name = authority_queue_name(self._prefix, gss_code)
            url = self._urls[gss_code] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return url


class SqsEvents:
    """The file-events queue the notifier consumes: files processed, MESH messages quarantined."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def publish(self, event: FileProcessedEvent | MeshQuarantinedEvent | HeldActionEvent) -> None:
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=event.model_dump_json())
