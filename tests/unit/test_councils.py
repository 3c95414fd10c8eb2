"""The councils data (config/authorities-england-wales.csv): every current council resolves to the council that
runs its children's services, every district to its county, every ended council to its successor(s). What the
registry takes from it is tested with the registry (test_configuration)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from birthnotify.domain.councils import Councils, CouncilsDataError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "config" / "authorities-england-wales.csv"
COUNCILS = Councils.load(DATA)
ROWS = list(csv.DictReader(DATA.open(newline="", encoding="utf-8")))
CURRENT = [row for row in ROWS if row["current"] == "True"]
ENDED = [row for row in ROWS if row["current"] == "False"]

# By GSS entity: who runs children's services for the council with that code prefix (E07: its county).
SELF_SERVING = {
    "E06": "unitary",
    "E08": "metropolitan district",
    "E09": "london borough",
    "E10": "county",
    "W06": "welsh principal area",
}

DISTRICTS_PER_COUNTY = {
    "E10000003": ("Cambridgeshire", 5),
    "E10000007": ("Derbyshire", 8),
    "E10000008": ("Devon", 8),
    "E10000011": ("East Sussex", 5),
    "E10000012": ("Essex", 12),
    "E10000013": ("Gloucestershire", 6),
    "E10000014": ("Hampshire", 11),
    "E10000015": ("Hertfordshire", 10),
    "E10000016": ("Kent", 12),
    "E10000017": ("Lancashire", 12),
    "E10000018": ("Leicestershire", 7),
    "E10000019": ("Lincolnshire", 7),
    "E10000020": ("Norfolk", 7),
    "E10000024": ("Nottinghamshire", 7),
    "E10000025": ("Oxfordshire", 5),
    "E10000028": ("Staffordshire", 8),
    "E10000029": ("Suffolk", 5),
    "E10000030": ("Surrey", 11),
    "E10000031": ("Warwickshire", 5),
    "E10000032": ("West Sussex", 7),
    "E10000034": ("Worcestershire", 6),
}
"""England's 21 two-tier counties in 2025 and how many districts each has (written out, not read from the data)."""

BCP, DORSET, BUCKS, NORTH_NORTHANTS, WEST_NORTHANTS = "E06000058", "E06000059", "E06000060", "E06000061", "E06000062"
CUMBERLAND, WESTMORLAND, NORTH_YORKS, SOMERSET, SUFFOLK = (
    "E06000063",
    "E06000064",
    "E06000065",
    "E06000066",
    "E10000029",
)
SUCCESSORS = {
    "E06000028": (BCP,),
    "E06000029": (BCP,),  # Bournemouth, Poole (2019)
    "E07000004": (BUCKS,),
    "E07000005": (BUCKS,),
    "E07000006": (BUCKS,),
    "E07000007": (BUCKS,),  # 2020
    "E10000002": (BUCKS,),
    "E07000026": (CUMBERLAND,),
    "E07000028": (CUMBERLAND,),
    "E07000029": (CUMBERLAND,),  # Cumbria (2023)
    "E07000027": (WESTMORLAND,),
    "E07000030": (WESTMORLAND,),
    "E07000031": (WESTMORLAND,),
    "E10000006": (CUMBERLAND, WESTMORLAND),  # split: only an address can decide
    "E07000048": (BCP,),
    "E07000049": (DORSET,),
    "E07000050": (DORSET,),
    "E07000051": (DORSET,),  # Dorset (2019)
    "E07000052": (DORSET,),
    "E07000053": (DORSET,),
    "E10000009": (DORSET,),
    "E07000150": (NORTH_NORTHANTS,),
    "E07000152": (NORTH_NORTHANTS,),
    "E07000153": (NORTH_NORTHANTS,),  # 2021
    "E07000156": (NORTH_NORTHANTS,),
    "E07000151": (WEST_NORTHANTS,),
    "E07000154": (WEST_NORTHANTS,),
    "E07000155": (WEST_NORTHANTS,),
    "E10000021": (NORTH_NORTHANTS, WEST_NORTHANTS),
    **dict.fromkeys(
        ("E07000163", "E07000164", "E07000165", "E07000166", "E07000167", "E07000168", "E07000169", "E10000023"),
        (NORTH_YORKS,),
    ),  # North Yorkshire (2023)
    # Somerset (2023); Taunton Deane and West Somerset through Somerset West and Taunton (2019-2023).
    **dict.fromkeys(
        ("E07000187", "E07000188", "E07000189", "E07000190", "E07000191", "E07000246", "E10000027"), (SOMERSET,)
    ),
    # Suffolk's districts merged in 2019 into West Suffolk and East Suffolk, both still Suffolk's districts.
    "E07000201": (SUFFOLK,),
    "E07000204": (SUFFOLK,),
    "E07000205": (SUFFOLK,),
    "E07000206": (SUFFOLK,),
}
"""Every council that has ended since 2009 and who runs children's services for its area now (written out)."""


