"""A file stopped part-way (the function's time running out) resumes from its snapshot: the next attempt restores
the tallies, row errors and warnings, seen ids, destination-index additions and unknown columns, and skips the
rows before the checkpoint unparsed. Whatever the stopping point, the report, the messages on every queue, the
held store and the ledger must be exactly those of an uninterrupted run; and when the snapshot is missing or
does not match the checkpoint, the retry replays the earlier rows and comes to the same.

Each comparison runs the file twice, each in a fresh moto world: once uninterrupted, once stopped and resumed an
hour later (past SQS's deduplication window, so a record sent twice would show)."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from birthnotify.adapters.ledger import S3Ledger, S3Snapshots
from birthnotify.application import ingest, pipeline
from birthnotify.application.resume import ResumeSnapshot
from birthnotify.domain.reader import scan_file
from birthnotify.domain.seen import SeenIds
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district
from ingest_support import (
    LEDGER,
    REGISTRY_PATH,
    STATE_TABLE,
    CrashesAfter,
    IngestStack,
    RunsOutOfTime,
    fresh_ingest_stack,
)

AN_HOUR = 3600
LEEDS, MAIDSTONE, YORK = "E08000035", "E07000110", "E06000014"
ROWS = 260
STOP_CHECK_EVERY_ROWS = 20
"""A stop check every 20 rows rather than 200 (the pipeline's constant is patched), so a small file has many
stopping points; the file stays short of a periodic checkpoint (every 5,000 rows)."""


@pytest.fixture(autouse=True)
def frequent_stop_checks(monkeypatch):
    monkeypatch.setattr(pipeline, "STOP_CHECK_EVERY_ROWS", STOP_CHECK_EVERY_ROWS)


@pytest.fixture(autouse=True)
def first_passes(monkeypatch) -> list[str]:
    """The files the first pass parsed (a resumed file with a snapshot is only hashed)."""
    parsed: list[str] = []

    def counted(open_stream, kind, max_bytes):
        parsed.append(kind.suffix)
        return scan_file(open_stream, kind, max_bytes)

    monkeypatch.setattr(ingest, "scan_file", counted)
    return parsed


def today():
    return london_day(datetime.now(UTC))


def awkward_rows(seed: int) -> list[dict[str, str]]:
    """Every kind of row the state carries: rejected (duplicate ids within the file among them), withheld,
    held, AMEND and CANCEL of earlier rows (chains that cross any stopping point), families that move council,
    and accepted rows with warnings (an optional field left out)."""
    postcodes = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
    mix = Mix(invalid=0.05, withheld=0.03, held=0.03, amend_cancel=0.12, districts={LEEDS: 1, MAIDSTONE: 1})
    rows = list(SyntheticRows(postcodes, today(), seed=seed, mix=mix).rows(ROWS))
    york = postcodes[YORK]
    for index in range(11, ROWS, 23):  # held: a council without an agreement in force
        if rows[index]["notification_type"] == "NEW":
            rows[index]["postcode"], rows[index]["residence_la_code"] = york[0], ""
    for index in range(5, ROWS, 19):  # accepted with a warning: the optional field is left out
        rows[index]["gp_practice_code"] = "not a practice"
    for index in range(150, ROWS, 40):  # a notification id used again far after its first use
        rows[index]["notification_id"] = rows[index - 140]["notification_id"]
    return rows


def csv_with_unknown_column(rows: list[dict[str, str]]) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[*rows[0], "ward_note"], lineterminator="\r\n")
    writer.writeheader()
    for index, row in enumerate(rows):
        writer.writerow({**row, "ward_note": "x" if index % 3 else ""})
    # A blank line now and then is not a record, but it is a line the resumed reader must skip.
    return text.getvalue().replace("\r\n", "\r\n\r\n", 30).encode()


def jsonl_with_unknown_keys(rows: list[dict[str, str]]) -> bytes:
    lines = []
    for index, row in enumerate(rows):
        values = {key: value for key, value in row.items() if value}
        if index % 4 == 0:
            values["ward_note"] = "seen"
        if index % 37 == 0:
            values[f"once_{index}"] = "1"  # a key of one line only: counted, not listed
        if index in (30, ROWS - 5):
            values["twice"] = "1"  # unlisted until its second line, which comes after any stopping point
        lines.append(json.dumps(values))
        if index % 13 == 0:
            lines.append("")
    return ("\n".join(lines) + "\n").encode()


def file_body(name: str, rows: list[dict[str, str]]) -> bytes:
    body = jsonl_with_unknown_keys(rows) if ".jsonl" in name else csv_with_unknown_column(rows)
    return gzip.compress(body, mtime=0) if name.endswith(".gz") else body


def everything(stack: IngestStack, name: str) -> dict[str, Any]:
    """What users see of one file, without what differs between two worlds (times, version ids, HMAC keys)."""
    report = stack.report("RX1", name)
    for volatile in ("processed_at", "report_key", "rejected_rows_key"):
        report.pop(volatile)
    groups: dict[str, list[str]] = defaultdict(list)
    for queue, url in sorted(stack.authority_queue_urls.items()):
        for body in stack.drain(url):
            attributes = body.pop("_attributes")
            groups[f"{queue} {attributes['MessageGroupId']}"].append(json.dumps(body, sort_keys=True))
    ledger = sorted(
        json.dumps(
            {k: v for k, v in json.loads(line).items() if k not in ("recorded_at", "entry_id")}
            | {"baby_nhs_hash": "", "mother_nhs_hash": ""},
            sort_keys=True,
        )
        for line in S3Ledger(stack.s3, LEDGER).lines()
    )
    held = sorted(detail.message.model_dump_json() for detail in stack.held())
    destinations = stack.s3.get_object(Bucket=LEDGER, Key="destinations/RX1.json")["Body"].read()
    return {
        "report": report,
        "groups": dict(groups),  # each FIFO group's messages, in the order the council receives them
        "ledger": ledger,
        "held": held,
        "destinations": json.loads(destinations),
    }


def snapshot_of(stack: IngestStack, name: str) -> ResumeSnapshot | None:
    sha256 = stack.report("RX1", name)["sha256"] if stack.reports("RX1", name) else None
    listed = stack.s3.list_objects_v2(Bucket=LEDGER, Prefix="resume/RX1/").get("Contents", [])
    if not listed:
        return None
    [item] = listed
    snapshot = ResumeSnapshot.decode(stack.s3.get_object(Bucket=LEDGER, Key=item["Key"])["Body"].read())
    assert sha256 is None or snapshot.sha256 == sha256
    return snapshot


def uninterrupted(monkeypatch, name: str, body: bytes) -> dict[str, Any]:
    with fresh_ingest_stack(monkeypatch) as stack:
        stack.upload("RX1", name, body)
        assert stack.run() == [{"batchItemFailures": []}]
        return everything(stack, name)


def stopped_and_resumed(monkeypatch, sqs_clock, name: str, body: bytes, checks: int, spoil=None) -> dict[str, Any]:
    """Stop after ``checks`` stop checks, then resume an hour later; ``spoil`` may change the
    saved snapshot in between."""
    with fresh_ingest_stack(monkeypatch) as stack:
        stack.upload("RX1", name, body)
        [stopped] = stack.run(context=RunsOutOfTime(checks_before_timeout=checks), max_polls=1)
        assert len(stopped["batchItemFailures"]) == 1
        snapshot = snapshot_of(stack, name)
        assert snapshot is not None and snapshot.rows_done % STOP_CHECK_EVERY_ROWS == 0 and snapshot.rows_done > 0
        if spoil is not None:
            spoil(stack, snapshot, sqs_clock)
        sqs_clock.advance(AN_HOUR)
        assert stack.run() == [{"batchItemFailures": []}]
        return everything(stack, name) | {"_stopped_at": snapshot.rows_done, "_snapshot": snapshot}


@pytest.mark.parametrize(
    ("name", "checks"),
    [
        ("births.csv", 5),
        ("births.csv", 11),
        ("births.csv.gz", 9),
        ("births.jsonl", 3),
        ("births.jsonl.gz", 7),
    ],
)
def test_a_file_resumed_from_its_snapshot_comes_to_exactly_what_an_uninterrupted_run_does(
    monkeypatch, sqs_clock, name, checks, first_passes
):
    body = file_body(name, awkward_rows(seed=3))
    expected = uninterrupted(monkeypatch, name, body)
    resumed = stopped_and_resumed(monkeypatch, sqs_clock, name, body, checks)
    # Parsed by the uninterrupted run and the stopped one; the redelivered one took the snapshot's facts.
    assert len(first_passes) == 2
    stopped_at = resumed.pop("_stopped_at")
    snapshot = resumed.pop("_snapshot").model_dump_json()
    assert 0 < stopped_at < ROWS
    assert "once_" not in snapshot and "twice" not in snapshot  # unlisted names: only as keyed hashes
    # The file exercises what the state must carry, on both sides of the stopping point.
    report = expected["report"]
    assert {error["row"] <= stopped_at for error in report["errors"]} == {True, False}
    assert {warning["row"] <= stopped_at for warning in report["warnings"]} == {True, False}
    assert "NOTIFICATION_ID_DUPLICATE" in report["outcome"]["rejected_by_code"]
    assert report["outcome"]["held"] and report["outcome"]["withheld"]
    assert report["ignored_columns"] == (["ward_note", "twice"] if ".jsonl" in name else ["ward_note"])
    assert resumed == expected


def test_the_snapshot_holds_ids_counts_and_row_errors_but_no_value_of_a_row(monkeypatch, sqs_clock):
    rows = awkward_rows(seed=5)
    with fresh_ingest_stack(monkeypatch) as stack:
        stack.upload("RX1", "births.csv", file_body("births.csv", rows))
        stack.run(context=RunsOutOfTime(checks_before_timeout=6), max_polls=1)
        snapshot = snapshot_of(stack, "births.csv")
        assert snapshot is not None
        text = snapshot.model_dump_json()
        personal = {
            row[field]
            for row in rows[: snapshot.rows_done]
            for field in ("baby_nhs_number", "mother_nhs_number", "postcode", "baby_given_name", "baby_family_name")
            if row.get(field)
        }
        dumped = base64.b64decode(snapshot.seen_ids)
        assert personal and not [value for value in personal if value in text or value.encode() in dumped]
        seen = SeenIds.load(dumped)
        before = {row["notification_id"] for row in rows[: snapshot.rows_done]}
        assert all((row["notification_id"] in seen) == (row["notification_id"] in before) for row in rows)


def a_later_run_crashed(stack: IngestStack, snapshot: ResumeSnapshot, sqs_clock) -> None:
    """The snapshot is older than the checkpoint: the next run resumed from it, checkpointed further on, then
    failed. The one after restores the snapshot and replays the rows between it and the checkpoint."""
    sqs_clock.advance(AN_HOUR)
    [failed] = stack.run(context=CrashesAfter(checks=7), max_polls=1)
    assert len(failed["batchItemFailures"]) == 1
    item = stack.dynamodb.Table(STATE_TABLE).get_item(Key={"id": f"progress#RX1#{snapshot.sha256}"})["Item"]
    assert int(item["rows_done"]) > snapshot.rows_done
    assert snapshot_of(stack, "births.csv") == snapshot  # no snapshot from a failed run


def snapshot_ahead(stack: IngestStack, snapshot: ResumeSnapshot, sqs_clock) -> None:
    """A snapshot past the checkpoint cannot be trusted: replay."""
    spoiled = snapshot.model_copy(update={"rows_done": snapshot.rows_done + STOP_CHECK_EVERY_ROWS})
    S3Snapshots(stack.s3, LEDGER).save("RX1", snapshot.sha256, spoiled.encode())


def snapshot_of_other_rules(stack: IngestStack, snapshot: ResumeSnapshot, sqs_clock) -> None:
    spoiled = snapshot.model_copy(update={"max_baby_age_days": snapshot.max_baby_age_days + 1, "forwarded": 0})
    S3Snapshots(stack.s3, LEDGER).save("RX1", snapshot.sha256, spoiled.encode())


def snapshot_corrupt(stack: IngestStack, snapshot: ResumeSnapshot, sqs_clock) -> None:
    S3Snapshots(stack.s3, LEDGER).save("RX1", snapshot.sha256, b"\x1f\x8bnot gzip")


def snapshot_gone(stack: IngestStack, snapshot: ResumeSnapshot, sqs_clock) -> None:
    stack.s3.delete_object(Bucket=LEDGER, Key=S3Snapshots.key("RX1", snapshot.sha256))


@pytest.mark.parametrize(
    "spoil", [a_later_run_crashed, snapshot_ahead, snapshot_of_other_rules, snapshot_corrupt, snapshot_gone]
)
def test_a_snapshot_that_cannot_be_trusted_as_it_is_falls_back_to_replaying(monkeypatch, sqs_clock, spoil):
    monkeypatch.setattr(pipeline, "CHECKPOINT_EVERY_ROWS", 2 * STOP_CHECK_EVERY_ROWS)
    body = file_body("births.csv", awkward_rows(seed=9))
    expected = uninterrupted(monkeypatch, "births.csv", body)
    resumed = stopped_and_resumed(monkeypatch, sqs_clock, "births.csv", body, checks=4, spoil=spoil)
    resumed.pop("_stopped_at"), resumed.pop("_snapshot")
    assert resumed == expected
