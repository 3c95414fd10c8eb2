"""Postcode -> council lookup from an ONS postcode directory (NSPL/ONSPD) extract."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from birthnotify.domain.codes import GSS_CODE, NO_COUNTY
from birthnotify.domain.registry import PostcodeDirectoryColumns


@dataclass(frozen=True, slots=True)
class PostcodeArea:
    district: str
    """District or unitary council (ONS ``laua`` / ``ladNNcd``)."""
    county: str | None
    """County council in a two-tier area; None where ONS gives E99999999."""


class PostcodeDirectoryError(ValueError):
    """The postcode directory file lacks a column the registry names."""


class PostcodeDirectory:
    """Maps a normalised postcode (``LS1 4AP``) to the councils it lies in."""

    def __init__(self, areas: dict[str, PostcodeArea]) -> None:
        self._areas = areas

    def __len__(self) -> int:
        return len(self._areas)

    def lookup(self, postcode: str) -> PostcodeArea | None:
        return self._areas.get(postcode.replace(" ", ""))

    @classmethod
    def load(cls, path: str | Path, columns: PostcodeDirectoryColumns) -> PostcodeDirectory:
        """Read the CSV, picking the first present column of each candidate list."""
        areas: dict[str, PostcodeArea] = {}
        interned: dict[str, str] = {}
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, [])]

            def index(candidates: list[str], required: bool) -> int | None:
                for name in candidates:
                    if name.lower() in header:
                        return header.index(name.lower())
                if required:
                    raise PostcodeDirectoryError(
                        f"postcode directory {path} has none of the columns {candidates}; "
                        "add this release's column name to [postcode_directory] in the registry"
                    )
                return None

            postcode_at = index(columns.postcode, True)
            district_at = index(columns.district, True)
            county_at = index(columns.county, False)
            assert postcode_at is not None and district_at is not None  # required: index() raised otherwise
            for row in reader:
                district = row[district_at].strip()
                if not GSS_CODE.match(district):
                    continue  # terminated or non-geographic postcode without a council
                county_code = row[county_at].strip() if county_at is not None else ""
                county = None if not county_code or county_code == NO_COUNTY else \
                    interned.setdefault(county_code, county_code)
                areas[row[postcode_at].replace(" ", "").upper()] = PostcodeArea(
                    interned.setdefault(district, district), county
                )
        return cls(areas)
