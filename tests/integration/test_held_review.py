"""The held reviewers' commands on moto (``birthnotify held list|release|discard|actions``): a record held for
NO_AGREEMENT reaches its council exactly once when released after the registry gains an agreement, a
discarded one never does, and the store keeps held records whatever SQS's 14-day retention."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import boto3
from birthnotify.adapters.held import DynamoHeldStore
from birthnotify.application.held import HeldReview, Selection
from birthnotify.domain.messages import HeldActionEvent, HeldReason, notifier_event
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.consume import consume
from birthnotify_cli.main import EXIT_OK, EXIT_USAGE, main
from birthnotify_cli.synthetic import load_postcodes_by_district, to_bytes
from ingest_support import HELD_TABLE, REGISTRY_PATH, STAGE

LEEDS, YORK = "E08000035", "E06000014"
YORK_POSTCODES = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")[YORK]
SQS_RETENTION = timedelta(days=14)


def today():
    return london_day(datetime.now(UTC))


def upload_with_york(ingest_stack, rows_factory, name: str, count: int, seed: int) -> set[int]:
    """Leeds rows, every third moved to York (whose agreement has lapsed: held NO_AGREEMENT); returns York's
    row numbers."""
    rows = rows_factory(count, today(), districts={LEEDS: 1}, seed=seed)
    york = set()
    for index in range(0, count, 3):
        rows[index]["postcode"], rows[index]["residence_la_code"] = YORK_POSTCODES[index % len(YORK_POSTCODES)], ""
        york.add(index + 1)
    ingest_stack.upload("RX1", name, to_bytes(rows, name))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    assert ingest_stack.report("RX1", name)["outcome"]["held"] == len(york)
    ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])
    ingest_stack.drain(ingest_stack.events_queue_url)
    return york


def registry_with_york_agreement(directory: Path) -> Path:
    """A copy of the registry (with its councils data and postcode directory) in which York has signed a new
    agreement, in force from today."""
    source = REGISTRY_PATH.parent
    for name in ("authorities-england-wales.csv", "postcodes.csv"):
        shutil.copy(source / name, directory / name)
    lapsed = (
        'valid_to = 2026-06-30\nallowed_fields = ["baby_date_of_birth", "mother_given_name", '
        '"mother_family_name", "address_line_1", "postcode"]\n'
    )
    text = (source / "registry.toml").read_text(encoding="utf-8")
    assert text.count(lapsed) == 1
    renewed = (
        f'[[authorities.agreements]]\nid = "YORK-HCS-RENEWED"\npurpose = "Healthy Child Service: universal '
        f'new-birth contact."\nvalid_from = {today() - timedelta(days=1)}\nvalid_to = '
        f'{today() + timedelta(days=365)}\nallowed_fields = ["baby_date_of_birth", "postcode"]\n'
    )
    path = directory / "registry.toml"
    path.write_text(text.replace(lapsed, lapsed + renewed), encoding="utf-8")
    assert load_registry(path).authority(YORK).agreement_on(today()).id == "YORK-HCS-RENEWED"
    return path


def held_command(*args: str) -> int:
    return main(["held", *args, "--stage", STAGE.stage])


def consumed(ingest_stack, gss: str, output: Path) -> list[dict]:
    consume(boto3.client("sqs"), ingest_stack.authority_queue_urls[gss], output, "jsonl", wait_seconds=0)
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]


def file_events(ingest_stack) -> list[HeldActionEvent]:
    return [
        event
        for event in (
            notifier_event(json.dumps({k: v for k, v in body.items() if k != "_attributes"}))
            for body in ingest_stack.drain(ingest_stack.events_queue_url)
        )
        if isinstance(event, HeldActionEvent)
    ]


def test_a_record_held_for_no_agreement_reaches_the_council_once_after_an_agreement_is_signed(
    ingest_stack, rows_factory, tmp_path, capsys
):
    york = upload_with_york(ingest_stack, rows_factory, "york.csv", 30, seed=61)

    assert held_command("list") == EXIT_OK
    listing = capsys.readouterr().out
    assert f"{len(york)} held records waiting in {HELD_TABLE}" in listing
    assert f"{len(york)}  NO_AGREEMENT City of York Council ({YORK})" in listing
    held = ingest_stack.held()
    assert not any(str(h.message.record["postcode"]) in listing for h in held)  # counts only, unless --show
    assert held_command("list", "--show") == EXIT_OK
    shown = capsys.readouterr().out
    assert all(
        str(h.message.record["postcode"]) in shown and h.message.record["notification_id"] in shown for h in held
    )
    assert "mother" not in shown and not any(str(h.message.record.get("mother_family_name")) in shown for h in held)

    # With the registry still as deployed, releasing changes nothing: York has no agreement in force.
    assert held_command("release") == EXIT_OK
    assert "0 records were released" in capsys.readouterr().out
    assert len(ingest_stack.held()) == len(york)
    assert ingest_stack.drain(ingest_stack.authority_queue_urls[YORK]) == []

    renewed = registry_with_york_agreement(tmp_path)
    assert held_command("release", "--registry", str(renewed), "--dry-run") == EXIT_OK
    assert f"{len(york)} records would be released" in capsys.readouterr().out
    assert len(ingest_stack.held()) == len(york)

    assert held_command("release", "--registry", str(renewed), "--authority", YORK) == EXIT_OK
    out = capsys.readouterr().out
    assert f"{len(york)} records were released" in out and "under agreement YORK-HCS-RENEWED" in out
    assert ingest_stack.held() == []
    # Released again, nothing more goes: each record reached York once.
    assert held_command("release", "--registry", str(renewed)) == EXIT_OK
    assert "0 records were released" in capsys.readouterr().out

    messages = consumed(ingest_stack, YORK, tmp_path / "york.jsonl")
    assert sorted(m["source"]["row"] for m in messages) == sorted(york)
    assert {m["agreement_id"] for m in messages} == {"YORK-HCS-RENEWED"}
    assert all("mother_family_name" not in m["record"] for m in messages)  # the new agreement's fields only

    # The trust and operators hear of it (counts only); the action is recorded: who, what, why, which rows.
    [event] = file_events(ingest_stack)
    assert (event.action, event.released_total, event.discarded, event.still_held) == ("release", len(york), 0, 0)
    assert [(c.gss_code, c.agreement_id) for c in event.released] == [(YORK, "YORK-HCS-RENEWED")]
    assert held_command("actions") == EXIT_OK
    history = capsys.readouterr().out
    assert f"{len(york)} released" in history and "by arn:aws:" in history
    assert history.count(f" released to {YORK} (YORK-HCS-RENEWED)") == len(york)


def test_a_released_record_goes_with_the_message_and_deduplication_id_of_a_first_send(
    ingest_stack, rows_factory, tmp_path
):
    upload_with_york(ingest_stack, rows_factory, "dedup.csv", 9, seed=62)
    assert held_command("release", "--registry", str(registry_with_york_agreement(tmp_path))) == EXIT_OK
    received = ingest_stack.sqs.receive_message(
        QueueUrl=ingest_stack.authority_queue_urls[YORK], MaxNumberOfMessages=10, AttributeNames=["All"]
    )["Messages"]
    assert len(received) == 3
    for message in received:
        body = json.loads(message["Body"])
        assert message["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(message["Body"].encode()).hexdigest()
        assert message["Attributes"]["MessageGroupId"] == f"RX1:{body['notification_id']}"


def test_a_discarded_record_never_reaches_the_council(ingest_stack, rows_factory, tmp_path, capsys):
    york = upload_with_york(ingest_stack, rows_factory, "discard.csv", 30, seed=63)
    discarded_rows = sorted(york)[:4]

    assert held_command("discard", "--reason", "short") == EXIT_USAGE  # which records, and a real reason
    assert held_command("discard", "--file", "discard.csv", "--reason", "x") == EXIT_USAGE
    capsys.readouterr()
    assert (
        held_command(
            "discard",
            "--file",
            "discard.csv",
            *(f"--row={r}" for r in discarded_rows),
            "--reason",
            "the family moved to Scotland before the birth",
        )
        == EXIT_OK
    )
    assert "4 records were discarded" in capsys.readouterr().out
    assert sorted(h.key.row for h in ingest_stack.held()) == sorted(york - set(discarded_rows))

    assert held_command("release", "--registry", str(registry_with_york_agreement(tmp_path))) == EXIT_OK
    messages = consumed(ingest_stack, YORK, tmp_path / "york.jsonl")
    assert sorted(m["source"]["row"] for m in messages) == sorted(york - set(discarded_rows))
    events = file_events(ingest_stack)
    assert [(e.action, e.discarded, e.still_held) for e in events] == [("discard", 4, len(york) - 4), ("release", 0, 0)]
    assert held_command("actions") == EXIT_OK
    history = capsys.readouterr().out
    assert "discard by arn:aws:" in history and "why: the family moved to Scotland before the birth" in history
    assert all(f"row {row} " in history for row in discarded_rows)


def test_a_held_record_older_than_14_days_is_still_there_and_can_be_released(
    ingest_stack, rows_factory, tmp_path, sqs_clock
):
    york = upload_with_york(ingest_stack, rows_factory, "old.csv", 12, seed=64)
    canary = ingest_stack.authority_queue_urls[LEEDS]
    ingest_stack.sqs.send_message(QueueUrl=canary, MessageBody="{}", MessageGroupId="g", MessageDeduplicationId="d")

    sqs_clock.advance((SQS_RETENTION + timedelta(days=1)).total_seconds())
    assert ingest_stack.sqs.receive_message(QueueUrl=canary).get("Messages", []) == []  # SQS has forgotten it

    later = datetime.now(UTC) + SQS_RETENTION + timedelta(days=1)
    renewed = registry_with_york_agreement(tmp_path)
    registry = load_registry(renewed)
    review = HeldReview(
        store=DynamoHeldStore(boto3.client("dynamodb"), HELD_TABLE),
        registry=registry,
        actor="arn:aws:iam::123456789012:role/reviewer",
        clock=lambda: later,
        postcodes=PostcodeDirectory.load(tmp_path / "postcodes.csv", registry.postcode_directory),
        sender=_sender(),
        queues=_queues(),
    )
    overview = review.overview()
    assert overview.total == len(york) and overview.oldest is not None and overview.oldest > SQS_RETENTION
    assert overview.by_age == {"14-30 days": len(york)}
    assert overview.by_reason == {(HeldReason.NO_AGREEMENT, f"City of York Council ({YORK})"): len(york)}

    outcome = review.release(Selection(reasons=(HeldReason.NO_AGREEMENT,)), "agreement renewed")
    assert outcome.released_total == len(york)
    assert sorted(m["source"]["row"] for m in consumed(ingest_stack, YORK, tmp_path / "y.jsonl")) == sorted(york)


def test_an_open_record_never_expires_and_one_acted_on_expires_the_retention_after_the_action(
    ingest_stack, rows_factory, tmp_path
):
    york = upload_with_york(ingest_stack, rows_factory, "ttl.csv", 30, seed=65)
    discarded_row, *_ = sorted(york)
    dynamodb = boto3.client("dynamodb")

    def items() -> dict[int, dict]:
        found = [
            item
            for page in dynamodb.get_paginator("scan").paginate(TableName=HELD_TABLE)
            for item in page["Items"]
            if item["kind"]["S"] == "record"
        ]
        return {int(item["row"]["N"]): item for item in found}

    assert york and all("expiration" not in item for item in items().values())  # open: kept until someone acts
    assert (
        held_command(
            "discard",
            "--file",
            "ttl.csv",
            f"--row={discarded_row}",
            "--reason",
            "the family asked that nothing be shared",
        )
        == EXIT_OK
    )
    closed = items()[discarded_row]
    acted_at = datetime.fromisoformat(closed["acted_at"]["S"])
    retention = timedelta(days=int(closed["retention_days"]["N"]))
    assert int(closed["expiration"]["N"]) == int((acted_at + retention).timestamp())
    assert "body" not in closed
    assert all("expiration" not in item for row, item in items().items() if row != discarded_row)


def _sender():
    from birthnotify.adapters.sqs import BatchSender

    sqs = boto3.client("sqs")
    return lambda on_accepted: BatchSender(sqs, on_accepted)


def _queues():
    from birthnotify.adapters.sqs import SqsQueues

    return SqsQueues(boto3.client("sqs"), STAGE.authority_queue_prefix)


def test_the_trust_operators_and_council_are_told_of_a_release_in_counts_only(
    notify_stack, ingest_stack, rows_factory, tmp_path
):
    from notify_support import find_personal, personal_values

    rows = rows_factory(12, today(), districts={LEEDS: 1}, seed=65)
    for index in range(0, 12, 3):
        rows[index]["postcode"], rows[index]["residence_la_code"] = YORK_POSTCODES[index], ""
    ingest_stack.upload("RX1", "told.csv", to_bytes(rows, "told.csv"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    assert notify_stack.run()[-1] == {"batchItemFailures": []}
    before = len(notify_stack.sent())

    assert held_command("release", "--registry", str(registry_with_york_agreement(tmp_path))) == EXIT_OK
    assert notify_stack.run() == [{"batchItemFailures": []}]
    emails = notify_stack.sent()[before:]
    registry = load_registry(REGISTRY_PATH)
    by_subject = {email.subject: email for email in emails}
    trust = by_subject["Held records released: told.csv"]
    assert trust.to == registry.trust("RX1").contact_emails
    assert "released to City of York Council under sharing agreement YORK-HCS-RENEWED: 4 (4 new" in trust.text
    assert "No record of this file is held any more." in trust.text
    assert any(e.to == registry.operator_emails and "4 birth notifications released" in e.subject for e in emails)
    york = [e for e in emails if e.to == registry.authority(YORK).contact_emails]
    assert len(york) == 1 and "birthnotify consume" in york[0].text
    for email in emails:
        assert find_personal(email.subject + email.text + email.html, personal_values(rows)) == []
    assert notify_stack.run() == []  # one event per file and action: told once


def test_operators_are_reminded_once_a_day_of_held_records_waiting_too_long(notify_stack, ingest_stack, rows_factory):
    from notify_support import find_personal, personal_values

    rows = rows_factory(12, today(), districts={LEEDS: 1}, seed=66)
    for index in range(0, 12, 3):
        rows[index]["postcode"], rows[index]["residence_la_code"] = YORK_POSTCODES[index], ""
    ingest_stack.upload("RX1", "waiting.csv", to_bytes(rows, "waiting.csv"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    assert notify_stack.run()[-1] == {"batchItemFailures": []}
    operators = load_registry(REGISTRY_PATH).operator_emails

    def reminders():
        return [e for e in notify_stack.sent() if e.to == operators and e.subject.startswith("Held records waiting")]

    now = datetime.now(UTC)
    assert notify_stack.schedule(now=now + timedelta(hours=47))["held_reminders_sent"] == 0  # within 48 hours
    assert notify_stack.schedule(now=now + timedelta(days=3))["held_reminders_sent"] == 1
    [reminder] = reminders()
    assert reminder.subject == "Held records waiting: 4 for over 2 days"
    assert "birthnotify held list --stage test" in reminder.text and "the oldest for 3 days" in reminder.text
    assert find_personal(reminder.subject + reminder.text + reminder.html, personal_values(rows)) == []
    # Later the same London day (2 hours later, or halfway to midnight when the suite runs late in the day).
    at = (now + timedelta(days=3)).astimezone(ZoneInfo("Europe/London"))
    midnight = (at + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    later_that_day = at + min(timedelta(hours=2), (midnight - at) / 2)
    assert notify_stack.schedule(now=later_that_day.astimezone(UTC))["held_reminders_sent"] == 0  # once a day
    assert notify_stack.schedule(now=now + timedelta(days=4))["held_reminders_sent"] == 1  # and daily after
