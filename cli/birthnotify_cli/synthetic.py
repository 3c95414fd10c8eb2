"""Synthetic upload files: invented people, NHS numbers from the 999 test range, real-shaped rows.

Used by `birthnotify generate`, the demo, the benchmarks and the tests, so all exercise the same data.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO

from birthnotify.domain.record import RECORD_FIELDS

GIVEN_NAMES = ["Amara", "Bethan", "Chloe", "Dalia", "Esme", "Fatima", "Grace", "Hana", "Isla", "Jade", "Kezia",
               "Lena", "Maya", "Niamh", "Orla", "Priya", "Rosa", "Sana", "Tegan", "Uma", "Yara", "Zofia"]
FAMILY_NAMES = ["Abbott", "Brennan", "Chowdhury", "Dlamini", "Evans", "Farrow", "Gill", "Hughes", "Ibrahim",
                "Jankowski", "Kaur", "Lomax", "Mensah", "Nowak", "Okafor", "Patel", "Quigley", "Rahman",
                "Sutcliffe", "Thornton", "Whitaker", "Yilmaz"]
STREETS = ["Acorn Way", "Beech Grove", "Canal Street", "Dale View", "Elm Terrace", "Fern Close", "Garden Row",
           "Heather Lane", "Ivy Court", "Juniper Walk", "Kestrel Rise", "Linden Road", "Mill Lane"]


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


class SyntheticRows:
    """Generates rows as the trust's system would export them (strings, some optional fields empty)."""

    def __init__(self, postcodes_by_district: dict[str, list[str]], upload_day: date, seed: int = 1,
                 mix: Mix | None = None, held_districts: tuple[str, ...] = ()) -> None:
        self.rng = random.Random(seed)
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
        if self._issued and roll < mix.amend_cancel:
            return self._follow_up(index)
        row = self._valid_row(index)
        roll = rng.random()
        if roll < mix.invalid:
            self._spoil(row, rng.choice(INVALID_KINDS))
        elif roll < mix.invalid + mix.withheld:
            kind = rng.choice(WITHHELD_KINDS)
            row["live_birth" if kind == "stillbirth" else "restricted" if kind == "restricted"
                else "sharing_objection"] = "N" if kind == "stillbirth" else "Y"
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
