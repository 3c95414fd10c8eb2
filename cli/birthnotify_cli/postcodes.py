"""`birthnotify postcodes build`: the postcode index DevOps build from an ONS postcode directory release
(NSPL or ONSPD)."""

from __future__ import annotations

import time
from pathlib import Path

from birthnotify.domain.postcodes import PostcodeDirectory, build_index
from birthnotify.domain.registry import Registry


def build(source: Path, output: Path, registry: Registry) -> list[str]:
    """Index ``source`` into ``output`` with the registry's column names; returns what to tell DevOps."""
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
        lines.append(f"  left out: {stats.without_council:,} rows without a council code (non-geographic), "
                     f"{stats.malformed:,} rows whose postcode is not a UK postcode; {stats.duplicates:,} "
                     "postcodes listed twice (the live row kept)")
    lines.append(f"  council codes: {len(directory.council_codes)}")
    return lines
