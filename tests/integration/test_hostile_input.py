"""Files a careless export or a hostile trust might send, through the real handler on moto: every one gets
a row- or file-level answer with a stable code and a message that names the real cause, one bad row never
costs the others, and `birthnotify validate` gives exactly the pipeline's answer."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from birthnotify.application.offline import check_file
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.record import RECORD_FIELDS
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import load_postcodes_by_district
from ingest_support import INBOUND, REGISTRY_PATH

REGISTRY = load_registry(REGISTRY_PATH)
POSTCODES = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
LEEDS, KENT, CAMDEN, MAIDSTONE = "E08000035", "E10000016", "E09000007", "E07000110"


def today():
    return london_day(datetime.now(UTC))


def csv_bytes(rows: list[dict], header: list[str] | None = None) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    names = header or list(RECORD_FIELDS)
    writer.writerow(names)
    for row in rows:
        writer.writerow([row.get(name, "") for name in names])
    return text.getvalue().encode("utf-8")


def run_both(stack, tmp_path, trust: str, name: str, body: bytes) -> dict:
    """Upload and process the file, and check it offline; both must say the same. Returns the report."""
    stack.upload(trust, name, body)
    assert stack.run() == [{"batchItemFailures": []}]
    report = stack.report(trust, name)
    path = tmp_path / name
    path.write_bytes(body)
    offline = check_file(
        path,
        trust_ods_code=trust,
        registry=REGISTRY,
        upload_day=today(),
        postcodes=PostcodeDirectory.load(REGISTRY_PATH.parent / "postcodes.csv", REGISTRY.postcode_directory),
    )
    if report["status"] == "REJECTED":
        assert offline.rejection is not None
        assert (offline.rejection.code.value, offline.rejection.message) == (
            report["file_error"]["code"],
            report["file_error"]["message"],
        )
    else:
        assert offline.rejection is None
        assert [e.model_dump(mode="json") for e in offline.errors] == report["errors"]
        assert [w.model_dump(mode="json") for w in offline.warnings] == report["warnings"]
        assert offline.outcome.model_dump(mode="json") == report["outcome"]
        assert offline.ignored_columns == report["ignored_columns"]
    return report


def forwarded_ids(stack) -> Counter:
    return Counter(body["notification_id"] for url in stack.authority_queue_urls.values() for body in stack.drain(url))


def errors_by_row(report: dict) -> dict[int, list[tuple[str | None, str]]]:
    found: dict[int, list[tuple[str | None, str]]] = {}
    for error in report["errors"]:
        found.setdefault(error["row"], []).append((error["field"], error["code"]))
    return found


# -- one poison row never costs the others ------------------------------------------------------------


def test_a_lone_surrogate_in_json_lines_rejects_only_its_row(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(20, today(), districts={LEEDS: 1}, seed=21)
    rows[6]["mother_given_name"] = "Ava\ud800"  # half an emoji, as a JavaScript export cuts it
    rows[9]["ward\udc00"] = "x"  # and in an unknown key, which would otherwise be echoed in the report
    body = "".join(json.dumps({k: v for k, v in row.items() if v}) + "\n" for row in rows).encode()
    assert b"\\ud800" in body

    report = run_both(ingest_stack, tmp_path, "RX1", "poison.jsonl", body)

    assert errors_by_row(report) == {7: [("mother_given_name", "TEXT_CHARACTERS_INVALID")]}
    outcome = report["outcome"]
    assert (outcome["rows_in"], outcome["forwarded"], outcome["rejected"]) == (20, 19, 1)
    assert forwarded_ids(ingest_stack) == Counter(r["notification_id"] for i, r in enumerate(rows) if i != 6)
    assert report["ignored_columns"] == [] and report["ignored_names_not_listed"] == 1


def test_a_character_sqs_refuses_rejects_only_its_row(ingest_stack, rows_factory, tmp_path):
    # The emulated rule is AWS's: SQS refuses such a body outright.
    with pytest.raises(ingest_stack.sqs.exceptions.ClientError, match="InvalidMessageContents"):
        ingest_stack.sqs.send_message(QueueUrl=ingest_stack.events_queue_url, MessageBody="a\uffffb")
    rows = rows_factory(12, today(), districts={LEEDS: 1, CAMDEN: 1}, seed=22)
    rows[3]["address_line_1"] = "12 Orchard Close\uffff"
    rows[4]["mother_family_name"] = "Smith\ufffe"

    report = run_both(ingest_stack, tmp_path, "RX1", "nonchars.csv", csv_bytes(rows))

    assert errors_by_row(report) == {
        4: [("address_line_1", "TEXT_CHARACTERS_INVALID")],
        5: [("mother_family_name", "TEXT_CHARACTERS_INVALID")],
    }
    assert report["outcome"]["forwarded"] == 10
    assert sum(forwarded_ids(ingest_stack).values()) == 10


def test_an_unexpected_fault_in_one_row_becomes_that_rows_error_with_a_metric_and_a_log(
    ingest_stack, rows_factory, monkeypatch, capsys, caplog
):
    from birthnotify.domain.routing import Router

    rows = rows_factory(15, today(), districts={LEEDS: 1}, seed=23)
    poisoned = rows[5]["notification_id"]
    decide = Router.decide

    def faulty(self, record):
        if record.notification_id == poisoned:
            raise KeyError(record.mother_family_name)  # a bug whose message quotes the row
        return decide(self, record)

    monkeypatch.setattr(Router, "decide", faulty)
    ingest_stack.upload("RX1", "fault.csv", csv_bytes(rows))
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    report = ingest_stack.report("RX1", "fault.csv")
    [error] = report["errors"]
    assert (error["row"], error["notification_id"], error["code"]) == (6, poisoned, "ROW_UNPROCESSABLE")
    assert report["outcome"]["forwarded"] == 14
    [log] = [record for record in caplog.records if record.getMessage() == "row failed unexpectedly"]
    assert (log.levelname, log.row, log.notification_id, log.error) == ("ERROR", 6, poisoned, "KeyError")
    assert log.exc_info is None and rows[5]["mother_family_name"] not in str(vars(log))  # never the message
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [metrics] = [entry for entry in logged if "RowsUnprocessable" in entry]
    assert metrics["RowsUnprocessable"] == [1.0]


# -- the structure of the file is known before anything is sent -----------------------------------------


def test_a_stray_opening_quote_rejects_the_file_naming_where_it_opened(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(20, today(), districts={LEEDS: 1}, seed=24)
    body = csv_bytes(rows).decode().split("\r\n")
    body[5] = body[5].replace(",", ',"', 1)  # row 5 (line 6): a quote opens and never closes
    report = run_both(ingest_stack, tmp_path, "RX1", "quote.csv", "\r\n".join(body).encode())

    assert report["status"] == "REJECTED" and report["file_error"]["code"] == "FILE_NOT_CSV"
    assert report["file_error"]["message"].startswith("Row 5 (line 6) opens a quoted value")
    assert forwarded_ids(ingest_stack) == Counter()


def test_a_stray_quote_closed_rows_later_also_rejects_the_file(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(20, today(), districts={LEEDS: 1}, seed=25)
    lines = csv_bytes(rows).decode().split("\r\n")
    lines[5] = lines[5].replace(",", ',"', 1)  # opens on row 5 (line 6) ...
    lines[12] = lines[12].replace(",", '",', 1)  # ... and closes on line 13: rows 5-12 would read as one
    report = run_both(ingest_stack, tmp_path, "RX1", "quotes.csv", "\r\n".join(lines).encode())

    assert report["file_error"]["code"] == "FILE_NOT_CSV"
    assert report["file_error"]["message"].startswith("Row 5 (line 6) opens a quoted value")
    assert "lines 6-13 were read as one row" in report["file_error"]["message"]
    assert forwarded_ids(ingest_stack) == Counter()


def test_a_multi_line_address_in_quotes_is_one_row_and_rows_in_is_the_record_count(
    ingest_stack, rows_factory, tmp_path
):
    rows = rows_factory(8, today(), districts={LEEDS: 1}, seed=26)
    rows[2]["address_line_1"] = "Flat 2\r\n17 Acorn Way"
    report = run_both(ingest_stack, tmp_path, "RX1", "multi.csv", csv_bytes(rows))
    assert report["outcome"]["rows_in"] == 8 and report["outcome"]["forwarded"] == 8


# -- misdirection ------------------------------------------------------------------------------------------


def test_a_duplicated_column_rejects_the_file_before_anything_is_sent(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(20, today(), districts={LEEDS: 1, CAMDEN: 1}, seed=27)
    header = [*RECORD_FIELDS, "residence_la_code"]
    for row in rows:
        row["residence_la_code"] = ""
    lines = csv_bytes(rows, list(RECORD_FIELDS)).decode().split("\r\n")
    lines[0] = ",".join(header)
    lines[1:] = [line + "," + KENT if line else line for line in lines[1:]]

    report = run_both(ingest_stack, tmp_path, "RX1", "twice.csv", "\r\n".join(lines).encode())

    assert report["file_error"]["code"] == "FILE_DUPLICATE_COLUMNS"
    assert (
        f"residence_la_code (columns {RECORD_FIELDS.index('residence_la_code') + 1}, {len(RECORD_FIELDS) + 1})"
    ) in report["file_error"]["message"]
    assert forwarded_ids(ingest_stack) == Counter()


def test_a_repeated_json_key_rejects_its_row(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(6, today(), districts={LEEDS: 1}, seed=28)
    lines = [json.dumps({k: v for k, v in row.items() if v}) for row in rows]
    lines[2] = lines[2][:-1] + f', "Residence_LA_Code": "{KENT}"}}'  # a second spelling of the same field
    report = run_both(ingest_stack, tmp_path, "RX1", "keys.jsonl", ("\n".join(lines) + "\n").encode())

    assert errors_by_row(report) == {3: [("residence_la_code", "ROW_DUPLICATE_FIELD")]}
    assert forwarded_ids(ingest_stack) == Counter(r["notification_id"] for i, r in enumerate(rows) if i != 2)
    assert ingest_stack.drain(ingest_stack.authority_queue_urls[KENT]) == []


def test_a_council_code_that_contradicts_the_postcode_is_held_not_forwarded(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(10, today(), districts={LEEDS: 1}, seed=29)
    rows[0]["residence_la_code"] = KENT  # a Leeds postcode: which council is right is for a person to decide
    rows[1]["residence_la_code"] = MAIDSTONE
    rows[2]["residence_la_code"], rows[2]["postcode"] = MAIDSTONE, POSTCODES["E07000111"][0]  # both Kent
    rows[3]["residence_la_code"] = LEEDS  # agrees

    report = run_both(ingest_stack, tmp_path, "RX1", "conflict.csv", csv_bytes(rows))

    held = {(h["reason"], h["authority_gss_code"]): h["count"] for h in report["outcome"]["held_by_reason"]}
    assert held == {("RESIDENCE_CONFLICT", None): 2}
    kent = ingest_stack.drain(ingest_stack.authority_queue_urls[KENT])
    assert [body["notification_id"] for body in kent] == [rows[2]["notification_id"]]
    leeds = {body["notification_id"] for body in ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])}
    assert rows[0]["notification_id"] not in leeds and rows[1]["notification_id"] not in leeds
    held = ingest_stack.held()
    assert sorted(h.key.row for h in held) == [1, 2]
    assert {h.message.reason for h in held} == {"RESIDENCE_CONFLICT"}


def test_a_correction_before_its_original_is_rejected_naming_where_the_original_is(
    ingest_stack, rows_factory, tmp_path
):
    rows = rows_factory(6, today(), districts={LEEDS: 1}, seed=30)
    original = rows[4]
    cancel = dict(
        original,
        notification_id="BNX1",
        notification_type="CANCEL",
        original_notification_id=original["notification_id"],
    )
    amend = dict(
        original,
        notification_id="BNX2",
        notification_type="AMEND",
        original_notification_id=original["notification_id"],
    )
    later_amend = dict(amend, notification_id="BNX3")
    rows = [*rows[:2], cancel, amend, *rows[2:], later_amend]  # rows 3 and 4 correct row 7

    report = run_both(ingest_stack, tmp_path, "RX1", "order.csv", csv_bytes(rows))

    assert errors_by_row(report) == {
        3: [("original_notification_id", "CORRECTION_BEFORE_ORIGINAL")],
        4: [("original_notification_id", "CORRECTION_BEFORE_ORIGINAL")],
    }
    [message] = {e["message"] for e in report["errors"] if e["row"] == 3}
    assert "(row 7 of this file)" in message and message.startswith("This CANCEL comes before")
    leeds = ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])
    corrections = {original["notification_id"], "BNX1", "BNX2", "BNX3"}
    assert [b["notification_id"] for b in leeds if b["notification_id"] in corrections] == [
        original["notification_id"],
        "BNX3",
    ]


# -- exactly what the contract says --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("baby_date_of_birth", "2026-W45-1", "DATE_INVALID"),
        ("birth_weight_grams", "3_200", "NUMBER_INVALID"),
        ("birth_weight_grams", "+3200", "NUMBER_INVALID"),
        ("birth_weight_grams", "3200.0", "NUMBER_INVALID"),
        ("gestation_weeks", "\u0663\u0668", "NUMBER_INVALID"),  # Arabic-Indic digits
        ("live_birth", "yes", "FLAG_INVALID"),
        ("restricted", "no", "FLAG_INVALID"),
        ("residence_la_code", "E0800003\u0665", "GSS_CODE_INVALID"),
    ],
)
def test_only_the_documented_forms_are_accepted(ingest_stack, rows_factory, tmp_path, field, value, code):
    rows = rows_factory(3, today(), districts={LEEDS: 1}, seed=31)
    rows[1][field] = value
    report = run_both(ingest_stack, tmp_path, "RX1", "forms.csv", csv_bytes(rows))
    assert errors_by_row(report) == {2: [(field, code)]}


def test_places_outside_the_service_and_ended_councils_are_held_with_their_reason_never_rejected(
    ingest_stack, rows_factory, tmp_path
):
    """Scottish, Northern Irish, Channel Islands and Isle of Man codes and postcodes, an ended council split in
    two, and a council without an agreement: each row held with its own reason, the same offline."""
    places = [
        ("S12000036", "ZZ99 3VZ"),
        ("", POSTCODES["S12000036"][0]),
        ("N09000003", "BT1 1AA"),
        ("L99999999", "GY1 1AA"),
        ("", "JE2 3AB"),
        ("M99999999", "IM1 1AA"),
        ("E10000006", "ZZ99 3VZ"),
        ("E10000006", POSTCODES["E07000028"][0]),
        ("", POSTCODES["E08000003"][0]),
        ("W06000015", POSTCODES["W06000015"][0]),
    ]
    rows = rows_factory(len(places), today(), districts={LEEDS: 1}, seed=35)
    for row, (code, postcode) in zip(rows, places, strict=True):
        row["residence_la_code"], row["postcode"] = code, postcode.lower()
    report = run_both(ingest_stack, tmp_path, "RX1", "places.csv", csv_bytes(rows))
    assert report["errors"] == []
    held = {
        (h["reason"], h["authority_gss_code"], h["authority_name"]): h["count"]
        for h in report["outcome"]["held_by_reason"]
    }
    assert held == {
        ("OUTSIDE_SERVICE", None, None): 6,
        ("AMBIGUOUS_SUCCESSOR", "E10000006", "Cumbria County Council"): 1,
        ("NO_AGREEMENT", "E06000063", "Cumberland Council"): 1,  # the postcode decided
        ("NO_AGREEMENT", "E08000003", "Manchester City Council"): 1,
    }
    assert [a["gss_code"] for a in report["outcome"]["authorities"]] == ["W06000015"]  # a Welsh birth


def test_an_invalid_optional_detail_is_left_out_and_the_row_forwarded_with_a_warning(
    ingest_stack, rows_factory, tmp_path
):
    # Until issue 14, each of these rejected its row (baby_time_of_birth "0930" was a TIME_INVALID row error).
    rows = rows_factory(4, today(), districts={LEEDS: 1}, seed=38)
    rows[1]["baby_time_of_birth"] = "0930"
    rows[2]["mother_nhs_number"], rows[2]["gp_practice_code"] = "1112223330", "B8605"
    rows[3]["mother_date_of_birth"] = rows[3]["baby_date_of_birth"]  # a mother aged 0 at the birth
    report = run_both(ingest_stack, tmp_path, "RX1", "details.csv", csv_bytes(rows))

    outcome = report["outcome"]
    assert (outcome["forwarded"], outcome["rejected"], outcome["rows_with_warnings"]) == (4, 0, 3)
    assert outcome["warnings_by_code"] == {
        "TIME_INVALID": 1,
        "NHS_NUMBER_CHECKSUM": 1,
        "ODS_CODE_INVALID": 1,
        "MOTHER_AGE_IMPLAUSIBLE": 1,
    }
    assert [(w["row"], w["notification_id"], w["field"], w["code"]) for w in report["warnings"]] == [
        (2, rows[1]["notification_id"], "baby_time_of_birth", "TIME_INVALID"),
        (3, rows[2]["notification_id"], "mother_nhs_number", "NHS_NUMBER_CHECKSUM"),
        (3, rows[2]["notification_id"], "gp_practice_code", "ODS_CODE_INVALID"),
        (4, rows[3]["notification_id"], "mother_date_of_birth", "MOTHER_AGE_IMPLAUSIBLE"),
    ]
    assert "1112223330" not in json.dumps(report) and "B8605" not in json.dumps(report)
    leeds = {m["notification_id"]: m["record"] for m in ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])}
    assert "mother_nhs_number" not in leeds[rows[2]["notification_id"]]
    assert "gp_practice_code" not in leeds[rows[2]["notification_id"]]
    assert leeds[rows[0]["notification_id"]]["gp_practice_code"] == rows[0]["gp_practice_code"]


def test_a_bad_number_on_the_first_json_line_is_that_rows_error_not_the_files(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(5, today(), districts={LEEDS: 1}, seed=32)
    lines = [json.dumps({k: v for k, v in row.items() if v}) for row in rows]
    lines[0] = lines[0].replace(
        f'"birth_weight_grams": "{rows[0]["birth_weight_grams"]}"', '"birth_weight_grams": 1e999'
    )
    lines[1] = lines[1].replace(
        f'"birth_weight_grams": "{rows[1]["birth_weight_grams"]}"', f'"birth_weight_grams": {"9" * 5000}'
    )
    report = run_both(ingest_stack, tmp_path, "RX1", "numbers.jsonl", ("\n".join(lines) + "\n").encode())

    assert report["status"] == "PROCESSED"
    assert errors_by_row(report) == {1: [("birth_weight_grams", "NUMBER_INVALID")], 2: [(None, "ROW_MALFORMED")]}
    assert "a number has too many digits" in report["errors"][1]["message"]
    assert report["outcome"]["forwarded"] == 3


@pytest.mark.parametrize(
    ("name", "make", "code", "says"),
    [
        ("semi.csv", lambda b: b.replace(b",", b";"), "FILE_NOT_CSV", "separated by semicolons"),
        ("sep.csv", lambda b: b"sep=;\r\n" + b, "FILE_NOT_CSV", "separator hint"),
        ("packed.csv", lambda b: gzip.compress(b), "FILE_UNSUPPORTED_TYPE", "gzip-compressed but its name"),
        ("oneline.csv", lambda b: b"x" * (20 * 2**20), "FILE_LINE_TOO_LONG", "Line 1 is longer than 16 MB"),
        ("book.csv", lambda b: b"PK\x03\x04" + b, "FILE_UNSUPPORTED_TYPE", "ZIP archive"),
        ("array.jsonl", lambda b: json.dumps([{"notification_id": "N1"}]).encode(), "FILE_NOT_JSONL", "one JSON array"),
        ("nohead.csv", lambda b: b.split(b"\r\n", 1)[1], "FILE_MISSING_COLUMNS", "not a header"),
    ],
)
def test_each_whole_file_problem_names_its_real_cause(ingest_stack, rows_factory, tmp_path, name, make, code, says):
    body = make(csv_bytes(rows_factory(4, today(), districts={LEEDS: 1}, seed=33)))
    report = run_both(ingest_stack, tmp_path, "RX1", name, body)
    assert report["file_error"]["code"] == code and says in report["file_error"]["message"]


def test_a_ten_megabyte_field_is_a_row_error_naming_the_field_and_the_limit(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(4, today(), districts={LEEDS: 1}, seed=34)
    rows[2]["address_line_2"] = "a" * (10 * 2**20)
    report = run_both(ingest_stack, tmp_path, "RX1", "wide.csv", csv_bytes(rows))

    [error] = report["errors"]
    assert (error["row"], error["field"], error["code"]) == (3, "address_line_2", "TEXT_TOO_LONG")
    assert "10,485,760 characters" in error["message"] and "1,000" in error["message"]
    assert report["outcome"]["forwarded"] == 3


def test_only_names_that_look_like_columns_are_echoed_in_the_report(ingest_stack, rows_factory, tmp_path):
    rows = rows_factory(4, today(), districts={LEEDS: 1}, seed=35)
    objects = [{k: v for k, v in row.items() if v} | {"ward": "W1"} for row in rows]
    objects[1]["9990000018"] = {"mother_given_name": "Jane"}  # a misshapen export: data as a key
    objects[2]["Jane Doe"] = "x"
    objects[3]["olivia"] = "x"  # one row only: more likely data than a column
    body = "".join(json.dumps(o) + "\n" for o in objects).encode()
    report = run_both(ingest_stack, tmp_path, "RX1", "keys.jsonl", body)

    assert report["ignored_columns"] == ["ward"] and report["ignored_names_not_listed"] == 3
    text = json.dumps(report)
    assert "9990000018" not in text and "Jane" not in text and "olivia" not in text


def test_a_folder_marker_is_not_an_upload(ingest_stack):
    ingest_stack.s3.put_object(Bucket=INBOUND, Key="inbound/RX1/", Body=b"")
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    assert ingest_stack.s3.list_objects_v2(Bucket="test-reports").get("KeyCount", 0) == 0
    assert ingest_stack.drain(ingest_stack.events_queue_url) == []


# -- bombs ------------------------------------------------------------------------------------------------


def gzip_bomb(unit: bytes, units: int) -> bytes:
    """``units`` copies of ``unit``, gzipped (as concatenated members: valid gzip, built in milliseconds)."""
    member = gzip.compress(unit, compresslevel=9, mtime=0)
    return member * units


def test_a_gzip_bomb_is_rejected_as_too_large_without_inflating_it(ingest_stack, tmp_path):
    bomb = gzip_bomb(b"\0" * 2**20, 2048)  # 2 GiB once inflated
    assert len(bomb) < 3 * 2**20
    report = run_both(ingest_stack, tmp_path, "RX1", "bomb.csv.gz", bomb)
    assert report["file_error"]["code"] == "FILE_TOO_LARGE"
    assert "decompresses to more than the 200 MB limit" in report["file_error"]["message"]


def test_a_header_and_two_gigabytes_of_line_breaks_is_too_large_not_slowly_empty(ingest_stack, tmp_path):
    header = ",".join(RECORD_FIELDS).encode() + b"\r\n"
    bomb = gzip.compress(header, mtime=0) + gzip_bomb(b"\n" * 2**20, 2048)
    report = run_both(ingest_stack, tmp_path, "RX1", "newlines.csv.gz", bomb)
    assert report["file_error"]["code"] == "FILE_TOO_LARGE"


def test_inflating_a_bomb_keeps_memory_flat():
    import tracemalloc

    from birthnotify.domain.reader import FileKind, FileRejected, scan_file

    bomb = gzip_bomb(b"\0" * 2**20, 2048)
    tracemalloc.start()
    try:
        with pytest.raises(FileRejected) as rejected:
            scan_file(lambda: io.BytesIO(bomb), FileKind.from_name("x.csv.gz"), 200 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rejected.value.code.value == "FILE_TOO_LARGE"
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.1f} MB of Python allocations while inflating"


def test_uploads_to_a_bucket_without_versioning_are_still_told_apart(ingest_stack, rows_factory):
    # Without versioning, the event's sequencer tells a second upload of a key from a redelivered event.
    ingest_stack.s3.put_bucket_versioning(Bucket=INBOUND, VersioningConfiguration={"Status": "Suspended"})
    body = csv_bytes(rows_factory(3, today(), districts={LEEDS: 1}, seed=36))
    ingest_stack.upload("RX1", "plain.csv", body)
    ingest_stack.run()
    ingest_stack.upload("RX1", "plain.csv", body)
    ingest_stack.run()
    assert [r["status"] for r in ingest_stack.reports("RX1", "plain.csv")] == ["PROCESSED", "DUPLICATE"]
    assert sum(forwarded_ids(ingest_stack).values()) == 3


# -- uploads of one name --------------------------------------------------------------------------------------


def test_an_identical_reupload_to_the_same_key_is_a_duplicate_with_its_own_report(
    ingest_stack, notify_stack, rows_factory
):
    rows = rows_factory(12, today(), districts={LEEDS: 1, MAIDSTONE: 1}, seed=37)
    body = csv_bytes(rows)
    ingest_stack.upload("RX1", "same.csv", body)
    ingest_stack.run()
    notify_stack.run()
    ingest_stack.upload("RX1", "same.csv", body)  # the same key, a new version: S3's event carries its versionId
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    notify_stack.run()

    first, second = ingest_stack.reports("RX1", "same.csv")
    assert first["status"] == "PROCESSED" and first["outcome"]["forwarded"] == 12  # never overwritten
    assert second["status"] == "DUPLICATE" and second["report_key"] != first["report_key"]
    assert second["duplicate_of"] == {"key": "inbound/RX1/same.csv", "report_key": first["report_key"]}
    assert forwarded_ids(ingest_stack) == Counter(row["notification_id"] for row in rows)  # each once
    to_trust = [m for m in notify_stack.sent() if m.to == REGISTRY.trust("RX1").contact_emails]
    assert [m.subject for m in to_trust] == [
        "File processed: same.csv: 12 forwarded, 0 rejected",
        "Already processed: same.csv",
    ]
    assert "nothing in it was forwarded again" in to_trust[1].text and first["report_key"] in to_trust[1].text


def test_a_corrected_reupload_to_the_same_key_never_mixes_with_the_first_reports(ingest_stack, rows_factory):
    rows = rows_factory(10, today(), districts={LEEDS: 1}, seed=38)
    broken = [dict(row) for row in rows]
    broken[3]["postcode"] = "NOT A POSTCODE"
    ingest_stack.upload("RX1", "fix.csv", csv_bytes(broken))
    ingest_stack.run()
    corrected = [dict(row, notification_id=row["notification_id"] + "C") for row in rows[3:4]]
    ingest_stack.upload("RX1", "fix.csv", csv_bytes(corrected))
    ingest_stack.run()

    first, second = ingest_stack.reports("RX1", "fix.csv")
    assert first["outcome"]["rejected"] == 1 and first["rejected_rows_key"]
    assert second["status"] == "PROCESSED" and second["outcome"]["rejected"] == 0
    assert second["rejected_rows_key"] is None and second["errors"] == []
    folder = first["report_key"].rsplit("/", 1)[0]
    listed = sorted(
        item["Key"] for item in ingest_stack.s3.list_objects_v2(Bucket="test-reports", Prefix=folder + "/")["Contents"]
    )
    assert listed == sorted([first["report_key"], first["rejected_rows_key"], second["report_key"]])
