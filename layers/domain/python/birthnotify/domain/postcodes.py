"""Postcode -> council lookup over an ONS postcode directory (NSPL or ONSPD), through a compact index.

The national directory has about 2.7M postcodes, live and terminated, in about 1 GB of CSV: read into a dict
at every cold start it would cost seconds and hundreds of MB, and it does not fit in a Lambda layer.
``birthnotify postcodes build`` turns it into an index of 4 bytes per postcode (about 11 MB), which the
function maps into memory (mmap) and searches in place: loading reads a few kilobytes, and a lookup touches a
couple of pages. A small CSV (the dev extract) is indexed in memory by the same builder when loaded, so both
go through the same lookup code.

Index format, version 1, every integer little-endian, each section starting on an 8-byte boundary:

- header: ``MAGIC``, then six uint32: version, codes, pairs, outward codes, postcodes, metadata bytes;
- codes: the GSS codes the directory uses, 9 ASCII bytes each, in code order;
- pairs: (district, county) as two uint16 indexes into codes, county 0xFFFF for none: every distinct pair;
- outward codes: 4 ASCII bytes each (space-padded: ``LS1 ``), sorted;
- outward starts: uint32 per outward code, and one more: its postcodes are [start, next start);
- inward codes: uint16 per postcode (digit * 676 + letter * 26 + letter), sorted within each outward code;
- pair of each postcode: uint16, an index into pairs;
- metadata: JSON (source, columns used, counts), for people and `birthnotify postcodes build` output.

Terminated postcodes stay in the index and route: an address may still use one. Where a directory lists a
postcode twice (ONS's do not), a live row wins over a terminated one; the build counts such duplicates.
"""

from __future__ import annotations

import csv
import json
import mmap
import re
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from birthnotify.domain.codes import GSS_CODE, is_no_county
from birthnotify.domain.registry import PostcodeDirectoryColumns

MAGIC = b"BNPCIDX\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8s6I")
_CODE_BYTES = 9
_NO_COUNTY = 0xFFFF
_MAX_PAIRS = 0xFFFF
_OUTWARD = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_INWARD_CODES = {
    f"{digit}{first}{second}": digit * 676 + a * 26 + b
    for digit in range(10)
    for a, first in enumerate(_LETTERS)
    for b, second in enumerate(_LETTERS)
}
"""Every inward code (``4AP``) -> its uint16: a dict lookup both checks and encodes it."""
_LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass(frozen=True, slots=True)
class PostcodeArea:
    district: str
    """District or unitary council (ONS ``laua`` / ``ladNNcd``), as the directory gives it (it may have ended)."""
    county: str | None
    """County council in a two-tier area; None where ONS gives a pseudo-code (E99999999)."""


class PostcodeDirectoryError(ValueError):
    """The postcode directory file lacks a column the registry names, or is not a usable index."""


def _padded(offset: int) -> int:
    return (offset + 7) & ~7


def _layout(codes: int, pairs: int, outwards: int, postcodes: int, meta: int) -> dict[str, tuple[int, int]]:
    """Section name -> (offset, length in bytes), from the header's counts."""
    sections: dict[str, tuple[int, int]] = {}
    offset = _padded(_HEADER.size)
    for name, length in (
        ("codes", codes * _CODE_BYTES),
        ("pairs", pairs * 4),
        ("outwards", outwards * 4),
        ("starts", (outwards + 1) * 4),
        ("inwards", postcodes * 2),
        ("pair_of", postcodes * 2),
        ("meta", meta),
    ):
        sections[name] = (offset, length)
        offset = _padded(offset + length)
    return sections


def _unsigned(view: memoryview, kind: Literal["H", "I"]) -> Sequence[int]:
    """A little-endian uint16 ("H") or uint32 ("I") section, read in place where the machine allows."""
    if _LITTLE_ENDIAN:
        return view.cast(kind)
    values = array(kind, bytes(view))  # a big-endian machine: copy and swap (never the case on Lambda)
    values.byteswap()
    return values


