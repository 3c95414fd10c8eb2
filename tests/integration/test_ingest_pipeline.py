"""Real files through the real ingest handler against moto: what trusts and authorities see."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import bad_checksum, load_postcodes_by_district, synthetic_nhs_number, to_bytes
from ingest_support import REGISTRY_PATH

LEEDS, KENT, CAMDEN, YORK = "E08000035", "E10000016", "E09000007", "E06000014"
MAIDSTONE = "E07000110"  # a district: its births go to Kent County Council
MANCHESTER = "E08000003"  # runs children's services, not in the registry
REGISTRY = load_registry(REGISTRY_PATH)
PERSONAL_FIELDS = (
    "baby_nhs_number",
    "mother_nhs_number",
    "mother_given_name",
    "mother_family_name",
    "baby_date_of_birth",
    "mother_date_of_birth",
    "address_line_1",
    "postcode",
)


def today():
    return london_day(datetime.now(UTC))


def assert_balanced(outcome: dict) -> None:
    assert outcome["rows_in"] == outcome["forwarded"] + outcome["rejected"] + outcome["withheld"] + outcome["held"]


def bodies_by_queue(stack) -> dict[str, list[dict]]:
    return {gss: stack.drain(url) for gss, url in stack.authority_queue_urls.items()}


def test_mixed_file_is_split_filtered_and_reconciled(ingest_stack, rows_factory):
    rows = rows_factory(60, today(), districts={LEEDS: 1, MAIDSTONE: 1, CAMDEN: 1})
    rows[0]["baby_nhs_number"] = bad_checksum(rows[0]["baby_nhs_number"])
    rows[1]["postcode"] = "NOT A POSTCODE"
    rows[2]["birth_order"], rows[2]["number_of_babies"] = "3", "2"
    rows[3]["live_birth"] = "N"
    rows[4]["restricted"] = "Y"
    rows[5]["sharing_objection"] = "Y"
    rows[6]["postcode"], rows[6]["residence_la_code"] = "ZZ99 3VZ", ""
    postcodes = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
    rows[7]["residence_la_code"], rows[7]["postcode"] = YORK, postcodes[YORK][0]  # agreement lapsed: held
    # Manchester runs children's services but is not in the registry: held, naming it (not NO_AUTHORITY).
    rows[8]["residence_la_code"], rows[8]["postcode"] = MANCHESTER, postcodes[MANCHESTER][0]
    rows[9]["notification_id"] = rows[10]["notification_id"]
    rows[12]["residence_la_code"], rows[12]["postcode"] = "E06000999", "ZZ99 3VZ"  # no such council: no authority
    ingest_stack.upload("RX1", "births 2026-11.csv", to_bytes(rows, "x.csv"))

    responses = ingest_stack.run()

    assert responses == [{"batchItemFailures": []}]
    report = ingest_stack.report("RX1", "births 2026-11.csv")
    outcome = report["outcome"]
    assert_balanced(outcome)
    assert (outcome["rows_in"], outcome["rejected"], outcome["withheld"], outcome["held"]) == (60, 4, 3, 4)
    assert outcome["withheld_by_reason"] == {"STILLBIRTH": 1, "RESTRICTED": 1, "SHARING_OBJECTION": 1}
    held = {(h["reason"], h["authority_gss_code"], h["authority_name"]): h["count"] for h in outcome["held_by_reason"]}
    assert held == {
        ("PSEUDO_POSTCODE", None, None): 1,
        ("NO_AGREEMENT", YORK, "City of York Council"): 1,
        ("NO_AGREEMENT", MANCHESTER, "Manchester City Council"): 1,
        ("NO_AUTHORITY", None, None): 1,
    }
    codes = {(e["row"], e["field"], e["code"]) for e in report["errors"]}
    assert codes == {
        (1, "baby_nhs_number", "NHS_NUMBER_CHECKSUM"),
        (2, "postcode", "POSTCODE_INVALID"),
        (3, "birth_order", "BIRTH_ORDER_EXCEEDS_BABIES"),
        (11, "notification_id", "NOTIFICATION_ID_DUPLICATE"),
    }

    queues = bodies_by_queue(ingest_stack)
    forwarded = [body for bodies in queues.values() for body in bodies]
    assert len(forwarded) == outcome["forwarded"] == 60 - 4 - 3 - 4
    assert {a["gss_code"]: a["new"] for a in outcome["authorities"]} == {
        gss: len(bodies) for gss, bodies in queues.items() if bodies
    }
    assert queues[YORK] == []
    assert queues[KENT], "district E07000110 routes to Kent County Council"
    for gss, bodies in queues.items():
        authority = REGISTRY.authority(gss)
        allowed = authority.agreement_on(today()).allowed_fields if bodies else set()
        for body in bodies:
            assert set(body["record"]) <= allowed, f"{gss} received fields outside its agreement"
            assert body["agreement_id"] == authority.agreement_on(today()).id
            assert body["source"]["key"] == "inbound/RX1/births 2026-11.csv"
            assert body["_attributes"]["MessageGroupId"] == f"RX1:{body['notification_id']}"
    kent_fields = set().union(*(b["record"] for b in queues[KENT]))
    assert "baby_nhs_number" not in kent_fields and "mother_given_name" in kent_fields
    held = ingest_stack.held()  # in the held store, every field of each record, for the reviewers
    assert sorted((h.message.reason, h.message.authority_gss_code or "") for h in held) == [
        ("NO_AGREEMENT", YORK),
        ("NO_AGREEMENT", MANCHESTER),
        ("NO_AUTHORITY", ""),
        ("PSEUDO_POSTCODE", ""),
    ]
    assert all(
        h.summary.report_key == report["report_key"] and h.message.source.key == "inbound/RX1/births 2026-11.csv"
        for h in held
    )

    [event] = ingest_stack.drain(ingest_stack.events_queue_url)
    assert event["status"] == "PROCESSED" and event["outcome"]["rows_in"] == 60
    assert event["rejected_rows_key"] == report["report_key"].removesuffix(".json") + ".rejected.csv"
    assert event["report_key"].startswith("reports/RX1/births 2026-11.csv/")


def test_reports_event_and_logs_never_echo_personal_data(ingest_stack, rows_factory, caplog, capsys):
    rows = rows_factory(12, today())
    rows[0]["baby_nhs_number"] = bad_checksum(rows[0]["baby_nhs_number"])
    rows[1]["mother_given_name"] = "Zelda\x07"
    rows[2]["postcode"] = "QQ1 1QQQ"
    rows[3]["baby_date_of_birth"] = (today() + timedelta(days=2)).isoformat()
    rows[4]["notification_id"] = rows[4]["baby_nhs_number"] + " !"  # mis-keyed: must not be echoed
    ingest_stack.upload("RX1", "pii.csv", to_bytes(rows, "pii.csv"))
    ingest_stack.run()

    # Every log record with all its structured keys, and what was printed (the EMF metrics).
    logs = [json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert any('"file processed"' in line for line in logs)
    texts = [
        json.dumps(ingest_stack.report("RX1", "pii.csv")),
        ingest_stack.rejected_csv("RX1", "pii.csv"),
        json.dumps(ingest_stack.drain(ingest_stack.events_queue_url)),
        *logs,
        capsys.readouterr().out,
    ]
    personal = {row[key].strip("\x07") for row in rows[:5] for key in PERSONAL_FIELDS if row[key]}
    for text in texts:
        for value in personal:
            assert value not in text
    rejected = list(csv.DictReader(io.StringIO(ingest_stack.rejected_csv("RX1", "pii.csv"))))
    assert [(r["row"], r["code"]) for r in rejected] == [
        ("1", "NHS_NUMBER_CHECKSUM"),
        ("2", "TEXT_CONTROL_CHARACTERS"),
        ("3", "POSTCODE_INVALID"),
        ("4", "DATE_IN_FUTURE"),
        ("5", "NOTIFICATION_ID_INVALID"),
    ]
    assert rejected[4]["notification_id"] == ""


def test_amend_and_cancel_reach_the_authority_in_file_order(ingest_stack, rows_factory):
    [new] = rows_factory(1, today(), districts={LEEDS: 1})
    new["notification_id"] = "N-1"
    amend = new | {
        "notification_id": "A-2",
        "notification_type": "AMEND",
        "original_notification_id": new["notification_id"],
        "birth_weight_grams": "3510",
    }
    cancel = new | {
        "notification_id": "C-3",
        "notification_type": "CANCEL",
        "original_notification_id": new["notification_id"],
    }
    others = rows_factory(25, today(), districts={LEEDS: 1}, seed=99)
    rows = [new, *others[:12], amend, *others[12:], cancel]
    ingest_stack.upload("RX1", "chain.csv", to_bytes(rows, "chain.csv"))
    ingest_stack.run()

    bodies = ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])
    chain = [b for b in bodies if b["_attributes"]["MessageGroupId"] == f"RX1:{new['notification_id']}"]
    assert [(b["notification_type"], b["notification_id"]) for b in chain] == [
        ("NEW", new["notification_id"]),
        ("AMEND", "A-2"),
        ("CANCEL", "C-3"),
    ]
    assert chain[1]["original_notification_id"] == new["notification_id"]
    assert chain[1]["record"]["birth_weight_grams"] == 3510
    [leeds] = ingest_stack.report("RX1", "chain.csv")["outcome"]["authorities"]
    assert (leeds["new"], leeds["amend"], leeds["cancel"]) == (26, 1, 1)


@pytest.mark.parametrize("name", ["births.csv.gz", "births.jsonl", "births.jsonl.gz"])
def test_gzip_and_json_lines_are_read_like_csv(ingest_stack, rows_factory, name):
    rows = rows_factory(30, today(), districts={CAMDEN: 1})
    rows[0]["gestation_weeks"] = "61"
    ingest_stack.upload("RX2", name, to_bytes(rows, name))
    ingest_stack.run()

    outcome = ingest_stack.report("RX2", name)["outcome"]
    assert_balanced(outcome)
    assert (outcome["rows_in"], outcome["forwarded"], outcome["rejected"]) == (30, 29, 1)
    assert len(ingest_stack.drain(ingest_stack.authority_queue_urls[CAMDEN])) == 29


def test_csv_with_bom_crlf_quoted_commas_and_newlines(ingest_stack, rows_factory):
    rows = rows_factory(3, today(), districts={LEEDS: 1})
    rows[0]["address_line_1"] = "Flat 2, 17 Acorn Way\nChapel Allerton"
    rows[1]["mother_family_name"] = 'O"Neill, Smith'
    data = b"\xef\xbb\xbf" + to_bytes(rows, "x.csv")
    assert b"\r\n" in data
    ingest_stack.upload("RX1", "quoted.csv", data)
    ingest_stack.run()

    assert ingest_stack.report("RX1", "quoted.csv")["outcome"]["forwarded"] == 3
    records = {b["notification_id"]: b["record"] for b in ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])}
    assert records[rows[0]["notification_id"]]["address_line_1"] == "Flat 2, 17 Acorn Way, Chapel Allerton"
    assert records[rows[1]["notification_id"]]["mother_family_name"] == 'O"Neill, Smith'


def test_duplicate_event_and_reupload_forward_nothing_twice(ingest_stack, rows_factory):
    rows = rows_factory(15, today(), districts={LEEDS: 1})
    body = to_bytes(rows, "a.csv")
    ingest_stack.upload("RX1", "first.csv", body)
    [message] = ingest_stack.sqs.receive_message(QueueUrl=ingest_stack.ingest_queue_url, VisibilityTimeout=0)[
        "Messages"
    ]
    ingest_stack.sqs.send_message(QueueUrl=ingest_stack.ingest_queue_url, MessageBody=message["Body"])  # S3 resends
    ingest_stack.run()
    assert len(ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])) == 15
    assert len(ingest_stack.drain(ingest_stack.events_queue_url)) == 1

    ingest_stack.upload("RX1", "again.csv", body)
    ingest_stack.run()
    assert ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS]) == []
    [first] = ingest_stack.reports("RX1", "first.csv")
    report = ingest_stack.report("RX1", "again.csv")
    assert report["status"] == "DUPLICATE" and report["file_error"] is None
    assert report["duplicate_of"] == {"key": "inbound/RX1/first.csv", "report_key": first["report_key"]}
    [event] = ingest_stack.drain(ingest_stack.events_queue_url)
    assert event["status"] == "DUPLICATE"


@pytest.mark.parametrize(
    ("trust", "name", "body", "code"),
    [
        ("RZZ", "a.csv", None, "FILE_UNKNOWN_TRUST"),
        ("RX1", "a.xlsx", None, "FILE_UNSUPPORTED_TYPE"),
        ("RX1", "a.csv", b"", "FILE_EMPTY"),
        ("RX1", "a.csv", b"notification_id,postcode\r\nN1,LS1 4AP\r\n", "FILE_MISSING_COLUMNS"),
        ("RX1", "a.csv", "notification_id\r\nN\xe91\r\n".encode("latin-1"), "FILE_ENCODING"),
        ("RX1", "a.csv.gz", b"not gzip at all", "FILE_NOT_GZIP"),
        ("RX1", "a.jsonl", b"notification_id,postcode\n", "FILE_NOT_JSONL"),
    ],
)
def test_file_level_problems_reject_the_file_with_one_reason(ingest_stack, rows_factory, trust, name, body, code):
    if body is None:
        body = to_bytes(rows_factory(3, today()), "x.csv")
    ingest_stack.upload(trust, name, body)
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    report = ingest_stack.report(trust, name)
    assert report["status"] == "REJECTED"
    assert report["file_error"]["code"] == code
    assert report["outcome"]["forwarded"] == 0
    assert all(not bodies for bodies in bodies_by_queue(ingest_stack).values())
    [event] = ingest_stack.drain(ingest_stack.events_queue_url)
    assert event["file_error"]["code"] == code


def test_a_bad_encoding_late_in_the_file_forwards_nothing(ingest_stack, rows_factory):
    rows = rows_factory(40, today(), districts={LEEDS: 1})
    data = to_bytes(rows, "x.csv") + "N99,NEW,caf\xe9\r\n".encode("latin-1")
    ingest_stack.upload("RX1", "late.csv", data)
    ingest_stack.run()
    assert ingest_stack.report("RX1", "late.csv")["file_error"]["code"] == "FILE_ENCODING"
    assert ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS]) == []


def test_gzip_content_is_hashed_as_uploaded(ingest_stack, rows_factory):
    rows = rows_factory(5, today(), districts={LEEDS: 1})
    data = gzip.compress(to_bytes(rows, "x.csv"))
    ingest_stack.upload("RX1", "z.csv.gz", data)
    ingest_stack.run()
    import hashlib

    assert ingest_stack.report("RX1", "z.csv.gz")["sha256"] == hashlib.sha256(data).hexdigest()


def test_nhs_numbers_with_spaces_and_a_multiple_birth(ingest_stack, rows_factory):
    twin_a, twin_b = rows_factory(2, today(), districts={LEEDS: 1})
    number = synthetic_nhs_number(__import__("random").Random(5))
    twin_a |= {
        "baby_nhs_number": f"{number[:3]} {number[3:6]} {number[6:]}",
        "birth_order": "1",
        "number_of_babies": "2",
    }
    twin_b |= {"birth_order": "2", "number_of_babies": "2", "postcode": twin_a["postcode"].lower().replace(" ", "")}
    ingest_stack.upload("RX1", "twins.csv", to_bytes([twin_a, twin_b], "x.csv"))
    ingest_stack.run()
    records = [b["record"] for b in ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])]
    assert ingest_stack.report("RX1", "twins.csv")["outcome"]["forwarded"] == 2
    assert records[0]["baby_nhs_number"] == number
    assert records[1]["postcode"] == twin_a["postcode"]
    assert [r["birth_order"] for r in records] == [1, 2]
