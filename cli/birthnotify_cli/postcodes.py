"""`birthnotify postcodes build|lookup`: the postcode index DevOps build from an ONS postcode directory
release (NSPL or ONSPD), and a way to ask it where a postcode routes."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from birthnotify.domain.codes import outside_country
from birthnotify.domain.postcodes import PostcodeDirectory, build_index
from birthnotify.domain.registry import Registry


def build(source: Path, output: Path, registry: Registry) -> list[str]:
    """Index ``source`` into ``output`` with the registry's column names; returns what to tell DevOps,
    including council codes the councils data does not know (records there would be held NO_AUTHORITY)."""
    started = time.monotonic()
    stats = build_index(source, output, registry.postcode_directory)
    seconds = time.monotonic() - started
    directory = PostcodeDirectory.load(output, registry.postcode_directory)
    lines = [
        f"{output}: {stats.postcodes:,} postcodes ({stats.terminated:,} rows terminated, kept: they still route), "
        f"{output.stat().st_size / 2**20:.1f} MB, built in {seconds:.1f} s from {stats.rows:,} rows of {source}",
        f"  columns used: {', '.join(f'{kind} {name}' for kind, name in stats.columns.items() if name)}",
    ]
    if stats.without_council or stats.malformed or stats.duplicates:
        lines.append(
            f"  left out: {stats.without_council:,} rows without a council code (non-geographic), "
            f"{stats.malformed:,} rows whose postcode is not a UK postcode; {stats.duplicates:,} "
            "postcodes listed twice (the live row kept)"
        )
    councils = registry.councils_data
    codes = directory.council_codes
    outside = Counter(outside_country(code) for code in codes if outside_country(code))
    unknown = [
        code
        for code in codes
        if not outside_country(code) and councils.council(code) is None and not code.endswith("99999999")
    ]
    ended = [code for code in codes if (c := councils.council(code)) is not None and not c.current]
    beyond = ", ".join(f"{n} in {country}" for country, n in sorted(outside.items()))
    lines.append(
        f"  council codes: {len(codes)}"
        + (f" ({beyond}: outside this service, their records held OUTSIDE_SERVICE)" if beyond else "")
    )
    if ended:
        lines.append(f"  ended councils (routed to their successors): {', '.join(ended)}")
    if unknown:
        lines.append(
            f"  WARNING: codes the councils data ({councils.source}) does not know, whose records would be "
            f"held NO_AUTHORITY: {', '.join(unknown)}. Refresh the councils data."
        )
    return lines


def lookup(postcodes: list[str], directory: PostcodeDirectory, registry: Registry) -> list[str]:
    """Where each postcode lies and which council runs children's services there."""
    lines = []
    for postcode in postcodes:
        area = directory.lookup(postcode)
        if area is None:
            lines.append(f"{postcode}: not in the postcode directory")
            continue
        councils = registry.childrens_services(area.district) or (
            registry.childrens_services(area.county) if area.county else ()
        )
        served = ", ".join(
            f"{code} {registry.council_name(code)}{'' if registry.authority(code) else ' (not in the registry)'}"
            for code in councils
        ) or (
            f"outside this service ({outside_country(area.district)})"
            if outside_country(area.district)
            else "a council the councils data does not know"
        )
        lines.append(f"{postcode}: district {area.district}, county {area.county or '-'} -> {served}")
    return lines
