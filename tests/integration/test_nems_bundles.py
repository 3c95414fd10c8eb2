"""NEMS PDS Birth Notification bundles (FHIR XML and JSON, one per file) through the real ingest handler on
moto, each also checked by `birthnotify validate` (run_both): the same validation, routing, withholding and
agreements as a CSV row, errors naming the FHIR element, and hostile XML refused before it is expanded."""

from __future__ import annotations

import copy
import gzip
import io
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from birthnotify.domain.nems import FIELD_SOURCES
from birthnotify.domain.reader import FileKind, FileRejected, scan_file
from birthnotify.domain.record import RECORD_FIELDS
from birthnotify_cli.synthetic import birth_notification_bundle, bundle_bytes, bundle_xml
from ingest_support import REGISTRY_PATH, ROOT
from test_hostile_input import LEEDS, REGISTRY, csv_bytes, errors_by_row, forwarded_ids, run_both, today

EXAMPLE = ROOT / "docs" / "examples" / "nems" / "BirthNotificationWithMother.xml"
EXAMPLE_BIRTH_DAY = "2017-10-02"


def published_example(days_old: int = 3) -> bytes:
    """NHS Digital's example, its baby's birth date (and the dates written on that day) moved to a recent day
    so it is inside the notification window; nothing else changed."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.count(EXAMPLE_BIRTH_DAY) == 4  # birthDate, birth time, message timestamp, the mother's registration
    return text.replace(EXAMPLE_BIRTH_DAY, (today() - timedelta(days=days_old)).isoformat()).encode("utf-8")


def encoded(bundle: dict, name: str) -> bytes:
    data = (bundle_xml(bundle) if ".xml" in name else json.dumps(bundle)).encode("utf-8")
    return gzip.compress(data, mtime=0) if name.endswith(".gz") else data


def resource(bundle: dict, resource_type: str, index: int = 0) -> dict:
    """A resource of the bundle by type (tests only: the reader finds resources by reference)."""
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type][index]


def mother(bundle: dict) -> dict:
    return resource(bundle, "Patient", 0)


def baby(bundle: dict) -> dict:
    return resource(bundle, "Patient", 1)


def observation(bundle: dict, code: str) -> dict:
    return next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["coding"][0]["code"] == code
    )


def leeds_bundle(rows_factory, seed: int) -> tuple[dict, dict]:
    [row] = rows_factory(1, today(), districts={LEEDS: 1}, seed=seed)
    return row, birth_notification_bundle(row)


def drain_leeds(stack) -> list[dict]:
    return stack.drain(stack.authority_queue_urls[LEEDS])


def test_the_mapping_names_every_field_of_the_contract_once():
    assert tuple(source.field for source in FIELD_SOURCES) == RECORD_FIELDS


# -- generated bundles, XML and JSON --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["birth.xml", "birth.json", "birth.xml.gz", "birth.json.gz"])
def test_a_generated_bundle_reaches_its_council_with_exactly_its_csv_rows_record(
    ingest_stack, rows_factory, tmp_path, name
):
    row, _ = leeds_bundle(rows_factory, seed=41)
    run_both(ingest_stack, tmp_path, "RX1", "same-birth.csv", csv_bytes([row]))
    [as_csv] = drain_leeds(ingest_stack)
    body = bundle_bytes(row, "fhir-xml" if ".xml" in name else "fhir-json")
    body = gzip.compress(body, mtime=0) if name.endswith(".gz") else body

    report = run_both(ingest_stack, tmp_path, "RX1", name, body)

    assert report["status"] == "PROCESSED" and report["errors"] == [] and report["warnings"] == []
    outcome = report["outcome"]
    assert (outcome["rows_in"], outcome["forwarded"]) == (1, 1)
    [as_bundle] = drain_leeds(ingest_stack)
    assert as_bundle["record"] == as_csv["record"]
    assert (as_bundle["notification_id"], as_bundle["notification_type"]) == (row["notification_id"], "NEW")
    assert as_bundle["source"]["row"] == 1 and as_bundle["source"]["key"] == f"inbound/RX1/{name}"


def test_generated_xml_and_json_of_one_birth_read_the_same(rows_factory, tmp_path):
    from birthnotify.application.offline import check_file
    from birthnotify.domain.postcodes import PostcodeDirectory

    postcodes = PostcodeDirectory.load(REGISTRY_PATH.parent / "postcodes.csv", REGISTRY.postcode_directory)
    row, bundle = leeds_bundle(rows_factory, seed=42)
    results = []
    for name in ("b.xml", "b.json"):
        (tmp_path / name).write_bytes(encoded(bundle, name))
        results.append(
            check_file(
                tmp_path / name, trust_ods_code="RX1", registry=REGISTRY, postcodes=postcodes, upload_day=today()
            )
        )
    assert results[0].outcome == results[1].outcome and results[0].outcome.forwarded == 1


# -- the mother ------------------------------------------------------------------------------------------------


def _no_subject(bundle: dict) -> None:
    del resource(bundle, "Communication")["subject"]


def _no_mother(bundle: dict) -> None:
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"] is not mother(bundle)]


def _no_names(bundle: dict) -> None:
    del mother(bundle)["name"]


def _no_link(bundle: dict) -> None:
    del mother(bundle)["link"]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_no_subject, [("Communication.subject", "REQUIRED")]),
        (_no_mother, [("Communication.subject", "REFERENCE_UNRESOLVED")]),
        (_no_link, [("mother Patient.link", "REQUIRED")]),
        (_no_names, [("mother Patient.name.given", "REQUIRED"), ("mother Patient.name.family", "REQUIRED")]),
    ],
)
def test_a_bundle_without_its_mother_is_rejected_naming_what_is_missing(
    ingest_stack, rows_factory, tmp_path, damage, expected
):
    row, bundle = leeds_bundle(rows_factory, seed=43)
    damage(bundle)
    report = run_both(ingest_stack, tmp_path, "RX1", "no-mother.json", encoded(bundle, "x.json"))

    assert report["outcome"]["rows_in"] == 1 and report["outcome"]["rejected"] == 1
    assert sorted(errors_by_row(report)[1]) == sorted(expected)
    assert {e["notification_id"] for e in report["errors"]} == {row["notification_id"]}
    assert forwarded_ids(ingest_stack) == Counter()


def test_a_mother_registered_without_her_nhs_number_or_birth_date_is_still_forwarded(
    ingest_stack, rows_factory, tmp_path
):
    # As NEMS sends a birth registered without the mother's complete details.
    row, bundle = leeds_bundle(rows_factory, seed=44)
    del mother(bundle)["identifier"], mother(bundle)["birthDate"]
    report = run_both(ingest_stack, tmp_path, "RX1", "partial-mother.xml", encoded(bundle, "x.xml"))

    assert report["outcome"]["forwarded"] == 1 and report["errors"] == [] and report["warnings"] == []
    [message] = drain_leeds(ingest_stack)
    assert "mother_nhs_number" not in message["record"]
    assert message["record"]["mother_family_name"] == row["mother_family_name"]


# -- withheld ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["2", "3", "4"])
def test_a_stillborn_indicator_withholds_the_bundle(ingest_stack, rows_factory, tmp_path, code):
    _, bundle = leeds_bundle(rows_factory, seed=45)
    observation(bundle, "237364002")["valueCodeableConcept"]["coding"][0]["code"] = code
    report = run_both(ingest_stack, tmp_path, "RX1", "stillbirth.xml", encoded(bundle, "x.xml"))

    assert report["outcome"]["withheld_by_reason"] == {"STILLBIRTH": 1}
    assert forwarded_ids(ingest_stack) == Counter() and ingest_stack.held() == []


def _bundle_label(bundle: dict, code: str) -> None:
    bundle["meta"] = {"security": [{"system": "http://hl7.org/fhir/v3/Confidentiality", "code": code}]}


def _mother_label(bundle: dict, code: str) -> None:
    mother(bundle)["meta"] = {
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": code}]
    }


@pytest.mark.parametrize(
    ("label", "code", "withheld"),
    [
        (_bundle_label, "R", True),
        (_bundle_label, "V", True),
        (_mother_label, "R", True),
        (_mother_label, "V", True),
        (_bundle_label, "N", False),
    ],
)
def test_a_restricted_security_label_withholds_the_bundle(ingest_stack, rows_factory, tmp_path, label, code, withheld):
    row, bundle = leeds_bundle(rows_factory, seed=46)
    label(bundle, code)
    report = run_both(ingest_stack, tmp_path, "RX1", "label.json", encoded(bundle, "x.json"))

    if withheld:
        assert report["outcome"]["withheld_by_reason"] == {"RESTRICTED": 1}
        assert forwarded_ids(ingest_stack) == Counter()
    else:
        assert forwarded_ids(ingest_stack) == Counter({row["notification_id"]: 1})


# -- errors name the element --------------------------------------------------------------------------------------


def _set(path: str, value: object):
    def change(bundle: dict) -> None:
        owner, key = path.split(".", 1)
        target = {"baby": baby, "mother": mother}.get(owner)
        place = target(bundle) if target else observation(bundle, owner)
        *parents, last = key.split(".")
        for part in parents:
            place = place[int(part)] if part.isdigit() else place[part]
        if value is None:
            del place[last]
        else:
            place[last] = value

    return change


def _second_weight(bundle: dict) -> None:
    entry = copy.deepcopy(next(e for e in bundle["entry"] if e["resource"] is observation(bundle, "364589006")))
    entry["fullUrl"] += "0"
    bundle["entry"].append(entry)


def _event_type(code: str):
    def change(bundle: dict) -> None:
        resource(bundle, "MessageHeader")["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = code

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set("baby.birthDate", "2026"), ("baby Patient.birthDate", "DATE_INVALID")),
        (_set("baby.gender", "F"), ("baby Patient.gender", "SEX_CODE_INVALID")),
        (_set("baby.identifier", None), ("baby Patient.identifier", "REQUIRED")),
        (_set("baby.address.0.postalCode", "NOT A POSTCODE"), ("baby Patient.address.postalCode", "POSTCODE_INVALID")),
        (_set("baby.multipleBirthInteger", 3), ("baby Patient.multipleBirthInteger", "BIRTH_ORDER_EXCEEDS_BABIES")),
        (
            _set("364589006.valueQuantity.value", 90000),
            ("Observation 364589006 (birth weight).valueQuantity", "OUT_OF_RANGE"),
        ),
        (
            _set("364589006.valueQuantity.code", "lb"),
            ("Observation 364589006 (birth weight).valueQuantity", "NUMBER_INVALID"),
        ),
        (_second_weight, ("Observation 364589006 (birth weight).valueQuantity", "ROW_DUPLICATE_FIELD")),
        (
            _set("237364002.valueCodeableConcept.coding.0.code", "9"),
            ("Observation 237364002 (stillborn indicator).valueCodeableConcept", "FLAG_INVALID"),
        ),
        (_event_type("update"), ("MessageHeader.extension(messageEventType)", "NOTIFICATION_TYPE_INVALID")),
    ],
)
def test_an_error_in_a_bundle_names_its_fhir_element_with_the_contracts_code(
    ingest_stack, rows_factory, tmp_path, change, expected
):
    _, bundle = leeds_bundle(rows_factory, seed=47)
    change(bundle)
    report = run_both(ingest_stack, tmp_path, "RX1", "named.xml", encoded(bundle, "x.xml"))

    assert errors_by_row(report) == {1: [expected]}
    assert forwarded_ids(ingest_stack) == Counter()


def test_an_invalid_optional_detail_in_a_bundle_is_left_out_with_a_warning_naming_its_element(
    ingest_stack, rows_factory, tmp_path
):
    row, bundle = leeds_bundle(rows_factory, seed=48)
    mother(bundle)["generalPractitioner"] = [{"reference": "Organization/not-in-this-bundle"}]
    baby(bundle)["_birthDate"]["extension"][0]["valueDateTime"] = "2020-01-01T09:00:00+00:00"  # another day
    report = run_both(ingest_stack, tmp_path, "RX1", "details.json", encoded(bundle, "x.json"))

    assert report["outcome"]["forwarded"] == 1 and report["outcome"]["rows_with_warnings"] == 1
    assert sorted((w["field"], w["code"]) for w in report["warnings"]) == [
        ("baby Patient.birthDate.extension(patient-birthTime)", "TIME_INVALID"),
        ("mother Patient.generalPractitioner", "ODS_CODE_INVALID"),
    ]
    [message] = drain_leeds(ingest_stack)
    assert "gp_practice_code" not in message["record"] and message["record"]["postcode"] == row["postcode"]


# -- not a birth notification -------------------------------------------------------------------------------------


def _change_of_address(bundle: dict) -> None:
    resource(bundle, "MessageHeader")["event"]["code"] = "pds-change-of-address-1"


def _collection(bundle: dict) -> None:
    bundle["type"] = "collection"


def _two_headers(bundle: dict) -> None:
    bundle["entry"].append(copy.deepcopy(bundle["entry"][0]) | {"fullUrl": "urn:uuid:second"})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (_change_of_address, 'event is "pds-change-of-address-1", not pds-birth-notification-1'),
        (_collection, 'Bundle.type is "collection", not "message"'),
        (_two_headers, "2 MessageHeader resources"),
    ],
)
def test_a_bundle_that_is_not_a_birth_notification_is_rejected(ingest_stack, rows_factory, tmp_path, change, says):
    _, bundle = leeds_bundle(rows_factory, seed=49)
    change(bundle)
    for name in ("other.xml", "other.json"):
        report = run_both(ingest_stack, tmp_path, "RX1", name, encoded(bundle, name))
        assert report["file_error"]["code"] == "FILE_NOT_BIRTH_NOTIFICATION"
        assert says in report["file_error"]["message"]
    assert forwarded_ids(ingest_stack) == Counter()


@pytest.mark.parametrize(
    ("name", "body", "code", "says"),
    [
        (
            "patient.json",
            b'{"resourceType": "Patient", "id": "p1"}',
            "FILE_NOT_BIRTH_NOTIFICATION",
            "not a FHIR Bundle",
        ),
        ("plain.xml", b"<Bundle><id value='x'/></Bundle>", "FILE_NOT_BIRTH_NOTIFICATION", "outside the FHIR namespace"),
        ("rows.xml", b"notification_id,notification_type\r\nN1,NEW\r\n", "FILE_NOT_XML", "line 1, column 1"),
        (
            "twice.json",
            b'{"resourceType": "Bundle", "type": "message", "type": "collection"}',
            "FILE_NOT_JSON",
            "same key twice",
        ),
        ("empty.xml", b"", "FILE_EMPTY", "empty"),
        (
            "rows.json",
            b'{"notification_id": "N1"}\n{"notification_id": "N2"}\n',
            "FILE_NOT_JSON",
            "rows as JSON Lines go in a .jsonl file",
        ),
        (
            "row.json",
            b'{"notification_id": "N1", "notification_type": "NEW"}',
            "FILE_NOT_BIRTH_NOTIFICATION",
            "rows as JSON Lines go in a .jsonl file",
        ),
    ],
)
def test_a_file_that_is_not_a_bundle_is_rejected_naming_why(ingest_stack, tmp_path, name, body, code, says):
    report = run_both(ingest_stack, tmp_path, "RX1", name, body)
    assert report["file_error"]["code"] == code and says in report["file_error"]["message"]


# -- hostile XML ----------------------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE Bundle [\n  <!ENTITY lol0 "lol">\n'
    + "".join(f'  <!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">\n' for n in range(1, 10))
    + ']>\n<Bundle xmlns="http://hl7.org/fhir"><id value="&lol9;"/><type value="message"/></Bundle>\n'
).encode()
"""Nine levels of ten: 10^9 copies of "lol" (3 GB) if the entities were expanded."""


def external_entity(target: Path) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE Bundle [<!ENTITY secret SYSTEM "file://{target}">]>\n'
        '<Bundle xmlns="http://hl7.org/fhir"><id value="&secret;"/><type value="message"/></Bundle>\n'
    ).encode()


def test_a_billion_laughs_is_refused_before_anything_is_expanded(ingest_stack, tmp_path):
    assert len(BILLION_LAUGHS) < 1024
    for name, body in (("laughs.xml", BILLION_LAUGHS), ("laughs.xml.gz", gzip.compress(BILLION_LAUGHS))):
        report = run_both(ingest_stack, tmp_path, "RX1", name, body)
        assert report["file_error"]["code"] == "FILE_XML_DTD_FORBIDDEN"
        assert "nothing in it was read" in report["file_error"]["message"]
        assert report["outcome"]["rows_in"] == 0


def refused_with_peak_memory(body: bytes, name: str) -> tuple[str, int]:
    """The first pass over a file it refuses: the code, and the peak of Python allocations on the way."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(FileRejected) as rejected:
            scan_file(lambda: io.BytesIO(body), FileKind.from_name(name), 200 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return rejected.value.code.value, peak


def test_refusing_a_billion_laughs_keeps_memory_flat():
    code, peak = refused_with_peak_memory(BILLION_LAUGHS, "x.xml")
    assert code == "FILE_XML_DTD_FORBIDDEN"
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MB of Python allocations (expanded, it would be 3 GB)"


def test_an_external_entity_is_never_read(ingest_stack, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("MARKER-7f3a-not-to-be-read")
    for name, body in (
        ("xxe.xml", external_entity(secret)),
        (
            "dtd.xml",
            b'<?xml version="1.0"?>\n<!DOCTYPE Bundle SYSTEM "http://127.0.0.1:9/x.dtd">\n'
            b'<Bundle xmlns="http://hl7.org/fhir"/>\n',
        ),
    ):
        report = run_both(ingest_stack, tmp_path, "RX1", name, body)
        assert report["file_error"]["code"] == "FILE_XML_DTD_FORBIDDEN"
        assert "MARKER" not in json.dumps(report)
    events = ingest_stack.drain(ingest_stack.events_queue_url)
    assert len(events) == 2 and "MARKER" not in json.dumps(events)


def test_a_gzip_bomb_named_as_a_bundle_stops_at_the_bundle_limit(ingest_stack, tmp_path):
    bomb = gzip.compress(b" " * (64 * 2**20), compresslevel=9, mtime=0)  # 64 MB of spaces, 64 kB gzipped
    report = run_both(ingest_stack, tmp_path, "RX1", "bomb.xml.gz", bomb)
    assert report["file_error"]["code"] == "FILE_TOO_LARGE"
    assert "at most 1,024 kB once decompressed" in report["file_error"]["message"]
    code, peak = refused_with_peak_memory(bomb, "x.xml.gz")
    assert code == "FILE_TOO_LARGE" and peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MB"


# -- the published example ---------------------------------------------------------------------------------------


def test_the_published_example_reaches_leeds_with_exactly_its_agreements_fields(ingest_stack, tmp_path):
    report = run_both(ingest_stack, tmp_path, "RX1", "BirthNotificationWithMother.xml", published_example())

    outcome = report["outcome"]
    assert (outcome["rows_in"], outcome["forwarded"], outcome["rejected"]) == (1, 1, 0)
    [leeds] = outcome["authorities"]
    agreement = REGISTRY.authority(LEEDS).agreement_on(today())
    assert (leeds["gss_code"], leeds["agreement_id"], leeds["new"]) == (LEEDS, agreement.id, 1)
    # The mother's NHS number fails modulus 11: left out, and the trust told where and why (not what).
    assert [(w["row"], w["field"], w["code"]) for w in report["warnings"]] == [
        (1, "mother Patient.identifier", "NHS_NUMBER_CHECKSUM")
    ]
    assert "1112223330" not in json.dumps(report)

    [message] = drain_leeds(ingest_stack)
    assert message["agreement_id"] == agreement.id
    assert message["notification_id"] == "85b9d933-b3e2-41a7-a8f2-f5ee7be4ee82"
    record = message["record"]
    # Exactly the agreement's fields, less the ones the example lacks and the one left out.
    assert set(record) == set(agreement.shared_fields) - {"mother_nhs_number", "address_line_3", "address_line_4"}
    assert record == {
        "baby_nhs_number": "9912003888",
        "baby_date_of_birth": (today() - timedelta(days=3)).isoformat(),
        "baby_sex": "1",
        "birth_weight_grams": 3980,
        "gestation_weeks": 39,
        "birth_order": 1,
        "number_of_babies": 1,
        "mother_given_name": "Sally",
        "mother_family_name": "DAWKINS",
        "address_line_1": "4 Sandmoor Drive",
        "address_line_2": "LEEDS",
        "postcode": "LS17 7DF",
        "gp_practice_code": "B86056",
    }
    for queue in (url for gss, url in ingest_stack.authority_queue_urls.items() if gss != LEEDS):
        assert ingest_stack.drain(queue) == []
    assert ingest_stack.held() == []
