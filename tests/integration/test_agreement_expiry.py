"""The scheduled notify run warns the operators and the council before an agreement ends with no successor:
at 60, 30 and 7 days, each warning once, with no personal data."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from birthnotify.domain.registry import load_registry
from ingest_support import REGISTRY_PATH

REGISTRY = load_registry(REGISTRY_PATH)
CAMDEN, KENT = "E09000007", "E10000016"
OPERATORS = REGISTRY.operator_emails[0]
CAMDEN_CONTACT = REGISTRY.authority(CAMDEN).contact_emails[0]
KENT_CONTACTS = REGISTRY.authority(KENT).contact_emails


def days_before(end: date, days: int) -> datetime:
    return datetime.combine(end - timedelta(days=days), time(7), tzinfo=UTC)


def test_an_agreement_ending_in_30_days_is_warned_of_once_at_each_threshold(notify_stack):
    agreement = REGISTRY.authority(CAMDEN).agreement_on(date(2026, 11, 1))
    assert agreement is not None and agreement.valid_to is not None  # CAMDEN-SFL-2026, no successor
    end = agreement.valid_to

    def warned_on(days_left: int) -> list:
        before = len(notify_stack.expiry_warnings())
        result = notify_stack.schedule(now=days_before(end, days_left))
        warnings = notify_stack.expiry_warnings()[before:]
        assert result["expiry_warnings_sent"] == (1 if warnings else 0)
        return warnings

    assert warned_on(61) == []
    sixty = warned_on(60)
    assert warned_on(59) == []
    thirty = warned_on(30)
    assert warned_on(30) == []  # the same day's run again
    notify_stack.reload()  # a new container: the memory is the state table's, not the process's
    assert warned_on(29) == []
    seven = warned_on(7)
    assert warned_on(1) == [] and warned_on(0) == [] and warned_on(-1) == []

    for warnings, days in ((sixty, 60), (thirty, 30), (seven, 7)):
        assert sorted(recipient for email in warnings for recipient in email.to) == sorted([OPERATORS, CAMDEN_CONTACT])
        email = warnings[0]
        assert email.subject == f"Sharing agreement {agreement.id} ends in {days} days ({end:%d %B %Y})"
        assert "NO_AGREEMENT" in email.text and "Camden" in email.text and agreement.purpose in email.text
    assert notify_stack.to(CAMDEN_CONTACT) == []  # nothing else was sent


def test_an_agreement_with_a_successor_is_never_warned_of(notify_stack):
    ending, successor = sorted(REGISTRY.authority(KENT).agreements, key=lambda a: a.valid_from)
    assert ending.valid_to is not None and successor.valid_from > ending.valid_to
    for days_left in (60, 30, 7):
        notify_stack.schedule(now=days_before(ending.valid_to, days_left))
    assert not [email for email in notify_stack.expiry_warnings() if ending.id in email.subject]
    assert not [email for contact in KENT_CONTACTS for email in notify_stack.to(contact, expiry_warnings=True)]
