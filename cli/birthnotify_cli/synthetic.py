"""Synthetic upload files: invented people, NHS numbers from the 999 test range, real-shaped rows; and
the same rows as NEMS PDS Birth Notification bundles (FHIR STU3, XML or JSON, one per file).

Used by `birthnotify generate`, the demo, the benchmarks and the tests, so all exercise the same data.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree

from birthnotify.domain import nems
from birthnotify.domain.fhir import FHIR_NAMESPACE
from birthnotify.domain.record import RECORD_FIELDS
from birthnotify.shared.clock import LONDON

GIVEN_NAMES = [
    "Amara",
    "Bethan",
    "Chloe",
    "Dalia",
    "Esme",
    "Fatima",
    "Grace",
    "Hana",
    "Isla",
    "Jade",
    "Kezia",
    "Lena",
    "Maya",
    "Niamh",
    "Orla",
    "Priya",
    "Rosa",
    "Sana",
    "Tegan",
    "Uma",
    "Yara",
    "Zofia",
]
FAMILY_NAMES = [
    "Abbott",
    "Brennan",
    "Chowdhury",
    "Dlamini",
    "Evans",
    "Farrow",
    "Gill",
    "Hughes",
    "Ibrahim",
    "Jankowski",
    "Kaur",
    "Lomax",
    "Mensah",
    "Nowak",
    "Okafor",
    "Patel",
    "Quigley",
    "Rahman",
    "Sutcliffe",
    "Thornton",
    "Whitaker",
    "Yilmaz",
]
STREETS = [
    "Acorn Way",
    "Beech Grove",
    "Canal Street",
    "Dale View",
    "Elm Terrace",
    "Fern Close",
    "Garden Row",
    "Heather Lane",
    "Ivy Court",
    "Juniper Walk",
    "Kestrel Rise",
    "Linden Road",
    "Mill Lane",
]


def synthetic_nhs_number(rng: random.Random) -> str:
    """A number in the 999 test range that passes the modulus 11 check."""
    while True:
        digits = [9, 9, 9] + [rng.randint(0, 9) for _ in range(6)]
        remainder = sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        check = 11 - remainder
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def bad_checksum(number: str) -> str:
    """The same number with a check digit that fails modulus 11."""
    return number[:9] + str((int(number[9]) + 1) % 10)


def load_postcodes_by_district(path: str | Path) -> dict[str, list[str]]:
    """Council code (as the directory gives it) -> its postcodes, from a directory CSV."""
    by_district: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        district_column = next(c for c in ("lad26cd", "lad25cd", "laua") if c in (reader.fieldnames or []))
        for row in reader:
            by_district.setdefault(row[district_column], []).append(row["pcds"])
    return by_district


@dataclass
class Mix:
    """Fractions of rows that are deliberately invalid, withheld, held, or amend/cancel earlier ones."""

    invalid: float = 0.0
    withheld: float = 0.0
    held: float = 0.0
    amend_cancel: float = 0.0
    districts: dict[str, float] = field(default_factory=dict)
    """Weight per council code of where valid babies live (default: every district in the directory)."""


INVALID_KINDS = ("nhs_checksum", "future_dob", "postcode", "birth_order", "duplicate_id", "sex_code", "weight")
WITHHELD_KINDS = ("stillbirth", "restricted", "objection")
BUNDLE_INVALID_KINDS = tuple(kind for kind in INVALID_KINDS if kind != "duplicate_id")  # one bundle per file
BUNDLE_WITHHELD_KINDS = ("stillbirth", "restricted")  # a bundle cannot carry a sharing objection
BABY_NAMES = ["Alfie", "Bea", "Cai", "Dara", "Elio", "Freya", "Gus", "Ivo", "Juno", "Kit", "Luca", "Mabli", "Nico"]


class SyntheticRows:
    """Generates rows as the trust's system would export them (strings, some optional fields empty)."""

    def __init__(
        self,
        postcodes_by_district: dict[str, list[str]],
        upload_day: date,
        seed: int = 1,
        mix: Mix | None = None,
        held_districts: tuple[str, ...] = (),
        bundles: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.bundles = bundles
        """Rows a bundle can carry: NEW notifications with UUID ids, no sharing objections."""
        self._invalid_kinds = BUNDLE_INVALID_KINDS if bundles else INVALID_KINDS
        self._withheld_kinds = BUNDLE_WITHHELD_KINDS if bundles else WITHHELD_KINDS
        self.postcodes = postcodes_by_district
        self.upload_day = upload_day
        self.mix = mix or Mix()
        self.held_districts = held_districts
        weights = self.mix.districts or {d: 1.0 for d in postcodes_by_district if d not in held_districts}
        self._districts = list(weights)
        self._weights = list(weights.values())
        self._issued: list[dict[str, str]] = []

    def rows(self, count: int) -> Iterator[dict[str, str]]:
        for index in range(1, count + 1):
            yield self.row(index)

    def row(self, index: int) -> dict[str, str]:
        rng, mix = self.rng, self.mix
        roll = rng.random()
        if self._issued and roll < mix.amend_cancel and not self.bundles:
            return self._follow_up(index)
        row = self._valid_row(index)
        if self.bundles:
            row["notification_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        roll = rng.random()
        if roll < mix.invalid:
            self._spoil(row, rng.choice(self._invalid_kinds))
        elif roll < mix.invalid + mix.withheld:
            kind = rng.choice(self._withheld_kinds)
            row[
                "live_birth" if kind == "stillbirth" else "restricted" if kind == "restricted" else "sharing_objection"
            ] = "N" if kind == "stillbirth" else "Y"
        elif roll < mix.invalid + mix.withheld + mix.held:
            self._make_held(row)
        else:
            if len(self._issued) < 10_000:
                self._issued.append(row)
        return row

    def valid_row(self, index: int, district: str) -> dict[str, str]:
        """A valid, shareable row for a baby living in ``district`` (a council code the directory lists)."""
        return self._valid_row(index, district)

    def _valid_row(self, index: int, district: str | None = None) -> dict[str, str]:
        rng = self.rng
        district = district or rng.choices(self._districts, self._weights)[0]
        babies = 1 if rng.random() < 0.97 else 2
        dob = self.upload_day - timedelta(days=rng.randint(1, 60))
        mother_dob = dob - timedelta(days=rng.randint(18 * 365, 42 * 365))
        return {
            "notification_id": f"BN{index:08d}",
            "notification_type": "NEW",
            "original_notification_id": "",
            "baby_nhs_number": synthetic_nhs_number(rng),
            "baby_date_of_birth": dob.isoformat(),
            "baby_time_of_birth": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            "baby_sex": rng.choice("1122129"),
            "birth_weight_grams": str(rng.randint(1800, 4800)),
            "gestation_weeks": str(rng.randint(34, 42)),
            "birth_order": str(rng.randint(1, babies)),
            "number_of_babies": str(babies),
            "live_birth": "Y",
            "mother_nhs_number": synthetic_nhs_number(rng) if rng.random() < 0.9 else "",
            "mother_given_name": rng.choice(GIVEN_NAMES),
            "mother_family_name": rng.choice(FAMILY_NAMES),
            "mother_date_of_birth": mother_dob.isoformat(),
            "address_line_1": f"{rng.randint(1, 240)} {rng.choice(STREETS)}",
            "address_line_2": "",
            "address_line_3": "",
            "address_line_4": "",
            "postcode": rng.choice(self.postcodes[district]),
            "residence_la_code": district if rng.random() < 0.5 else "",
            "gp_practice_code": f"{rng.choice('ABCDEFGHJKLMNPY')}{rng.randint(10000, 99999)}",
            "restricted": "N",
            "sharing_objection": "N",
        }

    def _follow_up(self, index: int) -> dict[str, str]:
        original = self.rng.choice(self._issued)
        row = dict(original)
        row["notification_id"] = f"BN{index:08d}"
        row["original_notification_id"] = original["notification_id"]
        if self.rng.random() < 0.7:
            row["notification_type"] = "AMEND"
            row["birth_weight_grams"] = str(int(row["birth_weight_grams"]) + self.rng.randint(-50, 50))
        else:
            row["notification_type"] = "CANCEL"
            self._issued.remove(original)
        return row

    def _spoil(self, row: dict[str, str], kind: str) -> None:
        if kind == "nhs_checksum":
            row["baby_nhs_number"] = bad_checksum(row["baby_nhs_number"])
        elif kind == "future_dob":
            row["baby_date_of_birth"] = (self.upload_day + timedelta(days=3)).isoformat()
        elif kind == "postcode":
            row["postcode"] = "NOT A POSTCODE"
        elif kind == "birth_order":
            row["birth_order"], row["number_of_babies"] = "2", "1"
        elif kind == "duplicate_id" and self._issued:
            row["notification_id"] = self._issued[0]["notification_id"]
        elif kind == "sex_code":
            row["baby_sex"] = "F"
        else:
            row["birth_weight_grams"] = "3.4kg"

    def _make_held(self, row: dict[str, str]) -> None:
        choice = self.rng.random()
        if choice < 0.2 or not self.held_districts:
            row["postcode"], row["residence_la_code"] = "ZZ99 3VZ", ""
        else:
            district = self.rng.choice(self.held_districts)
            row["postcode"], row["residence_la_code"] = self.rng.choice(self.postcodes[district]), ""


def write_rows(handle: IO[str], rows: Iterator[dict[str, str]], fmt: str) -> int:
    """Write rows as CSV (header first) or JSON Lines; returns the number of rows written."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=list(RECORD_FIELDS), lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    else:
        for row in rows:
            handle.write(json.dumps({k: v for k, v in row.items() if v != ""}) + "\n")
            count += 1
    return count


def write_file(path: str | Path, rows: Iterator[dict[str, str]]) -> int:
    """Write rows to ``path``; the format and compression follow its name (.csv, .jsonl, .gz)."""
    path = Path(path)
    name = path.name.lower()
    fmt = "jsonl" if name.removesuffix(".gz").endswith(".jsonl") else "csv"
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
            return write_rows(handle, rows, fmt)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        return write_rows(handle, rows, fmt)


def to_bytes(rows: list[dict[str, str]], name: str) -> bytes:
    """The bytes of an upload file named ``name`` holding ``rows`` (for tests and uploads)."""
    fmt = "jsonl" if name.lower().removesuffix(".gz").endswith(".jsonl") else "csv"
    text = io.StringIO(newline="")
    write_rows(text, iter(rows), fmt)
    data = text.getvalue().encode("utf-8")
    return gzip.compress(data, mtime=0) if name.lower().endswith(".gz") else data


# -- NEMS PDS Birth Notification bundles ------------------------------------------------------------------

BUNDLE_FORMATS = {"fhir-xml": ".xml", "fhir-json": ".json"}
_SEX_TO_GENDER = {sex: gender for gender, sex in nems.GENDER_TO_SEX.items()}
_STU3_CONFIDENTIALITY = "http://hl7.org/fhir/v3/Confidentiality"


def birth_notification_bundle(row: dict[str, str]) -> dict[str, Any]:
    """A row as the FHIR JSON of a PDS Birth Notification message, shaped as NHS Digital's published example
    (resources linked by urn:uuid references). Only NEW rows without a sharing objection have a bundle form."""
    if row.get("notification_type", "NEW") != "NEW" or row.get("sharing_objection") == "Y":
        raise ValueError("a bundle is a NEW notification and cannot carry a sharing objection")
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:birthnotify:synthetic:{row['notification_id']}")
    url = {
        name: f"urn:uuid:{uuid.uuid5(namespace, name)}"
        for name in (
            "header",
            "communication",
            "mother",
            "relation",
            "baby",
            "sender",
            "weight",
            "gestation",
            "births",
            "stillborn",
        )
    }
    baby_dob = date.fromisoformat(row["baby_date_of_birth"]) if _is_iso_date(row["baby_date_of_birth"]) else None

    def resource(key: str, resource_type: str, **content: Any) -> dict[str, Any]:
        return {"fullUrl": url[key], "resource": {"resourceType": resource_type, "id": url[key][9:], **content}}

    def observation(key: str, code: str, display: str, subject: str, **value: Any) -> dict[str, Any]:
        return resource(
            key,
            "Observation",
            status="final",
            code={"coding": [{"system": nems.SNOMED_CT, "code": code, "display": display}]},
            subject={"reference": url[subject]},
            **value,
        )

    mother: dict[str, Any] = {}
    if row.get("mother_nhs_number"):
        mother["identifier"] = [{"system": nems.NHS_NUMBER_SYSTEM, "value": row["mother_nhs_number"]}]
    mother["name"] = [{"use": "official", "family": row["mother_family_name"], "given": [row["mother_given_name"]]}]
    if row.get("mother_date_of_birth"):
        mother["birthDate"] = row["mother_date_of_birth"]
    if row.get("gp_practice_code"):
        mother["generalPractitioner"] = [
            {"reference": f"https://directory.spineservices.nhs.uk/STU3/Organization/{row['gp_practice_code']}"}
        ]
    mother["link"] = [{"other": {"reference": url["relation"]}, "type": "seealso"}]

    baby: dict[str, Any] = {
        "identifier": [{"system": nems.NHS_NUMBER_SYSTEM, "value": row["baby_nhs_number"]}],
        "name": [
            {
                "use": "official",
                "family": row["mother_family_name"],
                "given": [BABY_NAMES[int(row["baby_nhs_number"][-3:]) % len(BABY_NAMES)]],
            }
        ],
        "gender": _SEX_TO_GENDER.get(row["baby_sex"], row["baby_sex"]),
        "birthDate": row["baby_date_of_birth"],
    }
    if row.get("baby_time_of_birth") and baby_dob is not None:
        moment = datetime.combine(baby_dob, time.fromisoformat(row["baby_time_of_birth"]), tzinfo=LONDON)
        baby["_birthDate"] = {"extension": [{"url": nems.BIRTH_TIME_URL, "valueDateTime": moment.isoformat()}]}
    lines = [
        row[name] for name in ("address_line_1", "address_line_2", "address_line_3", "address_line_4") if row.get(name)
    ]
    baby["address"] = [{"use": "home", "line": lines, "postalCode": row["postcode"]}]
    baby["multipleBirthInteger"] = _number(row["birth_order"])
    if row.get("restricted") == "Y":
        baby["meta"] = {"security": [{"system": _STU3_CONFIDENTIALITY, "code": "R", "display": "restricted"}]}

    entries = [
        resource(
            "header",
            "MessageHeader",
            extension=[
                {
                    "url": nems.MESSAGE_EVENT_TYPE_URL,
                    "valueCodeableConcept": {
                        "coding": [
                            {
                                "system": "https://fhir.nhs.uk/STU3/CodeSystem/MessageEventType-1",
                                "code": "new",
                                "display": "New event message",
                            }
                        ]
                    },
                }
            ],
            event={
                "system": "https://fhir.nhs.uk/STU3/CodeSystem/EventType-1",
                "code": nems.EVENT_CODE,
                "display": "PDS Birth Notification",
            },
            timestamp=f"{row['baby_date_of_birth']}T23:00:00+00:00",
            source={"endpoint": "urn:nhs:addressing:asid:999999999999"},
            responsible={"reference": url["sender"]},
            focus={"reference": url["communication"]},
        ),
        resource("communication", "Communication", status="completed", subject={"reference": url["mother"]}),
        resource("mother", "Patient", **mother),
        resource(
            "relation",
            "RelatedPerson",
            patient={"reference": url["baby"]},
            relationship={
                "coding": [{"system": "http://hl7.org/fhir/v3/RoleCode", "code": "NMTH", "display": "natural mother"}]
            },
        ),
        resource("baby", "Patient", **baby),
        resource(
            "sender", "Organization", identifier=[{"system": nems.ODS_SYSTEM, "value": "X26"}]
        ),  # NHS Digital's test ODS code
        observation(
            "weight",
            nems.BIRTH_WEIGHT,
            "Birth weight",
            "baby",
            valueQuantity={
                "value": _number(row["birth_weight_grams"]),
                "unit": "gram",
                "system": "http://unitsofmeasure.org",
                "code": "g",
            },
        ),
        observation(
            "gestation",
            nems.GESTATION,
            "Length of gestation at birth",
            "baby",
            valueQuantity={
                "value": _number(row["gestation_weeks"]),
                "unit": "week",
                "system": "http://unitsofmeasure.org",
                "code": "wk",
            },
        ),
        observation(
            "births",
            nems.NUMBER_OF_BIRTHS,
            "Total number of registerable births at delivery",
            "mother",
            valueQuantity={"value": _number(row["number_of_babies"])},
        ),
        observation(
            "stillborn",
            nems.STILLBIRTH,
            "Stillbirth",
            "baby",
            valueCodeableConcept={
                "coding": [
                    {"system": nems.STILLBORN_INDICATOR_SYSTEM, "code": "1" if row["live_birth"] == "Y" else "2"}
                ]
            },
        ),
    ]
    return {"resourceType": "Bundle", "id": row["notification_id"], "type": "message", "entry": entries}


def _is_iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _number(text: str) -> int | str:
    """A JSON number where the row has digits; a spoiled value stays text (and is then invalid FHIR)."""
    return int(text) if text.isascii() and text.isdigit() else text


def bundle_xml(bundle: dict[str, Any]) -> str:
    """FHIR JSON as FHIR XML: properties become elements in order, primitives ``value`` attributes, a
    ``_name`` companion the primitive's children, an extension's ``url`` an attribute."""
    root = ElementTree.Element(bundle["resourceType"], xmlns=FHIR_NAMESPACE)
    _xml_children(root, bundle)
    ElementTree.indent(root, space="  ")
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def _xml_children(parent: ElementTree.Element, content: dict[str, Any]) -> None:
    for name, value in content.items():
        if name in ("resourceType", "url") or name.startswith("_"):
            continue
        companions = content.get(f"_{name}")
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            child = ElementTree.SubElement(parent, name)
            if isinstance(item, dict) and "resourceType" in item:  # an entry's resource
                inner = ElementTree.SubElement(child, item["resourceType"])
                _xml_children(inner, item)
            elif isinstance(item, dict):
                if "url" in item:
                    child.set("url", item["url"])
                _xml_children(child, item)
            else:
                child.set("value", str(item).lower() if isinstance(item, bool) else str(item))
                companion = companions[index] if isinstance(companions, list) else companions
                if isinstance(companion, dict):
                    _xml_children(child, companion)


def bundle_bytes(row: dict[str, str], fmt: str) -> bytes:
    """One row as a bundle file's content, ``fhir-xml`` or ``fhir-json``."""
    bundle = birth_notification_bundle(row)
    text = bundle_xml(bundle) if fmt == "fhir-xml" else json.dumps(bundle, indent=2) + "\n"
    return text.encode("utf-8")


def write_bundles(output: Path, rows: Iterator[dict[str, str]], fmt: str) -> list[Path]:
    """One bundle file per row: ``output`` itself when it names a file (.xml, .json, optionally .gz) and
    there is one row, else ``output/<notification id>.xml|.json``."""
    rows = list(rows)
    suffix = BUNDLE_FORMATS[fmt]
    if output.name.lower().removesuffix(".gz").endswith(suffix) and len(rows) == 1:
        targets = [output]
    else:
        output.mkdir(parents=True, exist_ok=True)
        targets = [output / f"{row['notification_id']}{suffix}" for row in rows]
    for target, row in zip(targets, rows, strict=True):
        data = bundle_bytes(row, fmt)
        target.write_bytes(gzip.compress(data, mtime=0) if target.name.lower().endswith(".gz") else data)
    return targets
