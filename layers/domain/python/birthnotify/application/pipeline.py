"""The per-row work on one file: validate, route, serialise, send, and tally every outcome.

A resumed run replays what an earlier, interrupted run did: the rows up to its checkpoint, and the later
rows SQS had already accepted when it gave up, are validated and routed again (the result is
deterministic) to rebuild the tallies and the error list, but never sent again. So a retry that comes
after SQS's deduplication window has passed still sends each record once.

One row never costs the others: any unexpected exception while validating, routing or serialising a row
makes that row a ROW_UNPROCESSABLE error. A failure to send is not a row's fault: it fails the file,
which is retried.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from birthnotify.application.destinations import Destinations
from birthnotify.application.ledger import LedgerRecorder, Subject, SubjectHasher
from birthnotify.application.ports import HeldEntry, HeldKey, HeldWriterFactory, Outgoing, Progress, SenderFactory
from birthnotify.domain.ledger import LedgerOutcome
from birthnotify.domain.messages import (
    MESSAGE_SCHEMA_VERSION,
    AuthorityCounts,
    FileOutcome,
    HeldCount,
    HeldReason,
    RowError,
    RowWarning,
    WithheldReason,
)
from birthnotify.domain.reader import RawRow
from birthnotify.domain.record import (
    ERROR_HELP,
    NOTIFICATION_ID_PATTERN,
    BirthNotification,
    ErrorCode,
    NotificationType,
    sqs_refuses,
)
from birthnotify.domain.routing import Forward, Hold, Router, Withhold
from birthnotify.domain.seen import SeenIds
from birthnotify.domain.validation import RowValidator, ValidRow

CHECKPOINT_EVERY_ROWS = 5_000
STOP_CHECK_EVERY_ROWS = 200


@dataclass(frozen=True, slots=True)
class Extra:
    """A further message a row sends to a council that received its notification chain earlier: a moved-out
    notice (an AMEND placed the family in another council) or the CANCEL itself."""

    row: int
    forward: Forward
    moved_out: bool
    subject: Subject | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """What travels with a message to the sender and back when SQS accepts it: its row and decision."""

    row: int
    decision: Forward | Hold
    notification_type: NotificationType
    subject: Subject | None = None
    """The record as the ledger names it (keyed hashes and ids), when a ledger is kept."""
    extras: tuple[Extra, ...] = ()
    """The row's further messages: the row counts as accepted only once SQS has accepted all of them."""


