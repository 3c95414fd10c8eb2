"""The users' command line: a trust's offline check, an authority's consumer, the generated contracts."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from birthnotify.shared.clock import london_day
from birthnotify_cli import contracts
from birthnotify_cli.consume import consume
from birthnotify_cli.main import EXIT_FILE, EXIT_OK, EXIT_ROWS, main
from birthnotify_cli.synthetic import to_bytes

ROOT = Path(__file__).resolve().parents[2]
LEEDS, CAMDEN = "E08000035", "E09000007"


def today():
    return london_day(datetime.now(UTC))


def test_validate_reports_exactly_what_the_pipeline_reports(ingest_stack, tmp_path, capsys):
    path = tmp_path / "births.csv"
    assert main(["generate", str(path), "--rows", "160", "--seed", "8", "--invalid", "0.15"]) == EXIT_OK
    capsys.readouterr()

    assert main(["validate", str(path), "--trust", "RX1", "--json"]) == EXIT_ROWS
    offline = json.loads(capsys.readouterr().out)
    ingest_stack.upload("RX1", "births.csv", path.read_bytes())
    ingest_stack.run()
    report = ingest_stack.report("RX1", "births.csv")

    assert offline["errors"] == report["errors"] and offline["errors"]
    assert offline["outcome"] == report["outcome"]


def test_validate_names_a_whole_file_problem_and_exits_3(tmp_path, capsys):
    path = tmp_path / "births.csv"
    path.write_text("notification_id,postcode\nN1,LS1 4AP\n")
    assert main(["validate", str(path), "--trust", "RX1"]) == EXIT_FILE
    out = capsys.readouterr().out
    assert "FILE_MISSING_COLUMNS" in out and "baby_nhs_number" in out


@pytest.mark.parametrize(
    ("output", "fmt"), [("birth.xml", None), ("birth.json.gz", None), ("bundles", "fhir-xml"), ("bundles", "fhir-json")]
)
def test_generate_writes_bundles_that_validate_and_the_pipeline_reads_alike(
    ingest_stack, tmp_path, capsys, output, fmt
):
    path = tmp_path / output
    rows = ["--rows", "3"] if fmt else []
    assert (
        main(
            [
                "generate",
                str(path),
                *(["--format", fmt] if fmt else []),
                *rows,
                "--seed",
                "5",
                "--invalid",
                "0.3",
                "--withheld",
                "0.3",
            ]
        )
        == EXIT_OK
    )
    capsys.readouterr()
    files = sorted(path.iterdir()) if fmt else [path]
    assert len(files) == (3 if fmt else 1)
    for file in files:
        assert main(["validate", str(file), "--trust", "RX1", "--json"]) in (EXIT_OK, EXIT_ROWS)
        offline = json.loads(capsys.readouterr().out)
        assert offline["outcome"]["rows_in"] == 1 and offline["file_error"] is None
        ingest_stack.upload("RX1", file.name, file.read_bytes())
        ingest_stack.run()
        capsys.readouterr()  # the handler's own log lines
        report = ingest_stack.report("RX1", file.name)
        assert (offline["errors"], offline["warnings"], offline["outcome"]) == (
            report["errors"],
            report["warnings"],
            report["outcome"],
        )
        for error in offline["errors"]:  # named by element, never by a CSV column
            assert error["field"] is None or " " in error["field"] or "." in error["field"]


def test_validate_prints_a_bundles_warning_by_element(tmp_path, capsys):
    example = (ROOT / "docs" / "examples" / "nems" / "BirthNotificationWithMother.xml").read_text()
    path = tmp_path / "example.xml"
    path.write_text(example.replace("2017-10-02", today().isoformat()))
    assert main(["validate", str(path), "--trust", "RX1"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "1 rows: 1 to forward, 0 rejected" in out and "Leeds City Council" in out
    assert "mother Patient.identifier" in out and "NHS_NUMBER_CHECKSUM" in out and "1112223330" not in out


def test_validate_names_a_refused_bundle_and_exits_3(tmp_path, capsys):
    path = tmp_path / "laughs.xml"
    path.write_text('<!DOCTYPE Bundle [<!ENTITY a "a">]><Bundle xmlns="http://hl7.org/fhir">&a;</Bundle>')
    assert main(["validate", str(path), "--trust", "RX1"]) == EXIT_FILE
    assert "FILE_XML_DTD_FORBIDDEN" in capsys.readouterr().out


def test_contracts_in_docs_are_generated_from_the_models():
    assert contracts.stale(ROOT / "docs") == [], "run `make contracts` and commit docs/"
    schema = json.loads((ROOT / "docs" / "schemas" / "authority-message.schema.json").read_text())
    assert {"agreement_id", "source", "record"} <= set(schema["properties"])


class Interrupted(Exception):
    pass


class DiesBeforeDeleting:
    """An SQS client whose process dies after the consumer wrote a batch but before it deleted it."""

    def __init__(self, real) -> None:
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def delete_message_batch(self, **kwargs):
        raise Interrupted


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_consume_survives_an_interruption_without_loss_or_duplicates(ingest_stack, rows_factory, tmp_path, fmt):
    rows = rows_factory(23, today(), districts={LEEDS: 1})
    rows[0]["mother_family_name"] = '=HYPERLINK("http://x")'
    ingest_stack.upload("RX1", "leeds.csv", to_bytes(rows, "x.csv"))
    ingest_stack.run()
    queue = ingest_stack.authority_queue_urls[LEEDS]
    output = tmp_path / f"leeds.{fmt}"
    # So that the interrupted run's messages come back at once rather than after the visibility timeout.
    ingest_stack.sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "0"})

    with pytest.raises(Interrupted):
        consume(DiesBeforeDeleting(ingest_stack.sqs), queue, output, fmt, wait_seconds=0)
    with output.open("a") as handle:
        handle.write('{"partial line' if fmt == "jsonl" else "BN0,NEW,,LEEDS")  # killed mid-write
    stats = consume(ingest_stack.sqs, queue, output, fmt, wait_seconds=0)

    assert stats.already_written == 10 and stats.written == 13
    assert ingest_stack.drain(queue) == []
    if fmt == "csv":
        records = list(csv.DictReader(output.open(newline="")))
        # Found by its id: records of different notifications may arrive in any order (sends overlap).
        [first] = [record for record in records if record["notification_id"] == rows[0]["notification_id"]]
        assert first["mother_family_name"].startswith("'=")  # not a formula in a spreadsheet
        assert "baby_time_of_birth" in first
    else:
        records = [json.loads(line) for line in output.read_text().splitlines()]
    ids = [record["notification_id"] for record in records]
    assert sorted(ids) == sorted(row["notification_id"] for row in rows)


def test_the_local_cloud_commands_enforce_iam_unless_told_not_to(monkeypatch):
    import birthnotify_cli.demo
    import birthnotify_cli.localcloud

    calls = []
    monkeypatch.setattr(birthnotify_cli.localcloud, "serve", lambda **kwargs: calls.append(("serve", kwargs)) or 0)
    monkeypatch.setattr(birthnotify_cli.demo, "run_demo", lambda **kwargs: calls.append(("demo", kwargs)) or 0)
    assert main(["local", "serve"]) == main(["local", "serve", "--no-iam-enforcement", "--retry-after", "5"]) == 0
    assert main(["demo"]) == main(["demo", "--no-iam-enforcement"]) == 0
    assert [(name, kwargs["enforce_iam"]) for name, kwargs in calls] == [
        ("serve", True),
        ("serve", False),
        ("demo", True),
        ("demo", False),
    ]
    assert [kwargs.get("retry_delay_seconds") for name, kwargs in calls if name == "serve"] == [None, 5.0]
