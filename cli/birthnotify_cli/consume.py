"""An authority's consumer: long-poll its queue, append records to a file, then delete the messages.

Safe to interrupt and re-run. A message is deleted only after its record is flushed and fsynced, so an
interruption never loses one; a message received again after an interruption (written, not yet deleted)
is recognised by its trust and notification id already in the output and not written twice. So is a record
the service re-delivered (``birthnotify redeliver``, a held record released twice, a trust's file sent again
under another name): each notification is written once, across runs.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from birthnotify.domain.csvsafe import spreadsheet_safe
from birthnotify.domain.messages import AuthorityMessage, SharedRecord
from pydantic import ValidationError

ENVELOPE_COLUMNS = (
    "notification_id",
    "notification_type",
    "original_notification_id",
    "agreement_id",
    "authority_gss_code",
    "source_trust_ods_code",
    "source_key",
    "source_sha256",
    "source_row",
)
CSV_COLUMNS = ENVELOPE_COLUMNS + tuple(SharedRecord.model_fields) + ("notice",)
"""``notice`` last: MOVED_OUT on a notice that the family moved out of the council's area (its record empty)."""


@dataclass
class ConsumeStats:
    received: int = 0
    written: int = 0
    already_written: int = 0
    deleted: int = 0
    unreadable: int = 0


def notification_key(trust: str, notification_id: str) -> str:
    """What identifies a notification across re-deliveries: the trust that sent it and its id for it (an
    amendment or a cancellation has an id of its own)."""
    return f"{trust}:{notification_id}"


class OutputFile:
    """The consumer's output, opened for appending, with the references of what it already holds."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self.references: set[str] = set()
        self._recover()
        self._handle = path.open("a", encoding="utf-8", newline="")
        if fmt == "csv" and path.stat().st_size == 0:
            self._handle.write(_csv_line(CSV_COLUMNS))

    def _recover(self) -> None:
        if not self.path.exists():
            self.path.touch()
            return
        # A run killed mid-write can leave a partial last line: cut it off (its message was not deleted).
        with self.path.open("rb+") as raw:
            data_end = raw.seek(0, os.SEEK_END)
            if data_end:
                raw.seek(max(0, data_end - 1))
                if raw.read(1) != b"\n":
                    raw.seek(0)
                    content = raw.read()
                    raw.truncate(content.rfind(b"\n") + 1)
        with self.path.open(encoding="utf-8", newline="") as handle:
            if self.format == "csv":
                for row in csv.DictReader(handle):
                    self.references.add(notification_key(row["source_trust_ods_code"], row["notification_id"]))
            else:
                for line in handle:
                    if line.strip():
                        written = json.loads(line)
                        self.references.add(
                            notification_key(written["source"]["trust_ods_code"], written["notification_id"])
                        )

    def append(self, messages: list[AuthorityMessage]) -> int:
        """Write the messages not already present, then make them durable. Returns how many were new."""
        written = 0
        for message in messages:
            reference = notification_key(message.source.trust_ods_code, message.notification_id)
            if reference in self.references:
                continue
            self._handle.write(
                _csv_line(_csv_values(message))
                if self.format == "csv"
                else message.model_dump_json(exclude_none=True) + "\n"
            )
            self.references.add(reference)
            written += 1
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return written

    def close(self) -> None:
        self._handle.close()


def _csv_values(message: AuthorityMessage) -> list[Any]:
    record = message.record.model_dump(mode="json")
    return [
        message.notification_id,
        message.notification_type.value,
        message.original_notification_id,
        message.agreement_id,
        message.authority_gss_code,
        message.source.trust_ods_code,
        message.source.key,
        message.source.sha256,
        message.source.row,
        *(record[name] for name in SharedRecord.model_fields),
        message.notice,
    ]


def _csv_line(values: Any) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([spreadsheet_safe(value) for value in values])
    return buffer.getvalue()


def receive_batches(sqs: Any, queue_url: str, wait_seconds: int, follow: bool) -> Iterator[list[dict]]:
    """Long-poll until the queue is empty (or forever with ``follow``)."""
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages and not follow:
            return
        if messages:
            yield messages


def consume(
    sqs: Any,
    queue_url: str,
    output: Path,
    fmt: str,
    *,
    wait_seconds: int = 20,
    follow: bool = False,
    progress: Callable[[ConsumeStats], None] | None = None,
) -> ConsumeStats:
    """Move every record from the queue into ``output``; messages that are not records stay on the queue
    (they reach the dead-letter queue after the configured receives)."""
    stats = ConsumeStats()
    out = OutputFile(output, fmt)
    try:
        for batch in receive_batches(sqs, queue_url, wait_seconds, follow):
            stats.received += len(batch)
            readable: list[tuple[dict, AuthorityMessage]] = []
            for message in batch:
                try:
                    readable.append((message, AuthorityMessage.model_validate_json(message["Body"])))
                except ValidationError:
                    stats.unreadable += 1
            written = out.append([parsed for _, parsed in readable])
            stats.written += written
            stats.already_written += len(readable) - written
            if readable:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, (m, _) in enumerate(readable)]
                response = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
                stats.deleted += len(response.get("Successful", []))
            if progress:
                progress(stats)
            if stats.unreadable and not follow and not readable:
                return stats  # only unreadable messages left: they are not ours to delete
    finally:
        out.close()
    return stats
