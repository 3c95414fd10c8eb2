"""Streaming readers for upload files: CSV or JSON Lines, optionally gzipped, read row by row.

``inspect_file`` makes a first pass over the raw bytes (content hash, gzip and UTF-8 integrity, size)
so that a file-level problem rejects the file before any record is forwarded. ``read_rows`` then yields
one ``RawRow`` per record without holding the file in memory.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any

from birthnotify.record import RECORD_FIELDS, REQUIRED_FIELDS, ErrorCode

CHUNK_BYTES = 1024 * 1024


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class FileRejected(Exception):
    """A problem with the whole file. The message is safe to show the trust (no file content)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FileKind:
    format: FileFormat
    gzipped: bool

    @classmethod
    def from_name(cls, name: str) -> FileKind:
        lowered = name.lower()
        gzipped = lowered.endswith(".gz")
        stem = lowered[:-3] if gzipped else lowered
        for fmt in FileFormat:
            if stem.endswith(f".{fmt.value}"):
                return cls(fmt, gzipped)
        raise FileRejected(
            ErrorCode.FILE_UNSUPPORTED_TYPE,
            "The file name must end in .csv, .jsonl, .csv.gz or .jsonl.gz.",
        )


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    compressed_bytes: int
    text_bytes: int


def inspect_file(stream: IO[bytes], kind: FileKind, max_bytes: int) -> FileFacts:
    """Hash the raw bytes and prove the content decompresses and decodes, without keeping it."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if kind.gzipped else None
    raw_total = text_total = 0
    while chunk := stream.read(CHUNK_BYTES):
        raw_total += len(chunk)
        if raw_total > max_bytes:
            raise FileRejected(
                ErrorCode.FILE_TOO_LARGE, f"The file is over the {max_bytes // (1024 * 1024)} MB limit; split it."
            )
        digest.update(chunk)
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk)
                # Concatenated gzip members are valid gzip: keep inflating.
                while inflater.eof and inflater.unused_data:
                    rest = inflater.unused_data
                    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                    chunk += inflater.decompress(rest)
            except zlib.error:
                raise FileRejected(
                    ErrorCode.FILE_NOT_GZIP, "The name ends in .gz but the content is not valid gzip."
                ) from None
        text_total += len(chunk)
        if text_total > max_bytes * 20:
            raise FileRejected(ErrorCode.FILE_TOO_LARGE, "The file decompresses to more than the size limit allows.")
        _decode(decoder, chunk, text_total - len(chunk), final=False)
    if inflater is not None and not inflater.eof:
        raise FileRejected(ErrorCode.FILE_NOT_GZIP, "The gzip content is truncated: upload the whole file again.")
    _decode(decoder, b"", text_total, final=True)
    if text_total == 0:
        raise FileRejected(ErrorCode.FILE_EMPTY, "The file is empty.")
    return FileFacts(digest.hexdigest(), raw_total, text_total)


def _decode(decoder: codecs.IncrementalDecoder, chunk: bytes, offset: int, final: bool) -> None:
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError as exc:
        raise FileRejected(
            ErrorCode.FILE_ENCODING,
            f"The file is not valid UTF-8 (first bad byte near byte {offset + exc.start + 1}); save it as UTF-8.",
        ) from None


@dataclass(slots=True)
class RawRow:
    """One record as read: its 1-based data row number and field values (empty values left out)."""

    row: int
    values: dict[str, Any]
    problem: str | None = None
    """Why the row could not be read as a record (ROW_MALFORMED), if it could not."""


def open_text(stream: IO[bytes], kind: FileKind) -> IO[str]:
    binary: IO[bytes] = gzip.GzipFile(fileobj=stream, mode="rb") if kind.gzipped else stream
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]


class RowReader:
    """Iterates the records of a file; ``ignored_columns`` names header columns the contract lacks."""

    def __init__(self, text: IO[str], kind: FileKind) -> None:
        self._text = text
        self._format = kind.format
        self.ignored_columns: list[str] = []
        self._rows = self._csv_rows() if kind.format is FileFormat.CSV else self._jsonl_rows()
        self._first = next(self._rows, None)  # reads the header now: header problems reject the file up front
        if self._first is None:
            raise FileRejected(ErrorCode.FILE_EMPTY, "The file has a header but no records.")

    def __iter__(self) -> Iterator[RawRow]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._rows

    def _csv_rows(self) -> Iterator[RawRow]:
        reader = csv.reader(self._text, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise FileRejected(ErrorCode.FILE_EMPTY, "The file is empty.") from None
        except csv.Error:
            raise FileRejected(ErrorCode.FILE_NOT_CSV, "The header row is not valid CSV.") from None
        columns = [name.strip().lower() for name in header]
        _check_columns(columns)
        known = frozenset(RECORD_FIELDS)
        self.ignored_columns = [name for name in columns if name not in known]
        picks = [(position, name) for position, name in enumerate(columns) if name in known]
        width = len(columns)
        row_number = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row_number += 1
                yield RawRow(row_number, {}, f"The row is not valid CSV ({_csv_reason(exc)}).")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line: not a record
            row_number += 1
            if len(fields) != width:
                yield RawRow(row_number, {}, f"The row has {len(fields)} fields; the header has {width}.")
                continue
            yield RawRow(row_number, {name: value for position, name in picks if (value := fields[position].strip())})

    def _jsonl_rows(self) -> Iterator[RawRow]:
        known = frozenset(RECORD_FIELDS)
        ignored: dict[str, None] = {}
        row_number = 0
        for line in self._text:
            if not line.strip():
                continue
            row_number += 1
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                if row_number == 1:
                    raise FileRejected(
                        ErrorCode.FILE_NOT_JSONL, "The first line is not a JSON object: is this really JSON Lines?"
                    )
                yield RawRow(row_number, {}, "The line is not one JSON object.")
                continue
            values: dict[str, Any] = {}
            for name, value in record.items():
                key = str(name).strip().lower()
                if key not in known:
                    if key not in ignored:
                        ignored[key] = None
                        self.ignored_columns = list(ignored)
                    continue
                if isinstance(value, str):
                    value = value.strip()
                if value is not None and value != "":
                    values[key] = value
            # JSON Lines has no header: a missing field is the row's REQUIRED error, not the file's.
            yield RawRow(row_number, values)


def _check_columns(columns: list[str]) -> None:
    missing = sorted(REQUIRED_FIELDS - set(columns))
    if missing:
        raise FileRejected(
            ErrorCode.FILE_MISSING_COLUMNS,
            f"Required columns are missing: {', '.join(missing)}. The upload contract lists every column.",
        )


def _csv_reason(exc: csv.Error) -> str:
    # csv's messages describe structure ("',' expected after '\"'"), never content.
    return str(exc).split("\n", 1)[0][:120]
