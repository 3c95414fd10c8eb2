"""Every council of England and Wales, current and ended, and which of them runs children's services.

The data is config/authorities-england-wales.csv (mySociety, CC BY 4.0; see config/README.md): one row per
council with its ONS GSS code, name, nation, type, the council that runs its children's services, and, for
an ended council, the council(s) that replaced it. It is data, refreshed when local government is
reorganised; nothing here lists a council by hand.

Resolving a code answers: which current council runs children's services for the people of that area?
- a current council that runs them (county, unitary, metropolitan district, London borough, the City of
  London, Welsh principal area): itself;
- a current non-metropolitan district: its county;
- an ended council: whatever its successors resolve to, following chains (Taunton Deane -> Somerset West
  and Taunton -> Somerset). An ended council's own ``childrens_services_gss`` is never used: it names who
  ran the service before the change, which is not who runs it now.
When an ended council was split (Cumbria -> Cumberland, Westmorland and Furness), a code resolves to
several councils and only the address can decide.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from birthnotify.domain.codes import GSS_CODE

COLUMNS = (
    "gss_code",
    "name",
    "nation",
    "type",
    "childrens_services_gss",
    "current",
    "start_date",
    "end_date",
    "replaced_by_gss",
)
NATIONS = frozenset({"England", "Wales"})
DISTRICT_TYPE = "non-metropolitan district"


class CouncilsDataError(ValueError):
    """The councils file is missing, malformed or inconsistent; the message names the line and the fix."""


@dataclass(frozen=True, slots=True)
class Council:
    """One row of the councils data."""

    gss_code: str
    name: str
    nation: str
    type: str
    childrens_services_gss: str
    current: bool
    start_date: date | None = None
    end_date: date | None = None
    replaced_by: tuple[str, ...] = ()

    @property
    def runs_childrens_services(self) -> bool:
        """A current council that runs children's services itself (not a district)."""
        return self.current and self.childrens_services_gss == self.gss_code


class Councils:
    """The councils data, checked for coherence when built, with every code's resolution precomputed."""

    def __init__(self, councils: Iterable[Council], source: str = "councils data") -> None:
        self.source = source
        self._by_code: dict[str, Council] = {}
        for council in councils:
            if council.gss_code in self._by_code:
                raise CouncilsDataError(f"{source}: {council.gss_code} is listed twice")
            self._by_code[council.gss_code] = council
        self._check()
        self._resolved = {code: self._resolve(code, ()) for code in self._by_code}
        self._districts: dict[str, list[str]] = {}
        for council in self._by_code.values():
            if council.current and not council.runs_childrens_services:
                self._districts.setdefault(council.childrens_services_gss, []).append(council.gss_code)

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[Council]:
        return iter(self._by_code.values())

    def council(self, gss_code: str) -> Council | None:
        return self._by_code.get(gss_code)

    def name(self, gss_code: str) -> str | None:
        council = self._by_code.get(gss_code)
        return council.name if council else None

    def childrens_services(self, gss_code: str) -> tuple[str, ...]:
        """The current councils that run children's services for the area of ``gss_code``, in code order:
        one for a current council or an ended one with one line of successors, several for an ended council
        that was split, none for a code the data does not know."""
        return self._resolved.get(gss_code, ())

    def districts(self, gss_code: str) -> tuple[str, ...]:
        """The current districts whose children's services this council runs (a county's), in code order."""
        return tuple(sorted(self._districts.get(gss_code, ())))

    @property
    def childrens_services_councils(self) -> list[Council]:
        """Every current council that runs children's services, in code order."""
        return sorted((c for c in self._by_code.values() if c.runs_childrens_services), key=lambda c: c.gss_code)

    def _resolve(self, gss_code: str, seen: tuple[str, ...]) -> tuple[str, ...]:
        council = self._by_code[gss_code]
        if council.current:
            return (council.childrens_services_gss,)
        if gss_code in seen:
            raise CouncilsDataError(
                f"{self.source}: successors of {gss_code} loop back to it: {' -> '.join((*seen, gss_code))}"
            )
        found: set[str] = set()
        for successor in council.replaced_by:
            found.update(self._resolve(successor, (*seen, gss_code)))
        return tuple(sorted(found))

    def _check(self) -> None:
        problems: list[str] = []
        for council in self._by_code.values():
            code = council.gss_code
            served_by = self._by_code.get(council.childrens_services_gss)
            if council.current:
                if council.replaced_by or council.end_date:
                    problems.append(f"{code} is current but has an end date or successors")
                if served_by is None or not served_by.current:
                    problems.append(
                        f"{code}: its children's services council {council.childrens_services_gss} "
                        "is not a current council in the data"
                    )
                elif served_by.childrens_services_gss != served_by.gss_code:
                    problems.append(
                        f"{code}: {served_by.gss_code} does not run its own children's services, so "
                        "it cannot run another's"
                    )
                elif council.type == DISTRICT_TYPE and served_by is council:
                    problems.append(f"{code} is a district but runs its own children's services")
            else:
                if not council.replaced_by:
                    problems.append(f"{code} has ended but names no successor (replaced_by_gss)")
                unknown = [s for s in council.replaced_by if s not in self._by_code]
                if unknown:
                    problems.append(f"{code}: successors {unknown} are not in the data")
        if problems:
            raise CouncilsDataError(f"{self.source} is inconsistent: " + "; ".join(problems))

    @classmethod
    def load(cls, path: str | Path) -> Councils:
        """Read and check the councils CSV."""
        path = Path(path)
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                return cls(_parse(csv.reader(handle), str(path)), source=str(path))
        except FileNotFoundError as exc:
            raise CouncilsDataError(f"councils data {path} does not exist") from exc
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CouncilsDataError(f"councils data {path} is not a readable UTF-8 CSV: {exc}") from exc


def _parse(rows: Iterable[list[str]], source: str) -> list[Council]:
    iterator = iter(rows)
    header = [name.strip().lower() for name in next(iterator, [])]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise CouncilsDataError(f"{source} lacks the columns {missing}; expected {list(COLUMNS)}")
    at = {name: header.index(name) for name in COLUMNS}
    councils = []
    for line, row in enumerate(iterator, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CouncilsDataError(f"{source} line {line}: {len(row)} fields where the header has {len(header)}")
        value = {name: row[index].strip() for name, index in at.items()}
        try:
            councils.append(_council(value))
        except ValueError as exc:
            raise CouncilsDataError(f"{source} line {line}: {exc}") from None
    return councils


def _council(value: dict[str, str]) -> Council:
    replaced_by = tuple(code.strip() for code in value["replaced_by_gss"].split(";") if code.strip())
    for name, code in (
        ("gss_code", value["gss_code"]),
        ("childrens_services_gss", value["childrens_services_gss"]),
        *(("replaced_by_gss", code) for code in replaced_by),
    ):
        if not GSS_CODE.match(code):
            raise ValueError(f"{name} {code!r} is not an ONS GSS code")
    if value["nation"] not in NATIONS:
        raise ValueError(f"nation {value['nation']!r} is not one of {sorted(NATIONS)}")
    if value["current"] not in ("True", "False"):
        raise ValueError(f"current {value['current']!r} must be True or False")
    if not value["name"]:
        raise ValueError("the council has no name")
    return Council(
        gss_code=value["gss_code"],
        name=value["name"],
        nation=value["nation"],
        type=value["type"],
        childrens_services_gss=value["childrens_services_gss"],
        current=value["current"] == "True",
        start_date=_date(value["start_date"], "start_date"),
        end_date=_date(value["end_date"], "end_date"),
        replaced_by=replaced_by,
    )


def _date(text: str, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None
