"""The per-row work on one file: validate, route, serialise, send, and tally every outcome.

Rows up to ``resume_after`` were dealt with by an earlier, interrupted run: they are validated and routed
again (the result is deterministic) to rebuild the tallies and the error list, but not sent again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from birthnotify.messages import (
    MESSAGE_SCHEMA_VERSION,
    AuthorityCounts,
    FileOutcome,
    HeldCount,
    HeldReason,
    RowError,
    WithheldReason,
)
from birthnotify.reader import RawRow
from birthnotify.record import BirthNotification, ErrorCode, NotificationType
from birthnotify.routing import Forward, Hold, Router, Withhold
from birthnotify.sender import BatchSender, Outgoing
from birthnotify.validation import RowValidator

CHECKPOINT_EVERY_ROWS = 5_000
STOP_CHECK_EVERY_ROWS = 200


class FileIncomplete(Exception):
    """Processing stopped early (the function is about to time out); progress was checkpointed."""

    def __init__(self, rows_done: int) -> None:
        super().__init__(f"stopped after row {rows_done}; the next attempt resumes from there")
        self.rows_done = rows_done


@dataclass(frozen=True)
class Source:  # noqa: PLW1641 (cached_property needs __dict__)
    """The file the rows came from, as quoted in every message."""

    trust_ods_code: str
    key: str
    sha256: str

    def as_json(self, row: int) -> dict[str, Any]:
        return {"trust_ods_code": self.trust_ods_code, "key": self.key, "sha256": self.sha256, "row": row}

    @functools.cached_property
    def json_prefix(self) -> str:
        """``{"trust_ods_code":...,"sha256":...,`` : the part of ``as_json`` that is the same for every row."""
        return json.dumps(self.as_json(0), separators=(",", ":"))[: -len('"row":0}')]


@dataclass
class Tally:
    """Counts of every outcome, and the row errors (spooled to disk, so memory stays flat)."""

    rows_in: int = 0
    forwarded: int = 0
    rejected: int = 0
    withheld: int = 0
    held: int = 0
    by_authority: dict[str, AuthorityCounts] = field(default_factory=dict)
    held_by: dict[tuple[HeldReason, str | None], HeldCount] = field(default_factory=dict)
    withheld_by: dict[WithheldReason, int] = field(default_factory=dict)
    rejected_by: dict[ErrorCode, int] = field(default_factory=dict)
    errors: IO[str] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(2**20, mode="w+", encoding="utf-8"))

    def reject(self, errors: list[RowError]) -> None:
        self.rejected += 1
        for error in errors:
            self.rejected_by[error.code] = self.rejected_by.get(error.code, 0) + 1
            self.errors.write(error.model_dump_json())
            self.errors.write("\n")

    def withhold(self, reason: WithheldReason) -> None:
        self.withheld += 1
        self.withheld_by[reason] = self.withheld_by.get(reason, 0) + 1

    def accepted(self, tag: tuple) -> None:
        """SQS accepted a message: count it where it went."""
        if tag[0] == "forward":
            _, forward, notification_type = tag
            self.forwarded += 1
            counts = self.by_authority.get(forward.authority.gss_code)
            if counts is None:
                counts = self.by_authority[forward.authority.gss_code] = AuthorityCounts(
                    gss_code=forward.authority.gss_code, name=forward.authority.name,
                    agreement_id=forward.agreement.id,
                )
            if notification_type is NotificationType.NEW:
                counts.new += 1
            elif notification_type is NotificationType.AMEND:
                counts.amend += 1
            else:
                counts.cancel += 1
        else:
            _, hold = tag
            self.held += 1
            authority = hold.authority
            key = (hold.reason, authority.gss_code if authority else None)
            counts = self.held_by.get(key)
            if counts is None:
                counts = self.held_by[key] = HeldCount(
                    reason=hold.reason, authority_gss_code=key[1], authority_name=authority.name if authority else None,
                    count=0,
                )
            counts.count += 1

    def outcome(self) -> FileOutcome:
        return FileOutcome(
            rows_in=self.rows_in, forwarded=self.forwarded, rejected=self.rejected, withheld=self.withheld,
            held=self.held, authorities=sorted(self.by_authority.values(), key=lambda a: a.gss_code),
            held_by_reason=list(self.held_by.values()), withheld_by_reason=dict(self.withheld_by),
            rejected_by_code=dict(self.rejected_by),
        )

    def row_errors(self) -> Iterable[str]:
        """Every row error as a JSON object, in row order."""
        self.errors.flush()
        self.errors.seek(0)
        for line in self.errors:
            yield line.rstrip("\n")


def authority_message_body(record: BirthNotification, forward: Forward, source: Source, row: int) -> str:
    """The JSON an authority receives (schema: messages.AuthorityMessage): the envelope, and only the
    fields its agreement allows."""
    # Assembled as text around pydantic's Rust serialiser: this runs once per forwarded row. Ids match
    # NOTIFICATION_ID_PATTERN, so they need no JSON escaping; the rest goes through json.dumps.
    original = record.original_notification_id
    return (
        f'{{"schema_version":"{MESSAGE_SCHEMA_VERSION}","agreement_id":{_json(forward.agreement.id)},'
        f'"authority_gss_code":"{forward.authority.gss_code}","source":{source.json_prefix}"row":{row}}},'
        f'"notification_id":"{record.notification_id}","notification_type":"{record.notification_type.value}",'
        f'"original_notification_id":{f"{_Q}{original}{_Q}" if original else "null"},'
        f'"record":{record.model_dump_json(include=forward.agreement.allowed_fields, exclude_none=True)}}}'
    )


_Q = '"'
_json = functools.lru_cache(maxsize=256)(lambda value: json.dumps(value))


def held_message_body(record: BirthNotification, hold: Hold, source: Source, row: int) -> str:
    return json.dumps(
        {
            "schema_version": MESSAGE_SCHEMA_VERSION,
            "reason": hold.reason.value,
            "authority_gss_code": hold.authority.gss_code if hold.authority else None,
            "source": source.as_json(row),
            "record": record.model_dump(mode="json", exclude_none=True),
        },
        separators=(",", ":"),
    )


def order_group(trust_ods_code: str, record: BirthNotification) -> str:
    """FIFO group of a notification and its amendments and cancellation: ordered among themselves, and
    carrying no personal data (the trust's own ids only)."""
    return f"{trust_ods_code}:{record.original_notification_id or record.notification_id}"


class FilePipeline:
    """Pushes the rows of one file through validation, routing and sending."""

    def __init__(self, *, source: Source, validator: RowValidator, router: Router, sender_factory:
                 Callable[[Callable[[Any], None]], BatchSender], queue_url: Callable[[str], str],
                 held_queue_url: str) -> None:
        self.source = source
        self.tally = Tally()
        self._validator = validator
        self._router = router
        self.sender = sender_factory(self.tally.accepted)
        self._queue_url = queue_url
        self._held_queue_url = held_queue_url

    def run(self, rows: Iterable[RawRow], *, resume_after: int = 0,
            checkpoint: Callable[[int], None] = lambda rows_done: None,
            should_stop: Callable[[], bool] = lambda: False) -> Tally:
        """Process every row; raises FileIncomplete (after a checkpoint) when ``should_stop`` says so."""
        tally, sender = self.tally, self.sender
        for raw in rows:
            row = raw.row
            tally.rows_in += 1
            replaying = row <= resume_after
            self._handle(raw, replaying)
            if replaying:
                continue
            if row % CHECKPOINT_EVERY_ROWS == 0:
                sender.flush()
                checkpoint(row)
            if row % STOP_CHECK_EVERY_ROWS == 0 and should_stop():
                sender.flush()
                checkpoint(row)
                raise FileIncomplete(row)
        sender.flush()
        return tally

    def _handle(self, raw: RawRow, replaying: bool) -> None:
        tally, source, row = self.tally, self.source, raw.row
        result = self._validator.validate(raw)
        if isinstance(result, list):
            tally.reject(result)
            return
        decision = self._router.decide(result)
        if isinstance(decision, Withhold):
            tally.withhold(decision.reason)
            return
        if isinstance(decision, Forward):
            tag = ("forward", decision, result.notification_type)
            if replaying:
                tally.accepted(tag)
                return
            body = authority_message_body(result, decision, source, row)
            self.sender.add(self._queue_url(decision.authority.gss_code), Outgoing(
                body, tag, group_id=order_group(source.trust_ods_code, result),
                deduplication_id=hashlib.sha256(body.encode()).hexdigest(),
            ))
            return
        tag = ("hold", decision)
        if replaying:
            tally.accepted(tag)
            return
        self.sender.add(self._held_queue_url, Outgoing(held_message_body(result, decision, source, row), tag))