@dataclass(frozen=True, slots=True)
class Messages:
    """A row's messages: its own first, then any Extra."""

    main: Outgoing[Sent] | tuple[HeldEntry, Sent]
    """To the council's queue, or to the held store."""
    extras: list[Outgoing[Extra]]


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
    rows_with_warnings: int = 0
    warnings_by: dict[ErrorCode, int] = field(default_factory=dict)
    errors: IO[str] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(2**20, mode="w+", encoding="utf-8"))
    warnings: IO[str] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(2**20, mode="w+", encoding="utf-8"))

    def reject(self, errors: list[RowError]) -> None:
        self.rejected += 1
        for error in errors:
            self.rejected_by[error.code] = self.rejected_by.get(error.code, 0) + 1
            self.errors.write(error.model_dump_json())
            self.errors.write("\n")

    def warn(self, warnings: tuple[RowWarning, ...]) -> None:
        """An accepted row had optional fields left out."""
        self.rows_with_warnings += 1
        for warning in warnings:
            self.warnings_by[warning.code] = self.warnings_by.get(warning.code, 0) + 1
            self.warnings.write(warning.model_dump_json())
            self.warnings.write("\n")

    def withhold(self, reason: WithheldReason) -> None:
        self.withheld += 1
        self.withheld_by[reason] = self.withheld_by.get(reason, 0) + 1

    def accepted(self, sent: Sent) -> None:
        """SQS accepted a message: count it where it went."""
        decision, notification_type = sent.decision, sent.notification_type
        if isinstance(decision, Forward):
            forward = decision
            self.forwarded += 1
            counts = self.by_authority.get(forward.authority.gss_code)
            if counts is None:
                counts = self.by_authority[forward.authority.gss_code] = AuthorityCounts(
                    gss_code=forward.authority.gss_code,
                    name=forward.authority.name,
                    agreement_id=forward.agreement.id,
                )
            if notification_type is NotificationType.NEW:
                counts.new += 1
            elif notification_type is NotificationType.AMEND:
                counts.amend += 1
            else:
                counts.cancel += 1
        else:
            hold = decision
            self.held += 1
            key = (hold.reason, hold.gss_code)
            held = self.held_by.get(key)
            if held is None:
                held = self.held_by[key] = HeldCount(
                    reason=hold.reason,
                    authority_gss_code=hold.gss_code,
                    authority_name=hold.name,
                    count=0,
                )
            held.count += 1

    def notice(self, extra: Extra) -> None:
        """A further message (moved-out notice, cancellation sent on) that SQS accepted."""
        authority = extra.forward.authority
        counts = self.by_authority.get(authority.gss_code)
        if counts is None:
            counts = self.by_authority[authority.gss_code] = AuthorityCounts(
                gss_code=authority.gss_code, name=authority.name, agreement_id=extra.forward.agreement.id
            )
        counts.notices += 1

    def outcome(self) -> FileOutcome:
        return FileOutcome(
            rows_in=self.rows_in,
            forwarded=self.forwarded,
            rejected=self.rejected,
            withheld=self.withheld,
            held=self.held,
            authorities=sorted(self.by_authority.values(), key=lambda a: a.gss_code),
            held_by_reason=list(self.held_by.values()),
            withheld_by_reason=dict(self.withheld_by),
            rejected_by_code=dict(self.rejected_by),
            rows_with_warnings=self.rows_with_warnings,
            warnings_by_code=dict(self.warnings_by),
        )

    def row_errors(self) -> Iterable[str]:
        """Every row error as a JSON object, in row order."""
        return _spooled(self.errors)

    def row_warnings(self) -> Iterable[str]:
        """Every warning as a JSON object, in row order."""
        return _spooled(self.warnings)


def _spooled(spool: IO[str]) -> Iterable[str]:
    spool.flush()
    spool.seek(0)
    for line in spool:
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
        f'"record":{record.model_dump_json(include=forward.agreement.shared_fields, exclude_none=True)}}}'
    )


_Q = '"'
_json = functools.lru_cache(maxsize=256)(lambda value: json.dumps(value))


def moved_out_notice_body(record: BirthNotification, forward: Forward, source: Source, row: int) -> str:
    """What a council that had the record receives when an AMEND places the family elsewhere: the ids, and no
    field of the record (not the new address)."""
    return (
        f'{{"schema_version":"{MESSAGE_SCHEMA_VERSION}","agreement_id":{_json(forward.agreement.id)},'
        f'"authority_gss_code":"{forward.authority.gss_code}","source":{source.json_prefix}"row":{row}}},'
        f'"notification_id":"{record.notification_id}","notification_type":"{record.notification_type.value}",'
        f'"original_notification_id":"{record.original_notification_id}","notice":"MOVED_OUT","record":{{}}}}'
    )


def held_message_body(record: BirthNotification, hold: Hold, source: Source, row: int) -> str:
    return json.dumps(
        {
            "schema_version": MESSAGE_SCHEMA_VERSION,
            "reason": hold.reason.value,
            "authority_gss_code": hold.gss_code,
            "source": source.as_json(row),
            "record": record.model_dump(mode="json", exclude_none=True),
        },
        separators=(",", ":"),
    )


Tag = TypeVar("Tag")


def forward_message(record: BirthNotification, forward: Forward, source: Source, row: int, tag: Tag) -> Outgoing[Tag]:
    """The message an authority receives for a record, with its FIFO group and deduplication id: the one place
    they are made, so a record released from the held store or re-delivered goes out exactly as a first send
    would have (same body, same deduplication id)."""
    body = authority_message_body(record, forward, source, row)
    return Outgoing(
        body,
        tag,
        group_id=order_group(source.trust_ods_code, record),
        deduplication_id=hashlib.sha256(body.encode()).hexdigest(),
    )


