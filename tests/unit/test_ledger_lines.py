"""The ledger's fast paths agree with its model: the prepared HMAC with domain.ledger.subject_hash, and each
line built as text with LedgerEntry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from birthnotify.application.ledger import Subject, SubjectHasher, ledger_line
from birthnotify.domain.ledger import LedgerEntry, LedgerOutcome, subject_hash
from birthnotify.domain.record import NotificationType
from birthnotify.domain.registry import load_registry
from ingest_support import REGISTRY_PATH

KEY = b"k" * 40


def test_the_prepared_hmac_is_the_keyed_hash_and_differs_by_key():
    hasher = SubjectHasher(KEY)
    for number in ("9990000018", "9990000026", "9434765919"):
        assert hasher.of(number) == subject_hash(KEY, number)
        assert hasher.of(number) == hasher.of(number)  # the prepared state is copied, never consumed
    assert SubjectHasher(b"j" * 40).of("9990000018") != hasher.of("9990000018")


def test_every_kind_of_line_is_a_valid_entry_naming_fields_only_when_shared():
    agreement = load_registry(REGISTRY_PATH).authority("E08000035").agreement_on(datetime.now(UTC).date())
    subject = Subject("a" * 64, None, "N-1", NotificationType.AMEND, "N-0")
    when = json.dumps(datetime(2026, 11, 25, 9, 30, tzinfo=UTC).isoformat())
    for outcome, reason, gss, shared in (
        (LedgerOutcome.FORWARDED, None, "E08000035", True),
        (LedgerOutcome.MOVED_OUT, "CHAIN_EARLIER_RECIPIENT", "E08000035", False),
        (LedgerOutcome.WITHHELD, 'a "quoted" reason', None, False),
    ):
        entry = LedgerEntry.model_validate_json(
            ledger_line(when, "RX1", "f" * 64, 7, subject, outcome, reason, gss, agreement if gss else None)
        )
        assert (entry.outcome, entry.reason, entry.authority_gss_code, entry.row) == (outcome, reason, gss, 7)
        assert entry.fields_shared == (sorted(agreement.allowed_fields) if shared else [])
        assert entry.mother_nhs_hash is None and entry.original_notification_id == "N-0"
        assert entry.recorded_at == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def test_an_agreement_id_loaded_again_with_other_fields_is_recorded_with_those_fields():
    agreement = load_registry(REGISTRY_PATH).authority("E08000035").agreement_on(datetime.now(UTC).date())
    narrower = agreement.model_copy(update={"allowed_fields": frozenset(sorted(agreement.allowed_fields)[:1])})
    assert narrower.id == agreement.id and narrower.allowed_fields != agreement.allowed_fields
    subject = Subject("a" * 64, None, "N-1", NotificationType.NEW, None)
    when = json.dumps(datetime(2026, 11, 25, 9, 30, tzinfo=UTC).isoformat())
    for shared in (agreement, narrower, agreement):
        line = ledger_line(when, "RX1", "f" * 64, 7, subject, LedgerOutcome.FORWARDED, None, "E08000035", shared)
        assert LedgerEntry.model_validate_json(line).fields_shared == sorted(shared.allowed_fields)
