"""Writing the sharing ledger from the ingest path, and answering from it: who received a baby's record
(``audit``), and how many records each agreement carried (``agreements``).

The pipeline records each outcome when it is final (SQS or the held store accepted the record, or the
record was withheld) and the recorder writes the entries of a chunk of rows in one object at each
checkpoint and at the end of the file: one request per chunk of up to 5,000 rows, never one per record.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from birthnotify.application.ports import LedgerStore
from birthnotify.domain.ledger import (
    SHARING_OUTCOMES,
    LedgerEntry,
    LedgerOutcome,
    action_key,
    chunk_key,
    entry_id,
)
from birthnotify.domain.record import BirthNotification, NotificationType
from birthnotify.domain.registry import Registry, SharingAgreement


@dataclass(frozen=True, slots=True)
class Subject:
    """A record as the ledger names it: keyed hashes and the trust's ids, nothing else."""

    baby_nhs_hash: str
    mother_nhs_hash: str | None
    notification_id: str
    notification_type: NotificationType
    original_notification_id: str | None


class SubjectHasher:
    """Makes a record's Subject with the ledger key (read from Secrets Manager by the handler)."""

    def __init__(self, key: bytes) -> None:
        # HMAC's keyed inner and outer states, made once: each hash then copies them (~8x faster per row).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, record: BirthNotification) -> Subject:
        mother = record.mother_nhs_number
        return Subject(
            self.of(record.baby_nhs_number),
            self.of(mother) if mother else None,
            record.notification_id,
            record.notification_type,
            record.original_notification_id,
        )

    def of(self, nhs_number: str) -> str:
        """domain.ledger.subject_hash with this key."""
        keyed = self._keyed.copy()
        keyed.update(nhs_number.encode("ascii"))
        return keyed.hexdigest()


