"""The demo's subject-access example: a baby forwarded as it arrived when the upload has one among the first rows,
whatever the new synthetic file of each run puts first (rejected, withheld, or held and since released)."""

from __future__ import annotations

from datetime import UTC, datetime

from birthnotify.application.ledger import AuditLine
from birthnotify.domain.ledger import LedgerOutcome
from birthnotify.domain.record import NotificationType
from birthnotify_cli.demo import audit_example


def _line(outcome: LedgerOutcome, fields: list[str]) -> AuditLine:
    return AuditLine(
        when=datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
        outcome=outcome,
        reason=None,
        trust_ods_code="RX1",
        notification_id="BN1",
        notification_type=NotificationType.NEW,
        council_gss_code="E06000014",
        council_name="City of York Council",
        agreement_id="YORK-HCS-2026-RENEWED" if fields else None,
        purpose=None,
        fields_shared=fields,
    )


HELD_THEN_RELEASED = [_line(LedgerOutcome.HELD, []), _line(LedgerOutcome.RELEASED, ["postcode"])]
FORWARDED = [_line(LedgerOutcome.FORWARDED, ["postcode"])]
WITHHELD = [_line(LedgerOutcome.WITHHELD, [])]


def _rows(*ids: str) -> list[dict[str, str]]:
    return [{"notification_id": i} for i in ids]


def test_a_forwarded_baby_is_shown_even_after_a_held_and_released_one():
    ledger = {"BN1": WITHHELD, "BN2": HELD_THEN_RELEASED, "BN3": FORWARDED}
    row, lines = audit_example(_rows("BN1", "BN2", "BN3"), lambda row: ledger[row["notification_id"]])
    assert row["notification_id"] == "BN3" and lines == FORWARDED


def test_without_a_forwarded_baby_the_first_that_reached_a_council_and_else_the_first_row():
    ledger = {"BN1": WITHHELD, "BN2": HELD_THEN_RELEASED, "BN3": []}
    assert audit_example(_rows("BN1", "BN2", "BN3"), lambda row: ledger[row["notification_id"]])[0] == {
        "notification_id": "BN2"
    }
    assert audit_example(_rows("BN1", "BN3"), lambda row: ledger[row["notification_id"]]) == (
        {"notification_id": "BN1"},
        WITHHELD,
    )
