"""The postcode index: built from an ONS postcode directory CSV, it gives exactly the CSV's answers, in any
spacing and case, terminated postcodes included; a CSV and an index load through the same lookup code."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from birthnotify.domain.postcodes import (
    MAGIC,
    IndexBuilder,
    PostcodeArea,
    PostcodeDirectory,
    PostcodeDirectoryError,
    build_index,
)
from birthnotify.domain.registry import PostcodeDirectoryColumns, load_registry
from birthnotify_cli.main import EXIT_CONFIG, EXIT_OK, main

ROOT = Path(__file__).resolve().parents[2]
EXTRACT = ROOT / "config" / "postcodes.csv"
COLUMNS = load_registry(ROOT / "config" / "registry.toml").postcode_directory
HEADER = "pcd,pcd2,pcds,dointr,doterm,usertype,cty25cd,lad25cd,ctry25cd"


def expected_areas(path: Path) -> dict[str, PostcodeArea]:
    """What the directory says, read the plain way: postcode -> (district, county or None)."""
    with path.open(newline="") as handle:
        return {
            row["pcds"]: PostcodeArea(row["lad25cd"], None if row["cty25cd"].endswith("99999999") else row["cty25cd"])
            for row in csv.DictReader(handle)
        }


@pytest.fixture(scope="module")
def index_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("index") / "postcodes.idx"
    build_index(EXTRACT, path, COLUMNS)
    return path


def spellings(postcode: str) -> list[str]:
    outward, inward = postcode.split()
    return [postcode, f"{outward}{inward}", f"{outward}  {inward}".lower(), f" {outward} {inward.lower()} "]


def test_the_index_and_the_csv_give_the_directorys_answer_for_every_postcode_in_any_spelling(index_path):
    expected = expected_areas(EXTRACT)
    from_index = PostcodeDirectory.load(index_path, COLUMNS)
    from_csv = PostcodeDirectory.load(EXTRACT, COLUMNS)
    assert index_path.read_bytes()[: len(MAGIC)] == MAGIC and len(from_index) == len(from_csv) == len(expected)
    for postcode, area in expected.items():
        for spelling in spellings(postcode):
            assert from_index.lookup(spelling) == area == from_csv.lookup(spelling), spelling
    for absent in ("LS1 1AA", "LS99 9ZZ", "ZZ99 3VZ", "LS1", "", "4AP", "LS1 4A", "LS1 4APX", "ls1 4ap\x00"):
        assert from_index.lookup(absent) is None and from_csv.lookup(absent) is None


def test_terminated_postcodes_stay_in_the_index(index_path):
    with EXTRACT.open(newline="") as handle:
        terminated = [row["pcds"] for row in csv.DictReader(handle) if row["doterm"]]
    directory = PostcodeDirectory.load(index_path, COLUMNS)
    assert len(terminated) >= 5 and all(directory.lookup(postcode) for postcode in terminated)
    assert directory.meta["terminated_rows"] == len(terminated)


def test_a_national_shaped_directory_indexes_exactly(tmp_path):
    """Thousands of postcodes over many outward codes, in shuffled order, with a county for some: every one is
    found with its own councils, and near misses are not."""
    rng = random.Random(11)
    outwards = [
        f"{area}{number}{suffix}"
        for area in ("B", "LS", "SW", "CF", "EH")
        for number in range(1, 21)
        for suffix in ("", "A")[: 2 if number < 10 else 1]
    ]  # SW1A, not SW10A
    areas = [
        ("E08000035", "E99999999"),
        ("E07000110", "E10000016"),
        ("W06000015", "W99999999"),
        ("S12000036", "S99999999"),
        ("E06000014", ""),
    ]
    rows, expected = [], {}
    for outward in outwards:
        for inward in rng.sample([f"{d}{a}{b}" for d in "0123456789" for a in "ABDEFG" for b in "HJLNPQ"], 60):
            district, county = rng.choice(areas)
            postcode = f"{outward} {inward}"
            rows.append(
                f"{outward:<4}{inward},x,{postcode},199001,{rng.choice(['', '', '201901'])},0,{county},"
                f"{district},E92000001"
            )
            expected[postcode] = PostcodeArea(district, county if county and not county.endswith("99999999") else None)
    rng.shuffle(rows)
    source = tmp_path / "national.csv"
    source.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    build_index(source, tmp_path / "national.idx", COLUMNS)
    directory = PostcodeDirectory.load(tmp_path / "national.idx", COLUMNS)
    assert len(directory) == len(expected) == len(outwards) * 60
    assert all(directory.lookup(postcode) == area for postcode, area in expected.items())
    for postcode in rng.sample(sorted(expected), 200):
        outward, inward = postcode.split()
        for near in (f"{outward} {inward[0]}ZZ", f"{outward}B {inward}", f"{outward[:-1]}X {inward}"):
            assert directory.lookup(near) == expected.get(near)


def test_rows_without_a_council_or_a_postcode_are_left_out_and_a_live_row_beats_a_terminated_twin(tmp_path):
    source = tmp_path / "directory.csv"
    source.write_text(
        "\n".join(
            [
                HEADER,
                "LS1 4AP,,LS1 4AP,199001,202001,0,E99999999,E08000003,E92000001",  # terminated twin, listed first
                "LS1 4AP,,LS1 4AP,199001,,0,E99999999,E08000035,E92000001",
                "LS1 4AQ,,LS1 4AQ,199001,,0,,,",  # non-geographic: no council
                "NOT A PC,,NOT A PC,199001,,0,E99999999,E08000035,E92000001",
                "LS1 4AR,,LS1 4AR",  # a short row
                "GY1 1AA,,GY1 1AA,199001,,0,L99999999,L99999999,L93000001",  # the Channel Islands' pseudo-code
            ]
        )
        + "\n"
    )
    builder = IndexBuilder.from_csv(source, COLUMNS)
    directory = PostcodeDirectory(builder.to_bytes())
    stats = builder.stats
    assert (stats.rows, stats.postcodes, stats.duplicates, stats.without_council, stats.malformed) == (6, 2, 1, 1, 2)
    assert directory.lookup("LS1 4AP") == PostcodeArea("E08000035", None)
    assert directory.lookup("GY1 1AA") == PostcodeArea("L99999999", None)
    assert directory.lookup("LS1 4AQ") is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-10], "truncated or damaged"),
        (lambda data: data[:8] + b"\x02" + data[9:], "version 2 postcode index"),
        (lambda data: data[:30], "truncated or damaged"),
    ],
)
def test_a_damaged_index_is_refused_with_how_to_rebuild_it(index_path, tmp_path, damage, message):
    path = tmp_path / "damaged.idx"
    path.write_bytes(damage(index_path.read_bytes()))
    with pytest.raises(PostcodeDirectoryError, match=message) as caught:
        PostcodeDirectory.load(path, COLUMNS)
    assert "birthnotify postcodes build" in str(caught.value)


def test_a_directory_csv_must_name_its_columns(tmp_path):
    path = tmp_path / "pd.csv"
    path.write_text("postcode_2030,lad30cd\nLS1 4AP,E08000035\n")
    with pytest.raises(PostcodeDirectoryError, match="add this release's column name"):
        build_index(path, tmp_path / "pd.idx", PostcodeDirectoryColumns())
    assert not (tmp_path / "pd.idx").exists()


# -- birthnotify postcodes build | lookup ----------------------------------------------------------------


def test_devops_build_the_index_from_a_release_and_look_postcodes_up(tmp_path, capsys):
    release = tmp_path / "NSPL_NOV_2026_UK.csv"
    with EXTRACT.open(newline="") as handle:
        text = handle.read()
    release.write_text(
        text.replace("lad25cd", "lad26cd").replace("cty25cd", "cty26cd")  # a newer release
        + "NE1 1ZZ,NE1  1ZZ,NE1 1ZZ,202601,,0,E99999999,E06000099,E92000001\n"
    )
    output = tmp_path / "build" / "postcodes.idx"
    assert main(["postcodes", "build", str(release), "--output", str(output)]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"{output}: 410 postcodes" in out and "columns used: postcode pcds, district lad26cd" in out
    assert "ended councils (routed to their successors): E07000028, E07000031, E10000006" in out
    assert "(2 in Scotland: outside this service" in out
    assert "WARNING" in out and "E06000099" in out  # a council newer than the councils data

    assert main(["postcodes", "lookup", "ca1 1dA", "NE1 1ZZ", "EH1 9ZZ", "--directory", str(output)]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == [
        "ca1 1dA: district E07000028, county E10000006 -> E06000063 Cumberland Council (not in the registry)",
        "NE1 1ZZ: district E06000099, county - -> a council the councils data does not know",
        "EH1 9ZZ: not in the postcode directory",
    ]


def test_a_build_without_the_columns_is_a_configuration_error(tmp_path, capsys):
    source = tmp_path / "odd.csv"
    source.write_text("postcode_2030,lad30cd\nLS1 4AP,E08000035\n")
    assert main(["postcodes", "build", str(source), "--output", str(tmp_path / "x.idx")]) == EXIT_CONFIG
    assert "add this release's column name to [postcode_directory]" in capsys.readouterr().err
