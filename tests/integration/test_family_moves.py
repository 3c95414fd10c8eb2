"""A family that moves: with the ledger's destination index, the council that received a notification hears
of its AMEND that moves the family away (a notice, no new address), and every council that had it receives
its CANCEL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from birthnotify.domain.ledger import LedgerEntry
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.main import main
from birthnotify_cli.synthetic import load_postcodes_by_district, to_bytes
from ingest_support import LEDGER, LEDGER_SECRET, REGISTRY_PATH

LEEDS, KENT, MAIDSTONE, CAMDEN = "E08000035", "E10000016", "E07000110", "E09000007"
REGISTRY = load_registry(REGISTRY_PATH)
POSTCODES = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")


def today():
    return london_day(datetime.now(UTC))


def moved_to(row: dict, district: str, **changes: str) -> dict:
    """The same baby, in a later file, at an address in another district."""
    return row | {"postcode": POSTCODES[district][0], "residence_la_code": "", **changes}


def upload_and_run(stack, name: str, rows: list[dict]) -> dict:
    stack.upload("RX1", name, to_bytes(rows, name))
    assert stack.run() == [{"batchItemFailures": []}]
    return stack.report("RX1", name)["outcome"]


def queues(stack) -> dict[str, list[dict]]:
    return {gss: stack.drain(url) for gss, url in stack.authority_queue_urls.items()}


def test_an_amend_that_moves_the_family_reaches_the_new_council_and_tells_the_old_one(
    ingest_stack, rows_factory, capsys
):
    babies = rows_factory(6, today(), districts={LEEDS: 1})
    upload_and_run(ingest_stack, "first.csv", babies)
    assert len(queues(ingest_stack)[LEEDS]) == 6

    moved = moved_to(
        babies[2],
        MAIDSTONE,
        notification_id="AM-1",
        notification_type="AMEND",
        original_notification_id=babies[2]["notification_id"],
    )
    stayed = babies[4] | {
        "notification_id": "AM-2",
        "notification_type": "AMEND",  # a new address in Leeds
        "original_notification_id": babies[4]["notification_id"],
        "address_line_1": "2 New Row",
    }
    outcome = upload_and_run(ingest_stack, "amends.csv", [moved, stayed])

    received = queues(ingest_stack)
    [kent] = received[KENT]
    assert (kent["notification_type"], kent["notification_id"]) == ("AMEND", "AM-1")
    assert kent["record"] and set(kent["record"]) <= REGISTRY.authority(KENT).agreement_on(today()).allowed_fields
    notice, amended = sorted(received[LEEDS], key=lambda body: body["notification_id"])
    assert (notice["notice"], notice["notification_id"], notice["original_notification_id"]) == (
        "MOVED_OUT",
        "AM-1",
        babies[2]["notification_id"],
    )
    assert notice["record"] == {} and notice["agreement_id"] == REGISTRY.authority(LEEDS).agreement_on(today()).id
    assert notice["_attributes"]["MessageGroupId"] == f"RX1:{babies[2]['notification_id']}"  # after the NEW
    assert "notice" not in amended and amended["notification_id"] == "AM-2"  # no notice when the family stays
    assert all(not bodies for gss, bodies in received.items() if gss not in (LEEDS, KENT))
    counts = {a["gss_code"]: (a["amend"], a["notices"]) for a in outcome["authorities"]}
    assert counts == {KENT: (1, 0), LEEDS: (1, 1)} and outcome["forwarded"] == 2

    capsys.readouterr()
    assert (
        main(
            [
                "audit",
                "--nhs-number",
                babies[2]["baby_nhs_number"],
                "--format",
                "json",
                "--ledger-bucket",
                LEDGER,
                "--key-secret-id",
                LEDGER_SECRET,
            ]
        )
        == 0
    )
    history = [(e["outcome"], e["council_gss_code"], e["notification_id"]) for e in json.loads(capsys.readouterr().out)]
    assert sorted(history) == sorted(
        [("FORWARDED", LEEDS, babies[2]["notification_id"]), ("FORWARDED", KENT, "AM-1"), ("MOVED_OUT", LEEDS, "AM-1")]
    )


def test_a_cancel_reaches_every_council_that_had_the_record(ingest_stack, rows_factory):
    [baby] = rows_factory(1, today(), districts={LEEDS: 1})
    baby["notification_id"] = "N-1"
    moved = moved_to(baby, MAIDSTONE, notification_id="A-2", notification_type="AMEND", original_notification_id="N-1")
    upload_and_run(ingest_stack, "new-and-move.csv", [baby, moved])  # one file: the index is also this file's
    received = queues(ingest_stack)
    assert [b.get("notice") for b in received[LEEDS]] == [None, "MOVED_OUT"] and len(received[KENT]) == 1

    cancel = moved | {"notification_id": "C-3", "notification_type": "CANCEL"}
    outcome = upload_and_run(ingest_stack, "cancel.csv", [cancel])

    received = queues(ingest_stack)
    for gss in (LEEDS, KENT):
        [body] = received[gss]
        assert (body["notification_type"], body["notification_id"], body.get("notice")) == ("CANCEL", "C-3", None)
        assert body["record"] and set(body["record"]) <= REGISTRY.authority(gss).agreement_on(today()).allowed_fields
    assert {a["gss_code"]: (a["cancel"], a["notices"]) for a in outcome["authorities"]} == {KENT: (1, 0), LEEDS: (0, 1)}
    listed = ingest_stack.s3.list_objects_v2(Bucket=LEDGER, Prefix="ledger/")["Contents"]
    entries = [
        LedgerEntry.model_validate_json(line)
        for item in listed
        for line in ingest_stack.s3.get_object(Bucket=LEDGER, Key=item["Key"])["Body"].read().decode().splitlines()
    ]
    cancels = sorted((e.outcome.value, e.authority_gss_code) for e in entries if e.notification_id == "C-3")
    assert cancels == [("FORWARDED", LEEDS), ("FORWARDED", KENT)]


def test_the_destination_index_holds_no_personal_data(ingest_stack, rows_factory):
    rows = rows_factory(5, today(), districts={LEEDS: 1, CAMDEN: 1})
    upload_and_run(ingest_stack, "index.csv", rows)
    [item] = ingest_stack.s3.list_objects_v2(Bucket=LEDGER, Prefix="destinations/")["Contents"]
    text = ingest_stack.s3.get_object(Bucket=LEDGER, Key=item["Key"])["Body"].read().decode()
    assert item["Key"] == "destinations/RX1.json"
    for row in rows:
        assert row["notification_id"] in text
        for field in ("baby_nhs_number", "mother_given_name", "postcode", "baby_date_of_birth", "address_line_1"):
            assert row[field] not in text


def test_a_council_is_told_once_that_the_family_left_and_hears_again_if_they_return(ingest_stack, rows_factory):
    [baby] = rows_factory(1, today(), districts={LEEDS: 1})
    baby["notification_id"] = "N-1"
    to_kent = moved_to(
        baby, MAIDSTONE, notification_id="A-2", notification_type="AMEND", original_notification_id="N-1"
    )
    upload_and_run(ingest_stack, "new-and-move.csv", [baby, to_kent])
    queues(ingest_stack)

    again_in_kent = to_kent | {"notification_id": "A-3", "address_line_1": "9 Other Lane"}
    upload_and_run(ingest_stack, "second-amend.csv", [again_in_kent])
    received = queues(ingest_stack)
    assert [b["notification_id"] for b in received[KENT]] == ["A-3"] and received[LEEDS] == []  # told once

    back_in_leeds = baby | {"notification_id": "A-4", "notification_type": "AMEND", "original_notification_id": "N-1"}
    upload_and_run(ingest_stack, "back.csv", [back_in_leeds])
    received = queues(ingest_stack)
    assert [(b["notification_id"], b.get("notice")) for b in received[LEEDS]] == [("A-4", None)]
    assert [(b["notification_id"], b.get("notice")) for b in received[KENT]] == [("A-4", "MOVED_OUT")]
