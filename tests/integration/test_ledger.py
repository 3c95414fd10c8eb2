"""The sharing ledger, written by the real ingest handler on moto and read back by `birthnotify audit` and
`birthnotify agreements`: what an IG lead and a parent's subject access request rely on."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from birthnotify.domain.ledger import LedgerEntry
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.main import main
from birthnotify_cli.synthetic import load_postcodes_by_district, synthetic_nhs_number, to_bytes
from ingest_support import LEDGER, LEDGER_SECRET, REGISTRY_PATH, RunsOutOfTime
from test_retries_after_the_window import AN_HOUR, KENT, FlakySqs, mixed_rows

LEEDS, CAMDEN, YORK, MAIDSTONE = "E08000035", "E09000007", "E06000014", "E07000110"
REGISTRY = load_registry(REGISTRY_PATH)
PERSONAL_FIELDS = (
    "baby_nhs_number",
    "mother_nhs_number",
    "mother_given_name",
    "mother_family_name",
    "baby_date_of_birth",
    "mother_date_of_birth",
    "address_line_1",
    "address_line_2",
    "postcode",
)


def today():
    return london_day(datetime.now(UTC))


def ledger_objects(stack) -> dict[str, bytes]:
    listed = stack.s3.list_objects_v2(Bucket=LEDGER, Prefix="ledger/").get("Contents", [])
    return {item["Key"]: stack.s3.get_object(Bucket=LEDGER, Key=item["Key"])["Body"].read() for item in listed}


def ledger_entries(stack) -> list[LedgerEntry]:
    """Every entry as written (repeats included), each held to the published model."""
    return [
        LedgerEntry.model_validate_json(line)
        for body in ledger_objects(stack).values()
        for line in body.decode().splitlines()
    ]


def audit(capsys, nhs_number: str, *extra: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = main(
        [
            "audit",
            "--nhs-number",
            nhs_number,
            "--ledger-bucket",
            LEDGER,
            "--key-secret-id",
            LEDGER_SECRET,
            "--format",
            "json",
            *extra,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return code, json.loads(captured.out)


@pytest.fixture
def mixed_file(ingest_stack, rows_factory):
    rows = rows_factory(40, today(), districts={LEEDS: 1, MAIDSTONE: 1, CAMDEN: 1})
    rows[3]["live_birth"] = "N"
    rows[5]["sharing_objection"] = "Y"
    rows[6]["postcode"], rows[6]["residence_la_code"] = "ZZ99 3VZ", ""
    york = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")[YORK]
    rows[7]["residence_la_code"], rows[7]["postcode"] = YORK, york[0]  # York's agreement lapsed: held
    rows[8]["baby_nhs_number"] = "123"  # rejected: never in the ledger
    ingest_stack.upload("RX1", "mixed.csv", to_bytes(rows, "x.csv"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    return rows


def test_audit_of_a_forwarded_baby_lists_exactly_its_council_agreement_and_fields(ingest_stack, mixed_file, capsys):
    # A Maidstone family (Kent County Council runs its children's services) with the mother's NHS number given.
    row = next(r for r in mixed_file[9:] if r["postcode"].startswith("ME") and r["mother_nhs_number"])
    code, answer = audit(capsys, row["baby_nhs_number"])

    assert code == 0
    agreement = REGISTRY.authority(KENT).agreement_on(today())
    [entry] = answer
    assert entry["outcome"] == "FORWARDED" and entry["council_gss_code"] == KENT
    assert entry["council"] == "Kent County Council"
    assert (entry["agreement_id"], entry["purpose"]) == (agreement.id, agreement.purpose)
    assert entry["fields_shared"] == sorted(agreement.allowed_fields)
    assert entry["notification_id"] == row["notification_id"] and entry["trust"] == "RX1"
    assert entry["date"][:10] == today().isoformat()

    code, by_mother = audit(capsys, row["mother_nhs_number"], "--mother")
    assert code == 0 and [e["notification_id"] for e in by_mother] == [row["notification_id"]]

    # The hash an Athena query needs is the one the ledger holds for this baby.
    assert (
        main(
            [
                "audit",
                "--nhs-number",
                row["baby_nhs_number"],
                "--hash-only",
                "--ledger-bucket",
                LEDGER,
                "--key-secret-id",
                LEDGER_SECRET,
            ]
        )
        == 0
    )
    hashed = capsys.readouterr().out.strip()
    assert [e.baby_nhs_hash for e in ledger_entries(ingest_stack) if e.notification_id == row["notification_id"]] == [
        hashed
    ]


def test_audit_of_a_withheld_or_held_baby_says_so_and_that_nothing_was_shared(ingest_stack, mixed_file, capsys):
    _, stillbirth = audit(capsys, mixed_file[3]["baby_nhs_number"])
    _, objection = audit(capsys, mixed_file[5]["baby_nhs_number"])
    _, york = audit(capsys, mixed_file[7]["baby_nhs_number"])

    assert [(e["outcome"], e["reason"], e["council_gss_code"], e["fields_shared"]) for e in stillbirth] == [
        ("WITHHELD", "STILLBIRTH", None, [])
    ]
    assert [(e["outcome"], e["reason"]) for e in objection] == [("WITHHELD", "SHARING_OBJECTION")]
    assert [(e["outcome"], e["reason"], e["council_gss_code"], e["fields_shared"]) for e in york] == [
        ("HELD", "NO_AGREEMENT", YORK, [])
    ]


def test_audit_of_an_unknown_number_is_empty_and_succeeds(ingest_stack, mixed_file, capsys):
    unknown = synthetic_nhs_number(__import__("random").Random(12345))
    assert unknown not in {row["baby_nhs_number"] for row in mixed_file}
    assert audit(capsys, unknown) == (0, [])
    capsys.readouterr()
    assert main(["audit", "--nhs-number", unknown, "--ledger-bucket", LEDGER, "--key-secret-id", LEDGER_SECRET]) == 0
    assert "No ledger entry" in capsys.readouterr().out
    assert (
        main(["audit", "--nhs-number", "1234567890", "--ledger-bucket", LEDGER, "--key-secret-id", LEDGER_SECRET]) == 2
    )  # not a valid NHS number: a usage error


def test_the_ledger_holds_no_nhs_number_name_postcode_or_date_of_birth(ingest_stack, mixed_file):
    objects = ledger_objects(ingest_stack)
    assert objects, "the file's outcomes are in the ledger"
    valid = mixed_file[:8] + mixed_file[9:]  # row 9's NHS number ("123") was rejected and is never recorded
    personal = {row[key] for row in valid for key in PERSONAL_FIELDS if row.get(key)}
    personal |= {row["postcode"].replace(" ", "") for row in valid}
    personal |= {
        "/".join(reversed(row[key].split("-")))
        for row in valid  # DD/MM/YYYY too
        for key in ("baby_date_of_birth", "mother_date_of_birth")
        if row.get(key)
    }
    for key, body in objects.items():
        text = (key + "\n" + body.decode()).lower()
        leaked = sorted(value for value in personal if value.lower() in text)
        assert not leaked, f"{key} holds personal data: {len(leaked)} values"
        assert "mixed.csv" not in text  # nor the file's name (a trust may name a file after a patient)
    entries = ledger_entries(ingest_stack)
    outcomes = Counter(e.outcome.value for e in entries)
    assert outcomes == {"FORWARDED": 35, "WITHHELD": 2, "HELD": 2}  # every valid row once; the rejected one not


def test_an_outage_retried_after_the_window_leaves_one_entry_per_outcome(ingest_stack, rows_factory, sqs_clock):
    rows = mixed_rows(rows_factory, 57, seed=41)
    flaky = FlakySqs(ingest_stack.sqs, ingest_stack.authority_queue_urls[KENT], accept_first=1)
    ingest_stack.rewire(sqs=flaky)
    ingest_stack.upload("RX1", "outage.csv", to_bytes(rows, "x.csv"))
    [failed] = ingest_stack.run()
    assert len(failed["batchItemFailures"]) == 1

    flaky.down = False
    sqs_clock.advance(AN_HOUR)
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    entries = ledger_entries(ingest_stack)
    assert Counter(e.row for e in entries) == Counter(range(1, 58))
    assert len({e.entry_id for e in entries}) == 57


def test_a_file_stopped_by_the_timeout_and_resumed_leaves_one_entry_per_outcome(ingest_stack, rows_factory, sqs_clock):
    rows = mixed_rows(rows_factory, 450, seed=44)
    ingest_stack.upload("RX1", "late.csv", to_bytes(rows, "x.csv"))
    [stopped] = ingest_stack.run(context=RunsOutOfTime(checks_before_timeout=2), max_polls=1)
    assert len(stopped["batchItemFailures"]) == 1
    assert 0 < len(ledger_entries(ingest_stack)) < 450  # the rows before the checkpoint are already recorded

    sqs_clock.advance(AN_HOUR)
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    entries = ledger_entries(ingest_stack)
    assert Counter(e.row for e in entries) == Counter(range(1, 451))
    assert len(ledger_objects(ingest_stack)) == 2  # one object per chunk between checkpoints


def test_the_agreements_register_counts_records_shared_from_the_ledger(ingest_stack, mixed_file, capsys):
    capsys.readouterr()
    assert main(["agreements", "--format", "csv", "--ledger-bucket", LEDGER]) == 0
    import csv
    import io

    register = {row["agreement_id"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    forwarded = Counter(e.agreement_id for e in ledger_entries(ingest_stack) if e.outcome.value == "FORWARDED")
    assert {
        agreement: int(row["records_shared"]) for agreement, row in register.items() if int(row["records_shared"])
    } == dict(forwarded)
    kent = REGISTRY.authority(KENT).agreement_on(today())
    row = register[kent.id]
    assert (row["council"], row["gss_code"], row["purpose"]) == ("Kent County Council", KENT, kent.purpose)
    assert row["fields"].split() == sorted(kent.allowed_fields)
    assert row["valid_from"] == kent.valid_from.isoformat()
    york = [a for a in REGISTRY.authority(YORK).agreements]
    assert all(register[a.id]["records_shared"] == "0" for a in york)

    assert main(["agreements", "--format", "markdown", "--ledger-bucket", LEDGER]) == 0
    markdown = capsys.readouterr().out.splitlines()
    assert markdown[0].startswith("| council | gss_code | agreement_id |") and len(markdown) == len(register) + 2


def test_a_redelivered_s3_event_and_a_reupload_add_no_entry(ingest_stack, rows_factory):
    rows = rows_factory(15, today(), districts={LEEDS: 1})
    body = to_bytes(rows, "a.csv")
    ingest_stack.upload("RX1", "first.csv", body)
    [message] = ingest_stack.sqs.receive_message(QueueUrl=ingest_stack.ingest_queue_url, VisibilityTimeout=0)[
        "Messages"
    ]
    ingest_stack.sqs.send_message(QueueUrl=ingest_stack.ingest_queue_url, MessageBody=message["Body"])  # S3 resends
    ingest_stack.run()
    ingest_stack.upload("RX1", "again.csv", body)  # the same content under another name: DUPLICATE
    ingest_stack.run()

    entries = ledger_entries(ingest_stack)
    assert Counter(e.row for e in entries) == Counter(range(1, 16))


def test_a_held_record_released_or_discarded_is_in_the_ledger_once_per_outcome(
    ingest_stack, rows_factory, tmp_path, capsys
):
    from test_held_review import held_command, registry_with_york_agreement, upload_with_york

    york = upload_with_york(ingest_stack, rows_factory, "held.csv", 12, seed=64)
    discarded, released = sorted(york)[0], sorted(york)[1:]
    assert (
        held_command(
            "discard",
            "--file",
            "held.csv",
            f"--row={discarded}",
            "--reason",
            "the family moved to Scotland before the birth",
        )
        == 0
    )
    assert held_command("release", "--registry", str(registry_with_york_agreement(tmp_path))) == 0
    assert held_command("release", "--registry", str(registry_with_york_agreement(tmp_path))) == 0  # nothing more

    by_row = {}
    for entry in ledger_entries(ingest_stack):
        by_row.setdefault(entry.row, []).append((entry.outcome.value, entry.authority_gss_code, entry.agreement_id))
    york_gss = "E06000014"
    assert sorted(by_row[discarded]) == [("DISCARDED", york_gss, None), ("HELD", york_gss, None)]
    for row in released:
        assert sorted(by_row[row]) == [("HELD", york_gss, None), ("RELEASED", york_gss, "YORK-HCS-RENEWED")]
    entry = next(e for e in ledger_entries(ingest_stack) if e.outcome.value == "RELEASED")
    assert entry.fields_shared and entry.reason and entry.reason.startswith("action ")
