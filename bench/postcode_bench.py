"""`make bench` (second part): the postcode index on a national-size directory, beside its targets.

The bench writes its own NSPL-shaped CSV (2.7M rows, 35 NSPL columns, live and terminated postcodes, the real
GSS codes of every current English and Welsh council from config/authorities-england-wales.csv, plus
Scottish, Northern Irish, Channel Islands and Isle of Man codes; the postcodes themselves are invented in real
postcode-area shapes), cached under build/bench/. Then, each in a fresh interpreter:

- build: `birthnotify postcodes build`'s work (wall and CPU time, peak RSS); target <= 60 s;
- size of the index on disk; target <= 32 MB;
- load as the function does at cold start (PostcodeDirectory.load on the index): time and RSS added;
  targets <= 150 ms and <= +40 MB;
- lookup: mean time over a million lookups of postcodes in the directory (every spelling the contract
  allows) and of postcodes it lacks; target <= 2 us.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.memory import peak_rss_mb, rss_mb

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "bench"
COUNCILS = ROOT / "config" / "authorities-england-wales.csv"
ROWS = 2_700_000
TERMINATED_SHARE = 0.3
"""About a third of the postcodes in an NSPL release are terminated."""
HEADER = (
    "pcd,pcd2,pcds,dointr,doterm,usertype,oseast1m,osnrth1m,osgrdind,oa21cd,cty25cd,ced25cd,lad25cd,wd25cd,"
    "nhser24cd,ctry25cd,rgn25cd,pcon24cd,ttwa15cd,itl25cd,npark16cd,lsoa21cd,msoa21cd,wz11cd,sicbl24cd,"
    "bua24cd,ruc21ind,oac11ind,lat,long,lep21cd1,lep21cd2,pfa23cd,imd20ind,icb23cd"
)
AREAS = (
    "AL B BA BB BD BH BL BN BR BS CA CB CF CH CM CO CR CT CV CW DA DE DH DL DN DT DY E EC EN EX FY GL GU HA "
    "HD HG HP HR HU HX IG IP KT L LA LD LE LL LN LS LU M ME MK N NE NG NN NP NR NW OL OX PE PL PO PR RG RH RM "
    "S SA SE SG SK SL SM SN SO SP SR SS ST SW SY TA TF TN TQ TR TS TW UB W WA WC WD WF WN WR WS WV YO "
    "AB DD DG EH FK G HS IV KA KW KY ML PA PH TD ZE BT GY JE IM"
).split()
"""Postcode areas of the UK (the last of them Scottish, Northern Irish, Channel Islands and Isle of Man)."""
OUTSIDE = {
    "S": [
        f"S12{n:06d}"
        for n in (
            5,
            6,
            8,
            10,
            11,
            13,
            17,
            18,
            19,
            20,
            21,
            23,
            26,
            27,
            28,
            29,
            30,
            33,
            34,
            35,
            36,
            38,
            39,
            40,
            41,
            42,
            45,
            47,
            48,
            49,
            50,
        )
    ],
    "N": [f"N09{n:06d}" for n in range(1, 12)],
    "L": ["L99999999"],
    "M": ["M99999999"],
}
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
"""Letters Royal Mail uses in inward codes (not C I K M O V)."""
TARGETS = {"size_mb": 32, "load_ms": 150, "load_rss_mb": 40, "lookup_us": 2, "build_s": 60}


def lower_tier_councils() -> list[tuple[str, str, str]]:
    """(district or unitary code, county code or pseudo-code, country code) of every current council that
    an NSPL row names in its lad column: districts with their county, single-tier councils without one."""
    with COUNCILS.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["current"] == "True"]
    councils = []
    for row in rows:
        code, serving = row["gss_code"], row["childrens_services_gss"]
        wales = row["nation"] == "Wales"
        if row["type"] == "county":
            continue  # counties appear in the cty column of their districts' rows
        county = serving if serving != code else ("W99999999" if wales else "E99999999")
        councils.append((code, county, "W92000004" if wales else "E92000001"))
    return councils


def national_directory(rows: int = ROWS) -> Path:
    """The NSPL-shaped national CSV, generated once and cached (generation takes a minute or two)."""
    path = WORK / f"nspl-national-{rows}.csv"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2026)
    england_wales = lower_tier_councils()
    outside_areas = {
        "AB": "S",
        "DD": "S",
        "DG": "S",
        "EH": "S",
        "FK": "S",
        "G": "S",
        "HS": "S",
        "IV": "S",
        "KA": "S",
        "KW": "S",
        "KY": "S",
        "ML": "S",
        "PA": "S",
        "PH": "S",
        "TD": "S",
        "ZE": "S",
        "BT": "N",
        "GY": "L",
        "JE": "L",
        "IM": "M",
    }
    districts_per_area = 25  # about 3,000 outward codes, as in the real directory
    per_outward = rows // (len(AREAS) * districts_per_area) + 1
    inwards = [f"{d}{a}{b}" for d in "0123456789" for a in INWARD_LETTERS for b in INWARD_LETTERS]
    partial = path.with_name("partial-" + path.name)
    written = 0
    with partial.open("w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER + "\r\n")
        for area in AREAS:
            for number in range(1, districts_per_area + 1):
                outward = f"{area}{number}"
                country = outside_areas.get(area)
                if country:
                    lad = rng.choice(OUTSIDE[country])
                    county, ctry = (
                        f"{country}99999999",
                        {"S": "S92000003", "N": "N92000002", "L": "L93000001", "M": "M83000003"}[country],
                    )
                else:
                    lad, county, ctry = rng.choice(england_wales)
                region = "W99999999" if ctry.startswith("W") else f"E1200000{rng.randint(1, 9)}"
                tail = (
                    f"{county},E58{rng.randint(0, 999999):06d},{lad},E05{rng.randint(0, 999999):06d},"
                    f"E40000{rng.randint(1, 12):03d},{ctry},{region},E14001{rng.randint(0, 999):03d},"
                    f"E30000{rng.randint(1, 200):03d},TLE{rng.randint(10, 99)},E65000001,"
                    f"E01{rng.randint(0, 999999):06d},E02{rng.randint(0, 999999):06d},"
                    f"E33{rng.randint(0, 999999):06d},E38000{rng.randint(1, 250):03d},"
                    f"E63{rng.randint(0, 999999):06d},C1,1a1"
                )
                tail2 = (
                    f"E37000{rng.randint(1, 50):03d},,E23000{rng.randint(1, 40):03d},"
                    f"{rng.randint(1, 32844)},E54000{rng.randint(1, 70):03d}"
                )
                lat, lon = 50 + rng.random() * 8, -5 + rng.random() * 6
                lines = []
                for inward in sorted(rng.sample(inwards, per_outward)):
                    if written >= rows:
                        break
                    written += 1
                    doterm = (
                        f"20{rng.randint(0, 24):02d}0{rng.randint(1, 9)}" if rng.random() < TERMINATED_SHARE else ""
                    )
                    lines.append(
                        f"{outward:<4}{inward},{outward:<5}{inward},{outward} {inward},1980{rng.randint(1, 12):02d},"
                        f"{doterm},{rng.randint(0, 1)},{rng.randint(100000, 655000)},{rng.randint(10000, 1200000)},"
                        f"1,E00{rng.randint(0, 999999):06d},{tail},{lat:.6f},{lon:.6f},{tail2}\r\n"
                    )
                handle.write("".join(lines))
    partial.rename(path)
    return path


def _child(argv: list[str]) -> dict[str, float]:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.postcode_bench", *argv],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_build(source: Path, output: Path) -> dict[str, float]:
    from birthnotify.domain.postcodes import build_index
    from birthnotify.domain.registry import load_registry

    columns = load_registry(ROOT / "config" / "registry.toml").postcode_directory
    wall, cpu = time.perf_counter(), time.process_time()
    stats = build_index(source, output, columns)
    return {
        "build_s": time.perf_counter() - wall,
        "build_cpu_s": time.process_time() - cpu,
        "build_peak_rss_mb": peak_rss_mb(),
        "postcodes": stats.postcodes,
        "rows": stats.rows,
        "terminated": stats.terminated,
    }


def child_load(index: Path, source: Path) -> dict[str, float]:
    """Load as the function does at cold start, then look postcodes up."""
    from birthnotify.domain.postcodes import PostcodeDirectory
    from birthnotify.domain.registry import load_registry

    started = time.perf_counter()
    registry = load_registry(ROOT / "config" / "registry.toml")  # with the councils data: the rest of cold start
    registry_ms = (time.perf_counter() - started) * 1000
    before = rss_mb()
    started = time.perf_counter()
    directory = PostcodeDirectory.load(index, registry.postcode_directory)
    load_ms = (time.perf_counter() - started) * 1000
    after_load = rss_mb()

    rng = random.Random(7)
    sample: list[str] = []
    with source.open(newline="", encoding="utf-8") as handle:  # every 27th postcode of the directory
        for number, line in enumerate(handle):
            if number and number % 27 == 0:
                sample.append(line.split(",", 3)[2])
    spelled = [rng.choice((pc, pc.replace(" ", ""), pc.lower(), f" {pc} ")) for pc in sample]
    rng.shuffle(spelled)
    misses = [f"{pc[:-2]}ZZ" for pc in sample[: len(sample) // 4]] + [f"QQ{n} 1AA" for n in range(1000)]
    lookup = directory.lookup
    before_lookups = rss_mb()
    assert all(lookup(pc) is not None for pc in spelled)  # every outward code: most of the index's pages
    touched_mb = rss_mb() - before_lookups
    rounds = max(1, 1_000_000 // len(spelled))
    started = time.perf_counter()
    for _ in range(rounds):
        for postcode in spelled:
            lookup(postcode)
    hit_us = (time.perf_counter() - started) / (rounds * len(spelled)) * 1e6
    started = time.perf_counter()
    for postcode in misses:
        lookup(postcode)
    miss_us = (time.perf_counter() - started) / len(misses) * 1e6
    return {
        "load_ms": load_ms,
        "registry_ms": registry_ms,
        "load_rss_mb": after_load - before,
        "lookup_pages_mb": touched_mb,
        "lookup_us": hit_us,
        "miss_us": miss_us,
        "lookups": rounds * len(spelled),
        "postcodes": len(directory),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--child-build", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-load", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_build:
        print(json.dumps(child_build(*args.child_build)))
        return
    if args.child_load:
        print(json.dumps(child_load(*args.child_load)))
        return
    print(f"generating / reusing the national directory in {WORK.relative_to(ROOT)} ...", flush=True)
    source = national_directory(args.rows)
    index = WORK / f"postcodes-{args.rows}.idx"
    built = _child(["--child-build", str(source), str(index)])
    loaded = _child(["--child-load", str(index), str(source)])
    size_mb = index.stat().st_size / 2**20
    out = io.StringIO()
    out.write(
        f"\npostcode index, on an NSPL-shaped directory of {built['rows']:,} rows "
        f"({source.stat().st_size / 2**20:,.0f} MB of CSV, {built['terminated']:,} terminated), "
        f"{built['postcodes']:,} postcodes\n"
    )

    def figure(label: str, value: float, unit: str, target: str, note: str) -> None:
        verdict = "ok" if value <= TARGETS[target] else "MISSED"
        sign = "+" if target == "load_rss_mb" else ""
        goal = f"target <= {sign}{TARGETS[target]} {unit}"
        out.write(f"  {label:<26}{value:{sign}9.2f} {unit:<3} {goal:<19} {verdict:<6} {note}\n")

    figure(
        "build (postcodes build)",
        built["build_s"],
        "s",
        "build_s",
        f"({built['build_cpu_s']:.1f} s CPU, peak RSS {built['build_peak_rss_mb']:.0f} MB)",
    )
    figure("index on disk", size_mb, "MB", "size_mb", "")
    figure(
        "load in the function",
        loaded["load_ms"],
        "ms",
        "load_ms",
        f"(fresh interpreter, mmap; registry and councils data: {loaded['registry_ms']:.0f} ms more)",
    )
    figure(
        "RSS added by the load",
        loaded["load_rss_mb"],
        "MB",
        "load_rss_mb",
        f"(then {loaded['lookup_pages_mb']:+.1f} MB of mapped pages, read by lookups of 1 postcode in 27)",
    )
    figure(
        "lookup, mean",
        loaded["lookup_us"],
        "us",
        "lookup_us",
        f"(any spelling; a postcode it lacks: {loaded['miss_us']:.2f} us)",
    )
    print(out.getvalue())
    (WORK / "last-postcode-run.txt").write_text(out.getvalue())


if __name__ == "__main__":
    main()
