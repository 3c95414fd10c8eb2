"""Re-delivery to a council on moto (``birthnotify redeliver``): after the council's queue lost records, the
council's consumed output ends with every record once, and consuming again adds none."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import boto3
from birthnotify.shared.clock import london_day
from birthnotify_cli.consume import consume
from birthnotify_cli.main import EXIT_OK, EXIT_ROWS, main
from birthnotify_cli.synthetic import to_bytes
from ingest_support import REGISTRY_PATH, REPORTS, STAGE

LEEDS, KENT, MAIDSTONE = "E08000035", "E10000016", "E07000110"


def today():
    return london_day(datetime.now(UTC))


def redeliver(*args: str) -> int:
    return main(["redeliver", "--stage", STAGE.stage, "--reports-bucket", REPORTS, *args])


def consumed(ingest_stack, output) -> tuple[list[dict], object]:
    stats = consume(boto3.client("sqs"), ingest_stack.authority_queue_urls[LEEDS], output, "jsonl", wait_seconds=0)
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()], stats


def waiting(ingest_stack, gss: str) -> str:
    return ingest_stack.sqs.get_queue_attributes(
        QueueUrl=ingest_stack.authority_queue_urls[gss], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]


def with_prefix(rows: list[dict], prefix: str) -> list[dict]:
    """The trust's ids of another file (the generator numbers each file's notifications from 1)."""
    for row in rows:
        for name in ("notification_id", "original_notification_id"):
            if row.get(name):
                row[name] = prefix + row[name]
    return rows


def test_redelivery_after_a_purge_gives_the_council_every_record_once(ingest_stack, rows_factory, tmp_path, capsys):
    output = tmp_path / "leeds.jsonl"
    first = rows_factory(40, today(), districts={LEEDS: 1, MAIDSTONE: 1}, seed=71)
    ingest_stack.upload("RX1", "monday.csv", to_bytes(first, "monday.csv"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    lines, _ = consumed(ingest_stack, output)  # Leeds consumed Monday's file
    monday = ingest_stack.report("RX1", "monday.csv")
    [monday_leeds] = [c for c in monday["outcome"]["authorities"] if c["gss_code"] == LEEDS]
    assert len(lines) == monday_leeds["new"] + monday_leeds["amend"] + monday_leeds["cancel"] > 0

    second = with_prefix(rows_factory(40, today(), districts={LEEDS: 1, MAIDSTONE: 1}, seed=72), "TUE")
    ingest_stack.upload("RX1", "tuesday.jsonl", to_bytes(second, "tuesday.jsonl"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    tuesday = ingest_stack.report("RX1", "tuesday.jsonl")
    [tuesday_leeds] = [c for c in tuesday["outcome"]["authorities"] if c["gss_code"] == LEEDS]
    tuesday_total = tuesday_leeds["new"] + tuesday_leeds["amend"] + tuesday_leeds["cancel"]
    ingest_stack.sqs.purge_queue(QueueUrl=ingest_stack.authority_queue_urls[LEEDS])  # Tuesday's records are lost
    kent_before = waiting(ingest_stack, KENT)

    assert redeliver("--authority", LEEDS, "--since", str(today()), "--dry-run") == EXIT_OK
    assert f"{len(lines) + tuesday_total} records would be re-delivered from 2 files" in capsys.readouterr().out
    assert redeliver("--authority", LEEDS, "--since", str(today())) == EXIT_OK
    out = capsys.readouterr().out
    assert f"{len(lines) + tuesday_total} records were re-delivered from 2 files" in out
    assert f"monday.csv: {len(lines)} of {len(lines)}" in out and f"tuesday.jsonl: {tuesday_total} of" in out

    after, stats = consumed(ingest_stack, output)
    assert (stats.written, stats.already_written) == (tuesday_total, len(lines))  # Monday's again: harmless
    assert len(after) == len(lines) + tuesday_total
    assert len({(m["source"]["trust_ods_code"], m["notification_id"]) for m in after}) == len(after)
    assert {m["source"]["sha256"] for m in after} == {monday["sha256"], tuesday["sha256"]}
    assert {m["agreement_id"] for m in after} == {"LEEDS-BN-2026"}
    # Only Leeds's records went again: Kent's queue is as it was.
    assert waiting(ingest_stack, KENT) == kent_before

    # Re-delivered again, and consumed again: nothing is added.
    assert redeliver("--authority", LEEDS, "--file", "tuesday.jsonl") == EXIT_OK
    again, stats = consumed(ingest_stack, output)
    assert (stats.written, stats.already_written) == (0, tuesday_total)
    assert again == after

    # The re-deliveries are recorded with the held reviewers' actions: who, which records, why.
    assert main(["held", "actions", "--stage", STAGE.stage]) == EXIT_OK
    history = capsys.readouterr().out
    assert history.count(" redeliver by arn:aws:") == 2
    assert history.count(f" redelivered to {LEEDS} (LEEDS-BN-2026)") == len(lines) + 2 * tuesday_total
    # And in the sharing ledger: one entry per re-delivery of each record (issue 16).
    from birthnotify.adapters.ledger import S3Ledger
    from birthnotify.application.ledger import entries
    from ingest_support import LEDGER

    redelivered = [e for e in entries(S3Ledger(ingest_stack.s3, LEDGER)) if e.outcome.value == "REDELIVERED"]
    assert len(redelivered) == len(lines) + 2 * tuesday_total
    assert {(e.authority_gss_code, e.agreement_id) for e in redelivered} == {(LEEDS, "LEEDS-BN-2026")}


def test_a_file_whose_routing_changed_since_is_refused_and_nothing_of_it_sent(
    ingest_stack, rows_factory, tmp_path, capsys
):
    rows = rows_factory(30, today(), districts={LEEDS: 1}, seed=73)
    ingest_stack.upload("RX1", "changed.csv", to_bytes(rows, "changed.csv"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    ingest_stack.sqs.purge_queue(QueueUrl=ingest_stack.authority_queue_urls[LEEDS])
    # Since then, the registry was edited: the agreement the records went under is not the one routing finds.
    for name in ("authorities-england-wales.csv", "postcodes.csv"):
        shutil.copy(REGISTRY_PATH.parent / name, tmp_path / name)
    edited = tmp_path / "registry.toml"
    edited.write_text(
        REGISTRY_PATH.read_text(encoding="utf-8").replace('id = "LEEDS-BN-2026"', 'id = "LEEDS-BN-RENAMED"'),
        encoding="utf-8",
    )

    assert redeliver("--authority", LEEDS, "--file", "changed.csv", "--registry", str(edited)) == EXIT_ROWS
    captured = capsys.readouterr()
    assert "changed.csv: not re-delivered: routing it today" in captured.out
    assert "could not be re-delivered" in captured.err
    assert ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS]) == []


def test_a_file_whose_upload_is_no_longer_kept_is_named(ingest_stack, rows_factory, capsys):
    rows = rows_factory(10, today(), districts={LEEDS: 1}, seed=74)
    key = ingest_stack.upload("RX1", "expired.csv", to_bytes(rows, "expired.csv"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    for version in ingest_stack.s3.list_object_versions(Bucket="test-inbound", Prefix=key)["Versions"]:
        ingest_stack.s3.delete_object(Bucket="test-inbound", Key=key, VersionId=version["VersionId"])  # lifecycle

    assert redeliver("--authority", LEEDS, "--file", "expired.csv") == EXIT_ROWS
    assert "expired.csv: not re-delivered: its upload is no longer kept" in capsys.readouterr().out