def test_the_data_has_every_childrens_services_council_of_england_and_wales():
    serving = COUNCILS.childrens_services_councils
    assert len(serving) == 175
    assert sum(c.nation == "England" for c in serving) == 153 and sum(c.nation == "Wales" for c in serving) == 22
    assert sum(1 for c in COUNCILS if c.current and not c.runs_childrens_services) == 164  # the districts


@pytest.mark.parametrize("row", CURRENT, ids=lambda row: row["gss_code"])
def test_every_current_council_resolves_to_the_council_that_runs_its_childrens_services(row):
    code = row["gss_code"]
    [served_by] = COUNCILS.childrens_services(code)
    entity = code[:3]
    if entity == "E07":  # a district: its county, a current two-tier county that lists it among its districts
        assert served_by in DISTRICTS_PER_COUNTY and code in COUNCILS.districts(served_by)
    else:
        assert served_by == code and (row["type"] == SELF_SERVING[entity] or code == "E09000001")  # City of London


@pytest.mark.parametrize("county", sorted(DISTRICTS_PER_COUNTY), ids=lambda c: DISTRICTS_PER_COUNTY[c][0])
def test_each_district_goes_to_its_county(county):
    name, count = DISTRICTS_PER_COUNTY[county]
    districts = COUNCILS.districts(county)
    assert COUNCILS.name(county) == f"{name} County Council" and len(districts) == count
    assert all(COUNCILS.childrens_services(d) == (county,) and d.startswith("E07") for d in districts)


def test_a_few_districts_by_name():
    assert COUNCILS.childrens_services("E07000110") == ("E10000016",)  # Maidstone -> Kent
    assert COUNCILS.childrens_services("E07000008") == ("E10000003",)  # Cambridge -> Cambridgeshire
    assert COUNCILS.childrens_services("E07000245") == (SUFFOLK,)  # West Suffolk (formed 2019) -> Suffolk


@pytest.mark.parametrize("row", ENDED, ids=lambda row: row["gss_code"])
def test_every_ended_council_resolves_to_its_successors(row):
    assert COUNCILS.childrens_services(row["gss_code"]) == SUCCESSORS[row["gss_code"]]


def test_every_ended_council_is_listed_above_and_an_unknown_code_resolves_to_none():
    assert {row["gss_code"] for row in ENDED} == set(SUCCESSORS)
    assert COUNCILS.childrens_services("E07999999") == () and COUNCILS.council("S12000036") is None


def test_an_ended_councils_own_childrens_services_column_is_not_followed():
    # The data says Forest Heath's children's services were Surrey's; it is in Suffolk, and it routes by its
    # successor, West Suffolk, whose county is Suffolk.
    forest_heath = COUNCILS.council("E07000201")
    assert forest_heath is not None and forest_heath.childrens_services_gss == "E10000030"
    assert COUNCILS.childrens_services("E07000201") == (SUFFOLK,)


def csv_text(*rows: str) -> str:
    return (
        ",".join(
            (
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
        )
        + "\n"
        + "\n".join(rows)
        + "\n"
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            (
                "E06000001,A,England,unitary,E06000001,True,,,",
                "E06000002,B,England,unitary,E06000002,False,,2020-01-01,",
            ),
            "E06000002 has ended but names no successor",
        ),
        (("E06000002,B,England,unitary,E06000002,False,,2020-01-01,E06000009",), "successors ['E06000009'] are not"),
        (
            (
                "E06000001,A,England,unitary,E06000001,False,,,E06000002",
                "E06000002,B,England,unitary,E06000002,False,,,E06000001",
            ),
            "loop back",
        ),
        (
            (
                "E07000001,D,England,non-metropolitan district,E10000001,True,,,",
                "E10000001,C,England,county,E10000001,False,,,E06000001",
                "E06000001,U,England,unitary,E06000001,True,,,",
            ),
            "E07000001: its children's services council E10000001 is not a current council",
        ),
        (("E0600000١,A,England,unitary,E0600000١,True,,,",), "line 2: gss_code 'E0600000١' is not an ONS GSS code"),
        (("S12000036,Edinburgh,Scotland,unitary,S12000036,True,,,",), "nation 'Scotland'"),
        (("E06000001,A,England,unitary,E06000001,Yes,,,",), "current 'Yes' must be True or False"),
        (("E06000001,A,England,unitary,E06000001,True,1 April 1996,,",), "start_date '1 April 1996' is not a date"),
    ],
)
def test_inconsistent_councils_data_is_refused_naming_the_problem(tmp_path, rows, message):
    path = tmp_path / "councils.csv"
    path.write_text(csv_text(*rows), encoding="utf-8")
    with pytest.raises(CouncilsDataError, match=re.escape(message)):
        Councils.load(path)


def test_a_councils_file_without_its_columns_is_refused(tmp_path):
    path = tmp_path / "councils.csv"
    path.write_text("code,name\nE06000001,A\n")
    with pytest.raises(CouncilsDataError, match="lacks the columns"):
        Councils.load(path)
