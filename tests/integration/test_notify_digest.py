"""Authorities that chose a digest get one email per day, sent by the schedule; no count is lost or doubled."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import to_bytes
from ingest_support import REGISTRY_PATH
from notify_support import find_personal, personal_values

REGISTRY = load_registry(REGISTRY_PATH)
LEEDS, CAMDEN = "E08000035", "E09000007"
CAMDEN_CONTACT = REGISTRY.authority(CAMDEN).contact_emails[0]
LEEDS_CONTACT = REGISTRY.authority(LEEDS).contact_emails[0]
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _now_is_when_the_test_starts() -> None:
    """NOW is read as each test starts (after conftest has waited out the end of a day), not when the module was
    collected, maybe the day before."""
    global NOW
    NOW = datetime.now(UTC)


def today():
    return london_day(NOW)


def days_later(days: int) -> datetime:
    return NOW + timedelta(days=days)


@pytest.fixture
def camden_upload(ingest_stack, rows_factory):
    """Uploads a file of ``count`` Camden babies as a trust and runs ingest; returns its rows."""
    uploaded = []

    def upload(count: int, trust: str = "RX1", seed: int = 1) -> list[dict]:
        rows = rows_factory(count, today(), districts={CAMDEN: 1}, seed=seed)
        for row in rows:
            row["notification_id"] = f"S{seed}{row['notification_id']}"
        name = f"camden-{len(uploaded)}.csv"
        ingest_stack.upload(trust, name, to_bytes(rows, name))
        ingest_stack.run()
        uploaded.append(name)
        return rows

    return upload


def test_a_digest_authority_gets_one_mail_for_the_day(notify_stack, camden_upload):
    rows = camden_upload(8, "RX1", seed=1) + camden_upload(5, "RX2", seed=2)
    notify_stack.run()
    assert notify_stack.to(CAMDEN_CONTACT) == []  # nothing per file

    assert notify_stack.schedule(now=NOW)["digests_sent"] == 0  # the day is not over
    assert notify_stack.schedule(now=days_later(1))["digests_sent"] == 1
    [digest] = notify_stack.to(CAMDEN_CONTACT)
    assert digest.subject == "Daily digest: 13 birth notifications waiting"
    assert f"digest for {today():%d %B %Y}" in digest.text
    assert (
        "From 2 files sent by Northgate Teaching Hospitals NHS Trust, Weald and Medway Maternity NHS Trust "
        "under sharing agreement CAMDEN-SFL-2026" in digest.text
    )
    assert "13 new" in digest.text and "0 amended" in digest.text and "consumer-guide" in digest.text
    assert find_personal(digest.everything, personal_values(rows)) == []
    assert notify_stack.schedule(now=days_later(1))["digests_sent"] == 0  # the next run does not repeat it
    assert notify_stack.schedule(now=days_later(2))["digests_sent"] == 0


def test_a_redelivered_event_is_counted_once(notify_stack, camden_upload):
    camden_upload(7)
    [body] = [json.dumps(event) for event in notify_stack.waiting_events()]
    notify_stack.run()
    notify_stack.run([body, body])
    notify_stack.schedule(now=days_later(1))
    [digest] = notify_stack.to(CAMDEN_CONTACT)
    assert digest.subject == "Daily digest: 7 birth notifications waiting" and "From 1 file sent" in digest.text


def test_an_event_arriving_after_its_day_was_sent_goes_in_the_next_digest(notify_stack, camden_upload):
    camden_upload(4, seed=1)
    notify_stack.run()
    assert notify_stack.schedule(now=days_later(1))["digests_sent"] == 1

    camden_upload(3, seed=2)  # processed "today", but today's digest is already sent
    notify_stack.run()
    assert notify_stack.schedule(now=days_later(1))["digests_sent"] == 0
    assert notify_stack.schedule(now=days_later(2))["digests_sent"] == 1
    first, second = notify_stack.to(CAMDEN_CONTACT)
    assert first.subject == "Daily digest: 4 birth notifications waiting"
    assert second.subject == "Daily digest: 3 birth notifications waiting"
    assert f"digest for {today() + timedelta(days=1):%d %B %Y}" in second.text


def test_a_failed_digest_fails_the_scheduled_run_and_the_next_run_sends_it_once(notify_stack, camden_upload):
    camden_upload(6)
    notify_stack.run()
    throttle = notify_stack.throttle_ses()
    with pytest.raises(Exception, match="Throttling"):  # Lambda retries, then its DLQ
        notify_stack.schedule(now=days_later(1))
    assert notify_stack.to(CAMDEN_CONTACT) == []
    assert '"digest not sent"' in "\n".join(notify_stack.logs)

    throttle.lifted = True
    assert notify_stack.schedule(now=days_later(2))["digests_sent"] == 1  # the next day's run catches up
    assert notify_stack.schedule(now=days_later(3))["digests_sent"] == 0
    [digest] = notify_stack.to(CAMDEN_CONTACT)
    assert digest.subject == "Daily digest: 6 birth notifications waiting"


def test_counts_taken_before_an_authority_left_the_digest_are_still_sent(
    notify_stack, ingest_stack, rows_factory, edit_registry
):
    leeds_principal = r'^(consumer_principals = \["arn:aws:iam::333333333333:role/leeds-birth-notifications"\])$'
    edit_registry((leeds_principal, r'\1\nnotification_mode = "digest"'))
    rows = rows_factory(9, today(), districts={LEEDS: 1}, seed=4)
    ingest_stack.upload("RX1", "leeds.csv", to_bytes(rows, "leeds.csv"))
    ingest_stack.run()
    notify_stack.run()
    assert notify_stack.to(LEEDS_CONTACT) == []  # Leeds takes a digest

    edit_registry()  # Leeds goes back to an email per file; a new container reads the registry
    notify_stack.reload()
    assert notify_stack.schedule(now=days_later(1))["digests_sent"] == 1
    [digest] = notify_stack.to(LEEDS_CONTACT)
    assert digest.subject == "Daily digest: 9 birth notifications waiting"
