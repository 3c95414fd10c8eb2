"""Real files through ingest, then the real notify handler: who is told what, and never personal data."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district, to_bytes
from ingest_support import REGISTRY_PATH, ROOT
from notify_support import (
    CONFIGURATION_SET,
    CONSUMER_GUIDE_URL,
    EMAIL_TEMPLATE,
    SENDER,
    TEMPLATE_ID,
    find_personal,
    personal_values,
)

REGISTRY = load_registry(REGISTRY_PATH)
LEEDS, KENT, CAMDEN, YORK, MAIDSTONE, MANCHESTER = (
    "E08000035",
    "E10000016",
    "E09000007",
    "E06000014",
    "E07000110",
    "E08000003",
)
OPERATORS = REGISTRY.operator_emails[0]
RX1_CONTACT = REGISTRY.trust("RX1").contact_emails[0]


def today():
    return london_day(datetime.now(UTC))


def contacts(gss: str) -> list[str]:
    return REGISTRY.authority(gss).contact_emails


def rich_rows(count: int = 150, seed: int = 21) -> list[dict[str, str]]:
    """A file with every outcome: forwarded NEW, AMEND and CANCEL rows to per-file and digest councils,
    rejected, withheld and held rows (lapsed agreement, a council without one, no fixed abode), every address
    line."""
    rows = list(
        SyntheticRows(
            load_postcodes_by_district(ROOT / "config" / "postcodes.csv"),
            today(),
            seed=seed,
            mix=Mix(
                invalid=0.08,
                withheld=0.08,
                held=0.08,
                amend_cancel=0.2,
                districts={LEEDS: 3, MAIDSTONE: 2, CAMDEN: 1, YORK: 1},
            ),
            held_districts=(MANCHESTER,),
        ).rows(count)
    )
    for index, row in enumerate(rows):
        row["address_line_2"] = f"Flat {index + 3} Quarry Mount House"
        row["address_line_3"] = "Hollinsworth"
        row["address_line_4"] = "Brackenbury Vale"
    return rows


def upload(ingest_stack, rows, trust="RX1", name="november.csv") -> dict:
    ingest_stack.upload(trust, name, to_bytes(rows, name))
    ingest_stack.run()
    return ingest_stack.report(trust, name)


def by_recipient(sent) -> dict[str, list]:
    found: dict[str, list] = {}
    for message in sent:
        for to in message.to:
            found.setdefault(to, []).append(message)
    return found


def test_each_party_is_told_what_it_needs_once(notify_stack, ingest_stack):
    report = upload(ingest_stack, rich_rows())
    outcome = report["outcome"]
    held_reasons = {h["reason"] for h in outcome["held_by_reason"]}
    assert {"NO_AGREEMENT", "PSEUDO_POSTCODE"} <= held_reasons  # the file exercises them all
    held_for = {h["authority_gss_code"] for h in outcome["held_by_reason"] if h["reason"] == "NO_AGREEMENT"}
    assert held_for == {YORK, MANCHESTER}  # York's agreement lapsed; Manchester is not in the registry
    assert outcome["rejected"] and outcome["withheld"]
    assert notify_stack.run() == [{"batchItemFailures": []}]
    mail = by_recipient(notify_stack.sent())
    reference = report["sha256"][:12]

    [receipt] = mail[RX1_CONTACT]
    assert receipt.subject == (
        f"File processed: november.csv: {outcome['forwarded']} forwarded, {outcome['rejected']} rejected"
    )
    assert (
        f"{outcome['rows_in']} rows received: {outcome['forwarded']} forwarded, {outcome['rejected']} rejected, "
        f"{outcome['withheld']} withheld, {outcome['held']} held for review."
    ) in receipt.text
    for counts in outcome["authorities"]:
        total = counts["new"] + counts["amend"] + counts["cancel"]
        assert f"{counts['name']}: {total} forwarded ({counts['new']} new, {counts['amend']} amended" in receipt.text
    for code, count in outcome["rejected_by_code"].items():
        assert f"{code}: {count}" in receipt.text
    assert report["rejected_rows_key"].startswith("reports/RX1/november.csv/")
    assert f"s3://test-reports/{report['rejected_rows_key']}" in receipt.text
    assert f"s3://test-reports/{report['report_key']}" in receipt.text

    forwarded = {counts["gss_code"]: counts for counts in outcome["authorities"]}
    assert {LEEDS, KENT, CAMDEN} <= set(forwarded)
    for gss in (LEEDS, KENT):  # per-file councils: one email to each contact address
        counts = forwarded[gss]
        assert counts["amend"] + counts["cancel"] > 0 or gss == KENT
        for address in contacts(gss):
            [waiting] = mail[address]
            total = counts["new"] + counts["amend"] + counts["cancel"]
            assert waiting.subject == f"{total} birth notifications waiting from {report['trust_name']}"
            assert f"{counts['new']} new" in waiting.text and f"{counts['amend']} amended" in waiting.text
            assert f"{counts['cancel']} cancelled" in waiting.text
            assert f"reference {reference}" in waiting.text and counts["agreement_id"] in waiting.text
            assert "(RX1)" in waiting.text and CONSUMER_GUIDE_URL in waiting.text
            assert f'<a href="{CONSUMER_GUIDE_URL}">' in waiting.html
    assert not any(address in mail for address in contacts(CAMDEN))  # Camden takes a daily digest

    [lapsed] = mail[contacts(YORK)[0]]  # York's agreement lapsed: York is told its records are held
    york = next(h for h in outcome["held_by_reason"] if h["authority_gss_code"] == YORK)
    assert lapsed.subject == "Birth notifications held: no sharing agreement in force"
    assert f"{york['count']} birth notifications for City of York Council held" in lapsed.text
    [operators] = mail[OPERATORS]
    assert operators.subject == f"{outcome['held']} birth notifications held from {report['trust_name']}"
    for held in outcome["held_by_reason"]:
        assert f"{held['count']}: " in operators.text
    assert "pseudo-postcode" in operators.text and "(City of York Council)" in operators.text
    assert "(Manchester City Council)" in operators.text  # whom to approach for an agreement
    assert len(notify_stack.sent()) == 1 + len(contacts(LEEDS)) + len(contacts(KENT)) + 1 + 1


def test_no_email_and_no_log_line_carries_personal_data(notify_stack, ingest_stack):
    rows = rich_rows(seed=5)
    upload(ingest_stack, rows, name="births-week-48.csv")
    notify_stack.run()
    personal = personal_values(rows)
    sent = notify_stack.sent()
    assert len(sent) >= 6 and len(personal) > 1000
    # The scan finds what it looks for (in any case, with or without a postcode's space).
    probe = f"Dear {rows[3]['mother_given_name'].upper()}, {rows[3]['postcode'].replace(' ', '').lower()}"
    assert len(find_personal(probe, personal)) == 2

    for message in sent:
        assert find_personal(message.everything, personal) == [], message.subject
        if message.to != [RX1_CONTACT]:  # a trust may name a file after a patient: only the trust sees its name
            assert "births-week-48" not in message.everything
    logs = "\n".join(notify_stack.logs)
    assert '"email sent"' in logs  # the logs were captured
    assert find_personal(logs, personal) == [] and "births-week-48" not in logs


def test_ses_mails_have_text_and_escaped_html_parts_and_use_the_tls_configuration_set(
    notify_stack, ingest_stack, rows_factory, edit_registry
):
    edit_registry(
        (
            r'^name = "Northgate Teaching Hospitals NHS Trust"$',
            'name = "Northgate & <Moor> Teaching Hospitals NHS Trust"',
        )
    )
    upload(ingest_stack, rows_factory(10, today(), districts={LEEDS: 1}, seed=4), name="small.csv")
    notify_stack.run()

    [waiting] = notify_stack.to(contacts(LEEDS)[0])
    assert "Northgate & <Moor> Teaching Hospitals" in waiting.text  # plain text: as written
    assert "Northgate &amp; &lt;Moor&gt; Teaching Hospitals" in waiting.html and "<Moor>" not in waiting.html
    assert waiting.html.startswith("<!DOCTYPE html>") and "<li>10 new</li>" in waiting.html
    [request] = notify_stack.ses_requests  # the file's two emails in one bulk request
    assert len(notify_stack.sent()) == len(request["Destinations"]) == 2
    assert request["ConfigurationSetName"] == CONFIGURATION_SET and request["Source"] == SENDER
    assert request["Template"] == EMAIL_TEMPLATE
    for destination in request["Destinations"]:
        assert len(destination["Destination"]["ToAddresses"]) == 1
        assert [tag["Name"] for tag in destination["ReplacementTags"]] == ["kind"]
    tls = boto3.client("sesv2").get_configuration_set(ConfigurationSetName=CONFIGURATION_SET)["DeliveryOptions"]
    assert tls["TlsPolicy"] == "REQUIRE"


def test_a_retried_event_never_mails_anyone_twice(notify_stack, ingest_stack):
    upload(ingest_stack, rich_rows(60))
    [body] = [json.dumps(event) for event in notify_stack.waiting_events()]
    notify_stack.run()
    first = len(notify_stack.sent())
    assert notify_stack.run([body, body]) == [{"batchItemFailures": []}]  # SQS delivers the event again, twice
    assert len(notify_stack.sent()) == first > 0
    notify_stack.reload()  # a new container: idempotency is in DynamoDB, not in memory
    notify_stack.run([body])
    assert len(notify_stack.sent()) == first


def test_a_rejected_file_tells_the_trust_why_in_plain_words(notify_stack, ingest_stack):
    ingest_stack.upload("RX1", "broken.csv", b"notification_id,postcode\nN1,LS1 4AP\n")
    ingest_stack.run()
    notify_stack.run()
    [receipt] = notify_stack.sent()
    assert receipt.to == [RX1_CONTACT] and receipt.subject == "File not accepted: broken.csv"
    assert "Nothing in it was forwarded" in receipt.text and "FILE_MISSING_COLUMNS" in receipt.text
    assert "baby_nhs_number" in receipt.text  # the missing column is named
    assert f"s3://test-reports/{ingest_stack.report('RX1', 'broken.csv')['report_key']}" in receipt.text


def test_a_file_in_a_subfolder_is_refused_and_its_trust_told(notify_stack, ingest_stack, rows_factory):
    ingest_stack.s3.put_object(
        Bucket="test-inbound",
        Key="inbound/RX1/2026/nov.csv",
        Body=to_bytes(rows_factory(3, today(), seed=8), "nov.csv"),
    )
    ingest_stack.run()
    notify_stack.run()
    [receipt] = notify_stack.sent()
    assert receipt.to == [RX1_CONTACT] and receipt.subject == "File not accepted: nov.csv"
    assert "FILE_BAD_LOCATION" in receipt.text and "inbound/<your trust's ODS code>/<file name>" in receipt.text


def test_a_file_from_an_unregistered_folder_reaches_the_operators_without_its_name(
    notify_stack, ingest_stack, rows_factory
):
    rows = rows_factory(3, today(), seed=9)
    ingest_stack.upload("RZZ", "jane-doe-9990000018.csv", to_bytes(rows, "x.csv"))
    ingest_stack.run()
    notify_stack.run()
    [alert] = notify_stack.sent()
    assert alert.to == [OPERATORS]
    assert alert.subject == "A file from an unregistered location was not accepted"
    assert "inbound/RZZ/" in alert.text and "FILE_UNKNOWN_TRUST" in alert.text
    assert "s3://test-reports/reports/RZZ/" in alert.text
    assert "jane-doe" not in alert.everything and "9990000018" not in alert.everything


def test_govuk_notify_sends_the_same_emails_through_its_api(notify_via_govuk_notify, ingest_stack):
    stack = notify_via_govuk_notify
    rows = rich_rows(80, seed=13)
    upload(ingest_stack, rows)
    assert stack.run() == [{"batchItemFailures": []}]

    fake = stack.fake_notify
    assert fake.refused == []  # every request carried a valid token and body
    recipients = sorted(e["email_address"] for e in fake.emails)
    assert recipients == sorted([RX1_CONTACT, *contacts(LEEDS), *contacts(KENT), *contacts(YORK), OPERATORS])
    assert all(e["template_id"] == TEMPLATE_ID for e in fake.emails)
    assert len({e["reference"] for e in fake.emails}) == len(fake.emails)  # one reference per email
    [receipt] = stack.to(RX1_CONTACT)
    assert receipt.subject.startswith("File processed: november.csv") and "rows received" in receipt.text
    personal = personal_values(rows)
    for message in fake.emails:
        assert find_personal(json.dumps(message), personal) == []


def test_the_trusts_receipt_counts_warnings_by_code_without_personal_data(notify_stack, ingest_stack, rows_factory):
    rows = rows_factory(5, today(), districts={LEEDS: 1}, seed=61)
    rows[1]["mother_nhs_number"] = "1112223330"  # fails modulus 11: left out, the row forwarded
    rows[3]["gp_practice_code"] = "B8605"
    report = upload(ingest_stack, rows, name="warned.csv")
    assert report["outcome"]["forwarded"] == 5 and report["outcome"]["rows_with_warnings"] == 2
    assert notify_stack.run() == [{"batchItemFailures": []}]

    [receipt] = by_recipient(notify_stack.sent())[RX1_CONTACT]
    assert "2 rows were forwarded or counted without an optional field that was invalid" in receipt.text
    assert "NHS_NUMBER_CHECKSUM: 1" in receipt.text and "ODS_CODE_INVALID: 1" in receipt.text
    assert '"warnings"' in receipt.text and report["report_key"] in receipt.text
    assert find_personal(receipt.everything, personal_values(rows) | {"1112223330", "B8605"}) == []