class PostcodeDirectory:
    """Maps a postcode, in any case and spacing, to the councils it lies in."""

    def __init__(self, buffer: bytes | mmap.mmap, source: str = "postcode index") -> None:
        self.source = source
        view = memoryview(buffer)
        if bytes(view[: len(MAGIC)]) != MAGIC:
            raise PostcodeDirectoryError(
                f"{source} is not a postcode index: build one with `birthnotify postcodes build`"
            )
        if len(view) < _HEADER.size:
            raise PostcodeDirectoryError(
                f"{source} is truncated or damaged: rebuild it with `birthnotify postcodes build`"
            )
        header: tuple[bytes, int, int, int, int, int, int] = _HEADER.unpack_from(view)
        _, version, codes, pairs, outwards, postcodes, meta = header
        if version != FORMAT_VERSION:
            raise PostcodeDirectoryError(
                f"{source} is a version {version} postcode index; this code reads version "
                f"{FORMAT_VERSION}: rebuild it with `birthnotify postcodes build`"
            )
        sections = _layout(codes, pairs, outwards, postcodes, meta)
        end = sum(sections["meta"])
        if len(view) != end:
            raise PostcodeDirectoryError(
                f"{source} is {len(view)} bytes where its header says {end}: it is "
                "truncated or damaged; rebuild it with `birthnotify postcodes build`"
            )

        def section(name: str) -> memoryview:
            offset, length = sections[name]
            return view[offset : offset + length]

        code_text = bytes(section("codes")).decode("ascii")
        code_list = [code_text[i : i + _CODE_BYTES] for i in range(0, len(code_text), _CODE_BYTES)]
        pair_values = _unsigned(section("pairs"), "H")
        self._areas = [
            PostcodeArea(
                code_list[pair_values[2 * i]],
                None if pair_values[2 * i + 1] == _NO_COUNTY else code_list[pair_values[2 * i + 1]],
            )
            for i in range(pairs)
        ]
        keys = bytes(section("outwards")).decode("ascii")
        starts = _unsigned(section("starts"), "I")
        self._outwards = {keys[4 * i : 4 * i + 4].rstrip(): (starts[i], starts[i + 1]) for i in range(outwards)}
        if any(lo > hi for lo, hi in self._outwards.values()) or (outwards and starts[outwards] != postcodes):
            raise PostcodeDirectoryError(
                f"{source} is damaged (its outward codes do not cover its postcodes): "
                "rebuild it with `birthnotify postcodes build`"
            )
        self._inwards = _unsigned(section("inwards"), "H")
        self._pair_of = _unsigned(section("pair_of"), "H")
        self._count: int = postcodes
        self.meta: dict[str, Any] = json.loads(bytes(section("meta")).decode("utf-8")) if meta else {}

    def __len__(self) -> int:
        return self._count

    @property
    def council_codes(self) -> list[str]:
        """Every council code the directory uses (districts and counties), in code order."""
        return sorted({a.district for a in self._areas} | {a.county for a in self._areas if a.county})

    def lookup(self, postcode: str) -> PostcodeArea | None:
        """The councils of a postcode (``"LS1 4AP"``, ``"ls14ap"``), or None when the directory lacks it."""
        compact = postcode.replace(" ", "").upper()
        span = self._outwards.get(compact[:-3])
        inward = _INWARD_CODES.get(compact[-3:])
        if span is None or inward is None:
            return None
        lo, hi = span
        at = bisect_left(self._inwards, inward, lo, hi)
        if at < hi and self._inwards[at] == inward:
            return self._areas[self._pair_of[at]]
        return None

    @classmethod
    def load(cls, path: str | Path, columns: PostcodeDirectoryColumns) -> PostcodeDirectory:
        """Open an index (mapped, not read) or index a directory CSV in memory, whichever ``path`` holds."""
        path = Path(path)
        with path.open("rb") as handle:
            is_index = handle.read(len(MAGIC)) == MAGIC
            if is_index:
                return cls(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), source=str(path))
        builder = IndexBuilder.from_csv(path, columns)
        return cls(builder.to_bytes(), source=str(path))


