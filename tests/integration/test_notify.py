"""Real files through ingest, then the real notify handler: who is told what, and never personal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from birthnotify.ingest import london_day
from birthnotify.registry import load_registry
from birthnotify_cli.synthetic import to_bytes
from ingest_support import REGISTRY_PATH

REGISTRY = load_registry(REGISTRY_PATH)
LEEDS, KENT, CAMDEN, YORK, MAIDSTONE = "E08000035", "E10000016", "E09000007", "E06000014", "E07000110"
PERSONAL_FIELDS = ("baby_nhs_number", "mother_nhs_number", "mother_given_name", "mother_family_name",
                   "address_line_1", "address_line_2", "postcode", "baby_date_of_birth", "mother_date_of_birth")


def today():
    return london_day(datetime.now(UTC))


def contacts(gss: str) -> list[str]:
    return REGISTRY.authority(gss).contact_emails


def personal_values(rows) -> set[str]:
    values = set()
    for row in rows:
        for name in PERSONAL_FIELDS:
            value = row.get(name, "").strip()
            if value:
                values |= {value, value.replace(" ", "")}
                if name.endswith("date_of_birth"):
                    year, month, day = value.split("-")
                    values |= {f"{day}/{month}/{year}", datetime.fromisoformat(value).strftime("%d %B %Y")}
    return values


def mixed_upload(ingest_stack, rows_factory):
    rows = rows_factory(60, today(), districts={LEEDS: 2, MAIDSTONE: 2, CAMDEN: 1, YORK: 1}, seed=21)
    rows[0]["postcode"] = "ZZ99 3VZ"  # no fixed abode: held for a person
    rows[0]["residence_la_code"] = ""
    rows[1]["baby_sex"] = "F"  # rejected
    rows[2]["live_birth"] = "N"  # withheld
    ingest_stack.upload("RX1", "november.csv", to_bytes(rows, "x.csv"))
    ingest_stack.run()
    return rows


def test_each_party_gets_its_email_and_none_carries_personal_data(notify_stack, ingest_stack, rows_factory):
    rows = mixed_upload(ingest_stack, rows_factory)
    assert notify_stack.run() == [{"batchItemFailures": []}]

    sent = notify_stack.sent()
    by_recipient = {}
    for message in sent:
        for to in message.to:
            by_recipient.setdefault(to, []).append(message)
    trust = REGISTRY.trust("RX1").contact_emails[0]
    [receipt] = by_recipient[trust]
    assert receipt.subject.startswith("File processed: november.csv")
    assert "60 rows received" in receipt.text and "SEX_CODE_INVALID: 1" in receipt.text
    assert "reports/RX1/november.csv.rejected.csv" in receipt.text
    [leeds] = by_recipient[contacts(LEEDS)[0]]
    assert "waiting" in leeds.subject and "LEEDS-BN-2026" in leeds.text and "consumer-guide" in leeds.text
    assert all(len(by_recipient[address]) == 1 for address in contacts(KENT))  # each Kent address, once
    assert not any(address in by_recipient for address in contacts(CAMDEN))  # Camden takes a daily digest
    [lapsed] = by_recipient[contacts(YORK)[0]]
    assert "no sharing agreement in force" in lapsed.subject
    [operators] = by_recipient[REGISTRY.operator_emails[0]]
    assert "pseudo-postcode" in operators.text and "City of York" in operators.text
    assert "<html" in receipt.html and "60 rows received" in receipt.html

    personal = personal_values(rows)
    for message in sent:
        for value in personal:
            assert value not in message.everything, f"{message.subject!r} carries personal data"
        assert "november.csv" not in message.everything or message.to == [trust]  # file names only to the trust


def test_a_retried_event_never_mails_anyone_twice(notify_stack, ingest_stack, rows_factory):
    mixed_upload(ingest_stack, rows_factory)
    [body] = [m["Body"] for m in ingest_stack.sqs.receive_message(
        QueueUrl=ingest_stack.events_queue_url, VisibilityTimeout=0)["Messages"]]
    notify_stack.run()
    first = len(notify_stack.sent())
    notify_stack.run([body, body])  # SQS delivers the same event again, twice
    assert len(notify_stack.sent()) == first > 0


def test_a_rejected_file_tells_the_trust_why_in_plain_words(notify_stack, ingest_stack):
    ingest_stack.upload("RX1", "broken.csv", b"notification_id,postcode\nN1,LS1 4AP\n")
    ingest_stack.run()
    notify_stack.run()
    [receipt] = notify_stack.sent()
    assert receipt.subject == "File not accepted: broken.csv"
    assert "Nothing in it was forwarded" in receipt.text and "FILE_MISSING_COLUMNS" in receipt.text
    assert "baby_nhs_number" in receipt.text  # the missing column is named


def test_a_digest_authority_gets_one_mail_for_the_day(notify_stack, ingest_stack, rows_factory):
    first = rows_factory(8, today(), districts={CAMDEN: 1}, seed=1)
    second = rows_factory(5, today(), districts={CAMDEN: 1}, seed=2)
    for row in second:
        row["notification_id"] = "S" + row["notification_id"]
    ingest_stack.upload("RX1", "a.csv", to_bytes(first, "a.csv"))
    ingest_stack.upload("RX2", "b.csv", to_bytes(second, "b.csv"))
    ingest_stack.run()
    notify_stack.run()
    assert not [m for m in notify_stack.sent() if contacts(CAMDEN)[0] in m.to]

    service = notify_stack.handler.service()
    service._clock = lambda: datetime.now(UTC) + timedelta(days=1)
    assert notify_stack.schedule() == {"digests_sent": 1}
    [digest] = [m for m in notify_stack.sent() if contacts(CAMDEN)[0] in m.to]
    assert digest.subject == "Daily digest: 13 birth notifications waiting"
    assert "From 2 files" in digest.text and "13 new" in digest.text
    assert notify_stack.schedule() == {"digests_sent": 0}  # the next run does not repeat it


def test_govuk_notify_transport_and_a_failed_send_is_retried_not_lost(notify_via_govuk_notify, ingest_stack,
                                                                        rows_factory):
    stack = notify_via_govuk_notify
    rows = rows_factory(6, today(), districts={MAIDSTONE: 1}, seed=3)
    ingest_stack.upload("RX2", "kent.csv", to_bytes(rows, "kent.csv"))
    ingest_stack.run()
    stack.fake_notify.fail_next = 1  # the first email fails (Notify returns 500)

    [first] = stack.run()
    assert len(first["batchItemFailures"]) == 1  # the event stays on the queue for a retry
    mailed_before_retry = len(stack.sent())
    [retry] = stack.run()
    assert retry == {"batchItemFailures": []}

    recipients = sorted(to for message in stack.sent() for to in message.to)
    expected = sorted([*REGISTRY.trust("RX2").contact_emails, *contacts(KENT)])
    assert recipients == expected  # everyone exactly once, despite the failure and the retry
    assert mailed_before_retry == len(expected) - 1
    assert all(e["template_id"] for e in stack.fake_notify.emails)
    for message in stack.sent():
        assert not any(value in message.everything for value in personal_values(rows))