class LedgerRecorder:
    """Collects the entries of one file's rows and writes them a chunk at a time."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        trust_ods_code: str,
        file_sha256: str,
        day: date,
        clock: Callable[[], datetime],
        first_row: int = 1,
    ) -> None:
        self._store = store
        self._trust = trust_ods_code
        self._sha256 = file_sha256
        self._day = day
        self._clock = clock
        self._first_row = first_row
        self._pending: list[tuple[int, Subject, LedgerOutcome, str | None, str | None, SharingAgreement | None]] = []

    def record(
        self,
        row: int,
        subject: Subject,
        outcome: LedgerOutcome,
        *,
        reason: str | None = None,
        authority_gss_code: str | None = None,
        agreement: SharingAgreement | None = None,
    ) -> None:
        self._pending.append((row, subject, outcome, reason, authority_gss_code, agreement))

    def flush(self, next_first_row: int) -> None:
        """Write the entries recorded since the last flush (rows from the chunk's first row) in one object;
        the next chunk starts at ``next_first_row``. A chunk with no entries writes nothing."""
        if self._pending:
            recorded_at = json.dumps(self._clock().isoformat())
            lines = [self._line(recorded_at, *pending) for pending in self._pending]
            self._store.put(chunk_key(self._day, self._trust, self._sha256, self._first_row), lines)
            self._pending = []
        self._first_row = next_first_row

    def _line(
        self,
        recorded_at: str,
        row: int,
        subject: Subject,
        outcome: LedgerOutcome,
        reason: str | None,
        gss_code: str | None,
        agreement: SharingAgreement | None,
    ) -> str:
        return ledger_line(recorded_at, self._trust, self._sha256, row, subject, outcome, reason, gss_code, agreement)


def ledger_line(
    recorded_at: str,
    trust: str,
    sha256: str,
    row: int,
    subject: Subject,
    outcome: LedgerOutcome,
    reason: str | None,
    gss_code: str | None,
    agreement: SharingAgreement | None,
) -> str:
    """One entry as a JSON line (the shape of domain.ledger.LedgerEntry; ``recorded_at`` already JSON), built as
    text: this runs once per record. Ids, codes and hashes match patterns that need no JSON escaping; the
    reason, agreement id and field names go through json.dumps."""
    shared = outcome in SHARING_OUTCOMES and outcome is not LedgerOutcome.MOVED_OUT
    event_id = entry_id(trust, sha256, row, outcome, gss_code, _event(outcome, reason))
    return (
        f'{{"schema_version":"1","entry_id":"{event_id}",'
        f'"recorded_at":{recorded_at},"outcome":"{outcome.value}","reason":{_json(reason)},'
        f'"baby_nhs_hash":"{subject.baby_nhs_hash}","mother_nhs_hash":{_quoted(subject.mother_nhs_hash)},'
        f'"trust_ods_code":"{trust}","file_sha256":"{sha256}","row":{row},'
        f'"notification_id":"{subject.notification_id}","notification_type":"{subject.notification_type.value}",'
        f'"original_notification_id":{_quoted(subject.original_notification_id)},'
        f'"authority_gss_code":{_quoted(gss_code)},"agreement_id":{_json(agreement.id if agreement else None)},'
        f'"fields_shared":{_fields(agreement) if agreement and shared else "[]"}}}'
    )


_FIELDS: dict[tuple[str, frozenset[str]], str] = {}


def _fields(agreement: SharingAgreement) -> str:
    """The agreement's field names as JSON, made once per agreement. Keyed by its fields as well as its id: an id
    is unique within one registry, but a process may load another (the local cloud, tests) in which that id's
    agreement allows other fields, and the ledger must name those."""
    key = (agreement.id, agreement.allowed_fields)
    fields = _FIELDS.get(key)
    if fields is None:
        fields = _FIELDS[key] = json.dumps(list(agreement.shared_fields))
    return fields


_ACTION_OUTCOMES = frozenset({LedgerOutcome.RELEASED, LedgerOutcome.DISCARDED, LedgerOutcome.REDELIVERED})


def _event(outcome: LedgerOutcome, reason: str | None) -> str | None:
    """A review action's entries are told apart by the action (named in the reason): two re-deliveries of a
    record are two events; one ingest outcome, retried, is one."""
    return reason if outcome in _ACTION_OUTCOMES else None


def _quoted(value: str | None) -> str:
    return f'"{value}"' if value is not None else "null"


_json = functools.lru_cache(maxsize=256)(lambda value: json.dumps(value))


def write_action_entries(store: LedgerStore, action_id: str, day: date, lines: list[str]) -> None:
    """The entries of a review action (release, discard, re-delivery): one object per action."""
    if lines:
        store.put(action_key(day, action_id), lines)


# -- answering from the ledger ---------------------------------------------------------------------------


def entries(store: LedgerStore, since: date | None = None) -> Iterable[LedgerEntry]:
    """Every entry, each outcome event once (by entry id)."""
    seen: set[str] = set()
    for line in store.lines(since):
        entry = LedgerEntry.model_validate_json(line)
        if entry.entry_id not in seen:
            seen.add(entry.entry_id)
            yield entry


@dataclass(frozen=True)
class AuditLine:
    """One outcome of a subject's record, with what a subject access request answer needs."""

    when: datetime
    outcome: LedgerOutcome
    reason: str | None
    trust_ods_code: str
    notification_id: str
    notification_type: NotificationType
    council_gss_code: str | None
    council_name: str | None
    agreement_id: str | None
    purpose: str | None
    fields_shared: list[str]

    def as_json(self) -> dict[str, object]:
        return {
            "date": self.when.isoformat(),
            "outcome": self.outcome.value,
            "reason": self.reason,
            "trust": self.trust_ods_code,
            "notification_id": self.notification_id,
            "notification_type": self.notification_type.value,
            "council_gss_code": self.council_gss_code,
            "council": self.council_name,
            "agreement_id": self.agreement_id,
            "purpose": self.purpose,
            "fields_shared": self.fields_shared,
        }


def audit(
    store: LedgerStore,
    hasher: SubjectHasher,
    registry: Registry,
    nhs_number: str,
    *,
    mother: bool = False,
    since: date | None = None,
) -> list[AuditLine]:
    """Every ledger entry for the baby (or, with ``mother``, the mother) with that NHS number, oldest first."""
    wanted = hasher.of(nhs_number)
    agreements = {a.id: a for authority in registry.authorities for a in authority.agreements}
    lines = []
    for entry in entries(store, since):
        if (entry.mother_nhs_hash if mother else entry.baby_nhs_hash) != wanted:
            continue
        agreement = agreements.get(entry.agreement_id or "")
        gss = entry.authority_gss_code
        lines.append(
            AuditLine(
                when=entry.recorded_at,
                outcome=entry.outcome,
                reason=entry.reason,
                trust_ods_code=entry.trust_ods_code,
                notification_id=entry.notification_id,
                notification_type=entry.notification_type,
                council_gss_code=gss,
                council_name=registry.council_name(gss) if gss else None,
                agreement_id=entry.agreement_id,
                purpose=agreement.purpose if agreement else None,
                fields_shared=entry.fields_shared,
            )
        )
    return sorted(lines, key=lambda line: (line.when, line.trust_ods_code, line.notification_id))


def records_per_agreement(store: LedgerStore) -> Counter[str]:
    """How many records each agreement carried to its council (forwarded, released and re-delivered)."""
    counted = {LedgerOutcome.FORWARDED, LedgerOutcome.RELEASED, LedgerOutcome.REDELIVERED}
    return Counter(entry.agreement_id for entry in entries(store) if entry.outcome in counted and entry.agreement_id)


class ActionLedger:
    """The entries of one review action (release, discard, re-delivery), written in one object when it ends."""

    def __init__(self, store: LedgerStore, hasher: SubjectHasher, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._lines: list[str] = []

    def record(
        self,
        trust: str,
        sha256: str,
        row: int,
        record: BirthNotification,
        outcome: LedgerOutcome,
        *,
        reason: str | None = None,
        authority_gss_code: str | None = None,
        agreement: SharingAgreement | None = None,
    ) -> None:
        recorded_at = json.dumps(self._clock().isoformat())
        self._lines.append(
            ledger_line(
                recorded_at, trust, sha256, row, self._hasher(record), outcome, reason, authority_gss_code, agreement
            )
        )

    def write(self, action_id: str, day: date) -> None:
        write_action_entries(self._store, action_id, day, self._lines)
        self._lines = []