@dataclass
class BuildStats:
    """What building an index found in the directory."""

    rows: int = 0
    postcodes: int = 0
    terminated: int = 0
    without_council: int = 0
    """Rows whose council column is empty or not a GSS code (non-geographic postcodes): left out."""
    malformed: int = 0
    """Rows whose postcode is not a UK postcode shape, or that lack columns: left out."""
    duplicates: int = 0
    columns: dict[str, str | None] = field(default_factory=dict)


class IndexBuilder:
    """Collects a directory's rows and writes the index (see the module's docstring for the format)."""

    def __init__(self) -> None:
        self.stats = BuildStats()
        self._blocks: dict[str, array[int]] = {}
        """Outward code -> its postcodes, each ``inward << 17 | terminated << 16 | pair``."""
        self._bad_outwards: set[str] = set()
        self._pair_ids: dict[tuple[str, str], int] = {}
        """Raw (district, county) cells -> pair id; -1 for a district that is not a council code."""
        self._pairs: list[tuple[str, str | None]] = []
        self._normalised: dict[tuple[str, str | None], int] = {}

    def add_rows(
        self,
        rows: Iterable[Sequence[str]],
        postcode_at: int,
        district_at: int,
        county_at: int | None,
        terminated_at: int | None,
    ) -> None:
        """Add rows of a directory CSV (lists of cells) given the columns' positions."""
        stats, blocks, pair_ids, inward_codes = self.stats, self._blocks, self._pair_ids, _INWARD_CODES
        for row in rows:
            stats.rows += 1
            try:
                compact = row[postcode_at].replace(" ", "").upper()
                cells = (row[district_at], row[county_at] if county_at is not None else "")
                terminated = 1 if terminated_at is not None and row[terminated_at].strip() else 0
            except IndexError:
                stats.malformed += 1
                continue
            pair = pair_ids.get(cells)
            if pair is None:
                pair = pair_ids[cells] = self._pair_id(*cells)
            if pair < 0:
                stats.without_council += 1
                continue
            outward = compact[:-3]
            inward = inward_codes.get(compact[-3:])
            block = blocks.get(outward)
            if block is None:
                block = self._block(outward)
            if inward is None or block is None:
                stats.malformed += 1
                continue
            block.append(inward << 17 | terminated << 16 | pair)
            stats.terminated += terminated

    def _block(self, outward: str) -> array[int] | None:
        if outward in self._bad_outwards or not _OUTWARD.match(outward):
            self._bad_outwards.add(outward)
            return None
        block = self._blocks[outward] = array("I")
        return block

    def _pair_id(self, district_cell: str, county_cell: str) -> int:
        district, county = district_cell.strip().upper(), county_cell.strip().upper()
        if not GSS_CODE.match(district):
            return -1
        pair = (district, None if not county or is_no_county(county) or not GSS_CODE.match(county) else county)
        known = self._normalised.get(pair)
        if known is None:
            if len(self._pairs) >= _MAX_PAIRS:
                raise PostcodeDirectoryError(
                    f"the directory has over {_MAX_PAIRS} distinct (district, county) "
                    "pairs: not a postcode directory this index can hold"
                )
            known = self._normalised[pair] = len(self._pairs)
            self._pairs.append(pair)
        return known

    def to_bytes(self, meta: dict[str, Any] | None = None) -> bytes:
        """The index, with ``meta`` (and the build's counts) as its metadata."""
        inwards, pair_of, starts = array("H"), array("H"), array("I")
        outward_keys = sorted(self._blocks)
        stats = self.stats
        stats.postcodes = stats.duplicates = 0
        for outward in outward_keys:
            starts.append(len(inwards))
            previous = -1
            for value in sorted(self._blocks[outward]):  # a live row sorts before a terminated one
                inward = value >> 17
                if inward == previous:
                    stats.duplicates += 1
                    continue
                previous = inward
                inwards.append(inward)
                pair_of.append(value & 0xFFFF)
        starts.append(len(inwards))
        stats.postcodes = len(inwards)
        # Codes in code order; the pairs refer to them by index.
        codes = sorted({d for d, _ in self._pairs} | {c for _, c in self._pairs if c})
        code_at = {code: i for i, code in enumerate(codes)}
        pairs = array("H")
        for district, county in self._pairs:
            pairs.extend((code_at[district], _NO_COUNTY if county is None else code_at[county]))
        meta_bytes = json.dumps(
            {
                **(meta or {}),
                "format": FORMAT_VERSION,
                "rows": stats.rows,
                "postcodes": stats.postcodes,
                "terminated_rows": stats.terminated,
                "without_council": stats.without_council,
                "malformed": stats.malformed,
                "duplicates": stats.duplicates,
                "columns": stats.columns,
            },
            sort_keys=True,
        ).encode()
        sections = _layout(len(codes), len(self._pairs), len(outward_keys), len(inwards), len(meta_bytes))
        out = bytearray(sum(sections["meta"]))
        _HEADER.pack_into(
            out,
            0,
            MAGIC,
            FORMAT_VERSION,
            len(codes),
            len(self._pairs),
            len(outward_keys),
            len(inwards),
            len(meta_bytes),
        )
        contents = {
            "codes": "".join(codes).encode("ascii"),
            "pairs": _little(pairs),
            "outwards": "".join(key.ljust(4) for key in outward_keys).encode("ascii"),
            "starts": _little(starts),
            "inwards": _little(inwards),
            "pair_of": _little(pair_of),
            "meta": meta_bytes,
        }
        for name, data in contents.items():
            offset, length = sections[name]
            assert len(data) == length, name
            out[offset : offset + length] = data
        return bytes(out)

    @classmethod
    def from_csv(cls, path: str | Path, columns: PostcodeDirectoryColumns) -> IndexBuilder:
        """Read a directory CSV (any release: the first present column of each list in ``columns``)."""
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return cls.from_stream(handle, columns, str(path))

    @classmethod
    def from_stream(cls, handle: IO[str], columns: PostcodeDirectoryColumns, source: str) -> IndexBuilder:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]

        def index(candidates: list[str], required: bool) -> int | None:
            for name in candidates:
                if name.lower() in header:
                    return header.index(name.lower())
            if required:
                raise PostcodeDirectoryError(
                    f"postcode directory {source} has none of the columns {candidates}; "
                    "add this release's column name to [postcode_directory] in the registry"
                )
            return None

        postcode_at = index(columns.postcode, True)
        district_at = index(columns.district, True)
        county_at = index(columns.county, False)
        terminated_at = index(columns.terminated, False)
        assert postcode_at is not None and district_at is not None  # required: index() raised otherwise
        builder = cls()
        builder.stats.columns = {
            kind: header[at] if at is not None else None
            for kind, at in (
                ("postcode", postcode_at),
                ("district", district_at),
                ("county", county_at),
                ("terminated", terminated_at),
            )
        }
        try:
            builder.add_rows(reader, postcode_at, district_at, county_at, terminated_at)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise PostcodeDirectoryError(
                f"postcode directory {source} is not a readable UTF-8 CSV near row {builder.stats.rows + 1}: {exc}"
            ) from None
        return builder


def _little(values: array[int]) -> bytes:
    if not _LITTLE_ENDIAN:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def build_index(source: str | Path, output: str | Path, columns: PostcodeDirectoryColumns) -> BuildStats:
    """Index the directory CSV ``source`` into ``output`` (written whole, then renamed into place)."""
    source, output = Path(source), Path(output)
    builder = IndexBuilder.from_csv(source, columns)
    data = builder.to_bytes({"source": source.name})
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_bytes(data)
    partial.replace(output)
    return builder.stats