def held_entry(
    record: BirthNotification, hold: Hold, source: Source, row: int, report_key: str, body: str
) -> HeldEntry:
    return HeldEntry(
        key=HeldKey(source.trust_ods_code, source.sha256, row),
        file_key=source.key,
        report_key=report_key,
        reason=hold.reason,
        authority_gss_code=hold.gss_code,
        authority_name=hold.name,
        notification_id=record.notification_id,
        notification_type=record.notification_type,
        body=body,
    )


def order_group(trust_ods_code: str, record: BirthNotification) -> str:
    """FIFO group of a notification and its amendments and cancellation: ordered among themselves, and
    carrying no personal data (the trust's own ids only)."""
    return f"{trust_ods_code}:{record.original_notification_id or record.notification_id}"


UnexpectedRow = Callable[[int, "str | None", Exception], None]
"""Told of a row that failed unexpectedly: its number, the trust's notification id (if well formed) and
the exception (whose message may quote the row: never log it)."""


class FilePipeline:
    """Pushes the rows of one file through validation, routing and sending: forwarded records to their
    authority's queue, held records to the held store. Each counts only once SQS or the store accepted it."""

    def __init__(
        self,
        *,
        source: Source,
        validator: RowValidator,
        router: Router,
        sender_factory: SenderFactory,
        queue_url: Callable[[str], str],
        held_writer_factory: HeldWriterFactory,
        report_key: str = "",
        retrying: bool = False,
        on_unexpected: UnexpectedRow = lambda row, notification_id, exc: None,
        ledger: LedgerRecorder | None = None,
        hasher: SubjectHasher | None = None,
        destinations: Destinations | None = None,
    ) -> None:
        self.source = source
        self._destinations = destinations
        self._parts: dict[int, list[Any]] = {}
        """Rows with further messages: [messages SQS has yet to accept, the row's Sent]."""
        self._ledger = ledger
        self._hasher = hasher if ledger is not None else None
        self._ledger_after = 0
        """Rows up to this one were recorded in the ledger by an earlier run (up to its checkpoint)."""
        self.tally = Tally()
        self._validator = validator
        self._router = router
        self.sender = sender_factory(self._accepted)
        # A retried run may find records an earlier attempt stored (and a reviewer has acted on since).
        self.held = held_writer_factory(self._accepted, retrying)
        self._queue_url = queue_url
        self._report_key = report_key
        self._on_unexpected = on_unexpected
        self.settled_through = 0
        """Every row up to this one is settled: accepted by SQS or the held store, or never to be sent."""
        self.accepted_since: set[int] = set()
        """Rows after ``settled_through`` that SQS or the held store has accepted."""

    @property
    def seen_ids(self) -> SeenIds:
        """The notification ids the rows so far used (a resumed run restores them)."""
        return self._validator.seen_ids

    @seen_ids.setter
    def seen_ids(self, seen: SeenIds) -> None:
        self._validator.seen_ids = seen

    def progress(self, processing_day: Any) -> Progress:
        """What a retry must not send again: everything SQS and the held store have accepted so far."""
        return Progress(self.settled_through, processing_day, frozenset(self.accepted_since))

    def run(
        self,
        rows: Iterable[RawRow],
        *,
        resume: Progress | None = None,
        checkpoint: Callable[[int], None] = lambda rows_done: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Tally:
        """Process every row; raises FileIncomplete (after a checkpoint) when ``should_stop`` says so."""
        tally, sender = self.tally, self.sender
        resume_after = resume.rows_done if resume else 0
        resent_never = resume.accepted_rows if resume else frozenset()
        self.settled_through = resume_after
        self._ledger_after = resume_after
        for raw in rows:
            row = raw.row
            tally.rows_in += 1
            if row <= resume_after:
                self._handle(raw, replaying=True)
                continue
            self._handle(raw, replaying=row in resent_never)
            if row % CHECKPOINT_EVERY_ROWS == 0:
                self._checkpoint(row, checkpoint)
            if row % STOP_CHECK_EVERY_ROWS == 0 and should_stop():
                self._checkpoint(row, checkpoint)
                raise FileIncomplete(row)
        sender.flush()
        self.held.flush()
        if self._ledger is not None:
            self._ledger.flush(tally.rows_in + 1)
        return tally

    def _checkpoint(self, row: int, checkpoint: Callable[[int], None]) -> None:
        self.sender.flush()
        self.held.flush()
        if self._ledger is not None:  # before the checkpoint: a retry from it never needs these entries again
            self._ledger.flush(row + 1)
        checkpoint(row)
        self.settled_through = row
        self.accepted_since = {accepted for accepted in self.accepted_since if accepted > row}

    def _accepted(self, tag: Sent | Extra) -> None:
        """SQS or the held store accepted a record's message (a row with further messages counts once all are)."""
        if isinstance(tag, Extra):
            self._record_extra(tag)
        else:
            self._record(tag)
        parts = self._parts.get(tag.row)
        if parts is not None:
            parts[0] -= 1
            if parts[0]:
                return
            del self._parts[tag.row]
        sent = tag if isinstance(tag, Sent) else parts[1] if parts is not None else None
        assert sent is not None
        self.accepted_since.add(sent.row)
        self._count(sent)

    def _count(self, sent: Sent) -> None:
        self.tally.accepted(sent)
        for extra in sent.extras:
            self.tally.notice(extra)

    def _record_extra(self, extra: Extra) -> None:
        if self._ledger is None or extra.subject is None or extra.row <= self._ledger_after:
            return
        forward = extra.forward
        self._ledger.record(
            extra.row,
            extra.subject,
            LedgerOutcome.MOVED_OUT if extra.moved_out else LedgerOutcome.FORWARDED,
            reason="CHAIN_EARLIER_RECIPIENT",
            authority_gss_code=forward.authority.gss_code,
            agreement=forward.agreement,
        )

    def _record(self, sent: Sent) -> None:
        """A final outcome, in the ledger (unless an earlier run recorded it before its checkpoint)."""
        if self._ledger is None or sent.subject is None or sent.row <= self._ledger_after:
            return
        decision = sent.decision
        if isinstance(decision, Forward):
            self._ledger.record(
                sent.row,
                sent.subject,
                LedgerOutcome.FORWARDED,
                authority_gss_code=decision.authority.gss_code,
                agreement=decision.agreement,
            )
        else:
            self._ledger.record(
                sent.row,
                sent.subject,
                LedgerOutcome.HELD,
                reason=decision.reason.value,
                authority_gss_code=decision.gss_code,
            )

    def _handle(self, raw: RawRow, replaying: bool) -> None:
        try:
            result, warnings = self._decide(raw, replaying)
        except Exception as exc:  # noqa: BLE001 (one row's fault must never cost the others)
            self._unexpected(raw, exc)
            return
        if warnings:
            self.tally.warn(warnings)
        if isinstance(result, list):
            self.tally.reject(result)
        elif isinstance(result, tuple):
            withhold, subject = result
            self.tally.withhold(withhold.reason)
            if self._ledger is not None and subject is not None and raw.row > self._ledger_after:
                self._ledger.record(raw.row, subject, LedgerOutcome.WITHHELD, reason=withhold.reason.value)
        elif isinstance(result, Sent):  # accepted by SQS or the store in an earlier run: counted, not sent again
            if raw.row > self.settled_through:
                self.accepted_since.add(raw.row)
            self._count(result)
            self._record(result)
            for extra in result.extras:
                self._record_extra(extra)
        else:
            # Outside the row's try: a queue that cannot be reached fails the file, which is retried.
            main = result.main
            sent = main.tag if isinstance(main, Outgoing) else main[1]
            if result.extras:
                self._parts[raw.row] = [1 + len(result.extras), sent]
            if isinstance(main, Outgoing):
                forward = main.tag.decision
                assert isinstance(forward, Forward)
                self.sender.add(self._queue_url(forward.authority.gss_code), main)
            else:
                entry, _ = main
                self.held.add(entry, sent)
            for further in result.extras:
                self.sender.add(self._queue_url(further.tag.forward.authority.gss_code), further)

    def _decide(
        self, raw: RawRow, replaying: bool
    ) -> tuple[list[RowError] | tuple[Withhold, Subject | None] | Sent | Messages, tuple[RowWarning, ...]]:
        """Everything that depends on the row's content, without side effects on the tally, SQS or the held
        store; and the optional fields left out of an accepted row."""
        valid = self._validator.validate(raw)
        if not isinstance(valid, ValidRow):
            return valid, ()
        return self._route(raw, valid.record, replaying), valid.warnings

    def _route(
        self, raw: RawRow, record: BirthNotification, replaying: bool
    ) -> tuple[Withhold, Subject | None] | Sent | Messages:
        decision = self._router.decide(record)
        subject = self._hasher(record) if self._hasher is not None and raw.row > self._ledger_after else None
        if isinstance(decision, Withhold):
            return decision, subject
        extras = self._earlier_recipients(raw.row, record, decision, subject)
        sent = Sent(raw.row, decision, record.notification_type, subject, extras)
        if replaying:
            return sent
        source, row = self.source, raw.row
        main: Outgoing[Sent] | tuple[HeldEntry, Sent]
        if isinstance(decision, Hold):
            body = held_message_body(record, decision, source, row)
            # Released one day, it becomes an SQS message: the contract keeps such characters out.
            if sqs_refuses(body):
                raise ValueError("held record holds characters SQS refuses")
            main = held_entry(record, decision, source, row, self._report_key, body), sent
        else:
            main = forward_message(record, decision, source, row, sent)
            if sqs_refuses(main.body):  # the contract keeps these out; SQS would refuse the batch
                raise ValueError("message body holds characters SQS refuses")
        messages = Messages(
            main,
            [
                forward_message(record, extra.forward, source, row, extra)
                if not extra.moved_out
                else self._notice_message(record, extra)
                for extra in extras
            ],
        )
        if any(sqs_refuses(further.body) for further in messages.extras):
            raise ValueError("message body holds characters SQS refuses")
        return messages

    def _notice_message(self, record: BirthNotification, extra: Extra) -> Outgoing[Extra]:
        body = moved_out_notice_body(record, extra.forward, self.source, extra.row)
        return Outgoing(
            body,
            extra,
            group_id=order_group(self.source.trust_ods_code, record),
            deduplication_id=hashlib.sha256(body.encode()).hexdigest(),
        )

    def _earlier_recipients(
        self, row: int, record: BirthNotification, decision: Forward | Hold, subject: Subject | None
    ) -> tuple[Extra, ...]:
        """The councils that received this notification chain before and must hear of this row too: all of them
        for a CANCEL; for an AMEND that places the family in another council, each earlier one, told only that
        the family moved out. Records where this row goes, for later rows and files."""
        index = self._destinations
        if index is None:
            return ()
        chain = record.original_notification_id or record.notification_id
        target = (
            decision.authority.gss_code
            if isinstance(decision, Forward)
            else (decision.gss_code if decision.reason is HeldReason.NO_AGREEMENT else None)
        )
        extras: tuple[Extra, ...] = ()
        if record.notification_type is not NotificationType.NEW and (
            record.notification_type is NotificationType.CANCEL or target is not None
        ):
            moved_out = record.notification_type is NotificationType.AMEND
            told = index.moved_out_of(chain) if moved_out else set()  # a notice once, not at every later AMEND
            found = (
                self._router.forward_to(gss, agreement_id)
                for gss, agreement_id in sorted(index.previous(chain).items())
                if gss not in (target, *told)
            )
            extras = tuple(Extra(row, forward, moved_out, subject) for forward in found if forward is not None)
            for extra in extras:
                if moved_out:
                    index.told_moved_out(chain, extra.forward.authority.gss_code)
        if isinstance(decision, Forward):
            index.add(chain, decision.authority.gss_code, decision.agreement.id)
        return extras

    def _unexpected(self, raw: RawRow, exc: Exception) -> None:
        notification_id = raw.values.get("notification_id")
        notification_id = (
            notification_id
            if isinstance(notification_id, str) and NOTIFICATION_ID_PATTERN.match(notification_id)
            else None
        )
        self._on_unexpected(raw.row, notification_id, exc)
        self.tally.reject(
            [
                RowError(
                    row=raw.row,
                    notification_id=notification_id,
                    field=None,
                    code=ErrorCode.ROW_UNPROCESSABLE,
                    message=ERROR_HELP[ErrorCode.ROW_UNPROCESSABLE],
                )
            ]
        )
