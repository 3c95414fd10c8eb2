"""Streaming readers for upload files: CSV or JSON Lines, optionally gzipped, read in two passes that
share one parser; and FHIR birth notification bundles (XML or JSON, one per file: one record).

``scan_file`` is the first pass, made before anything is sent. It hashes the bytes as uploaded, proves
they decompress (every step bounded, so a gzip bomb costs neither memory nor minutes) and decode as
UTF-8, and parses the file's structure: the CSV header, where every record starts and ends, and which
corrections come before the notification they correct. A structural problem (a quote that swallows the
rest of the file, an over-long line, a repeated column) rejects the file with the line it starts on. It
counts the records, and the report's ``rows_in`` must equal that count.

``RowReader`` is the second pass: one ``RawRow`` per record, without holding the file in memory.

A bundle is small by nature (one birth, tens of kilobytes): it is read whole, up to ``MAX_BUNDLE_BYTES``
once decompressed, parsed (``fhir``: no DTD, so nothing is expanded or fetched), checked to be a birth
notification in the first pass, and mapped to the contract's fields (``nems``) in the second.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

from birthnotify.domain.problems import FileRejected, RowProblem
from birthnotify.domain.record import RECORD_FIELDS, REQUIRED_FIELDS, ErrorCode, NotificationType
from birthnotify.domain.seen import SeenIds

if TYPE_CHECKING:
    from birthnotify.domain.fhir import Bundle

__all__ = [
    "FileFacts",
    "FileFormat",
    "FileKind",
    "FileRejected",
    "RawRow",
    "ReaderPosition",
    "RowProblem",
    "RowReader",
    "content_sha256",
    "scan_file",
]

CHUNK_BYTES = 1024 * 1024
SKIP_CHARS = 1024 * 1024
"""A resumed reader skips the lines before its position this much text at a time."""
MAX_LINE_CHARS = 16 * 1024 * 1024
"""A physical line longer than this is not a record (a whole file on one line, lost line breaks)."""
MAX_FIELD_CHARS = 1_000
"""A value longer than this is rejected before validation; the contract's longest field is 100."""
MAX_IGNORED_NAMES = 50
"""At most this many unknown column names are listed in a report (the rest are counted)."""
MAX_BUNDLE_BYTES = 1024 * 1024
"""A bundle file holds one birth notification (NHS Digital's published example is 20 kB): it may be at most
this large, as uploaded and once decompressed, and is parsed whole within that bound."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_KNOWN = frozenset(RECORD_FIELDS)
_COLUMN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_DIGIT_RUN = re.compile(r"[0-9]{3}")
_CORRECTIONS = frozenset({NotificationType.AMEND.value, NotificationType.CANCEL.value})

# Rows may legitimately hold long quoted values spanning lines; the line bound above is what limits memory.
csv.field_size_limit(MAX_LINE_CHARS)


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    FHIR_XML = "xml"
    FHIR_JSON = "json"

    @property
    def is_bundle(self) -> bool:
        """One FHIR bundle per file, one record."""
        return self in (FileFormat.FHIR_XML, FileFormat.FHIR_JSON)


UNSUPPORTED_NAME = (
    "The file name must end in .csv or .jsonl (rows), or .xml or .json (one FHIR birth notification "
    "bundle), each optionally followed by .gz."
)


@dataclass(frozen=True)
class FileKind:
    format: FileFormat
    gzipped: bool

    @property
    def suffix(self) -> str:
        """The ending of the file names this kind is read from (``.csv.gz``)."""
        return f".{self.format.value}{'.gz' if self.gzipped else ''}"

    @classmethod
    def from_name(cls, name: str) -> FileKind:
        lowered = name.lower()
        gzipped = lowered.endswith(".gz")
        stem = lowered[:-3] if gzipped else lowered
        for fmt in FileFormat:
            if stem.endswith(f".{fmt.value}"):
                return cls(fmt, gzipped)
        raise FileRejected(ErrorCode.FILE_UNSUPPORTED_TYPE, UNSUPPORTED_NAME)


@dataclass(frozen=True)
class FileFacts:
    """What the first pass established about a file."""

    sha256: str
    compressed_bytes: int
    text_bytes: int
    records: int
    """The number of records in the file: every one of them must be accounted for."""
    corrections_before_original: dict[int, int] = field(default_factory=dict)
    """Row of an AMEND or CANCEL -> the later row of the NEW notification it corrects."""


class _Concealed(str):
    """An unknown name a resumed reader knows only by its keyed hash (application.resume)."""

    __slots__ = ()


@dataclass(frozen=True)
class ReaderPosition:
    """Where the second pass stands after a record: the physical lines read (a CSV header included) and the
    record's row number. A resumed reader skips that many lines without parsing them."""

    lines: int
    row: int


@dataclass(slots=True)
class RawRow:
    """One record as read: its 1-based data row number and field values (empty values left out)."""

    row: int
    values: dict[str, Any]
    problems: tuple[RowProblem, ...] = ()
    """Problems found while reading (the row is rejected with these, whatever its values), unless a problem
    is with an optional field that can be left out (see validation)."""
    field_problems: tuple[RowProblem, ...] = ()
    """Fields present but unreadable in the file's own terms (a bundle's element): each is that field's
    error in place of the contract's checks, while the other fields are still checked."""
    locations: Mapping[str, str] | None = None
    """How the file names each field, when not by the contract's name (a bundle's elements)."""


def _too_large(max_bytes: int, decompressed: bool = False) -> FileRejected:
    limit = f"{max_bytes // (1024 * 1024)} MB"
    if decompressed:
        return FileRejected(
            ErrorCode.FILE_TOO_LARGE,
            f"The file decompresses to more than the {limit} limit; split it into smaller files.",
        )
    return FileRejected(ErrorCode.FILE_TOO_LARGE, f"The file is over the {limit} limit; split it.")


class _Content(io.RawIOBase):
    """A file's content as a binary stream: the uploaded bytes (hashed, counted), inflated when gzipped,
    each step bounded by ``max_bytes``, and proven to be UTF-8 on the way (so a bad byte is reported
    with its position). Reading it never holds more than a chunk."""

    def __init__(self, raw: IO[bytes], kind: FileKind, max_bytes: int, hashing: bool = True) -> None:
        super().__init__()
        self.digest = hashlib.sha256()
        self._hashing = hashing
        self.raw_bytes = 0
        self.content_bytes = 0
        self._kind = kind
        self._max_bytes = max_bytes
        self._chunks = self._generate(raw)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def drain(self) -> None:
        """Read the rest without keeping it: every check on the whole content (its size) still runs."""
        self._pending = memoryview(b"")
        for _ in self._chunks:
            pass

    def _generate(self, raw: IO[bytes]) -> Iterator[bytes]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        inflater = zlib.decompressobj(_GZIP_WBITS) if self._kind.gzipped else None
        inflating = False  # a gzip member has started and not yet ended
        while chunk := raw.read(CHUNK_BYTES):
            if not self.raw_bytes:
                _check_magic(chunk, self._kind, compressed=self._kind.gzipped)
            self.raw_bytes += len(chunk)
            if self.raw_bytes > self._max_bytes:
                raise _too_large(self._max_bytes)
            if self._hashing:
                self.digest.update(chunk)
            if inflater is None:
                yield self._checked(decoder, chunk)
                continue
            data = chunk
            while data:
                try:
                    # max_length bounds each step's output: a small input never expands at once.
                    out = inflater.decompress(data, CHUNK_BYTES)
                except zlib.error:
                    raise FileRejected(
                        ErrorCode.FILE_NOT_GZIP, "The name ends in .gz but the content is not valid gzip."
                    ) from None
                inflating = True
                data = inflater.unconsumed_tail
                if inflater.eof:  # concatenated gzip members are valid gzip: keep inflating
                    data = inflater.unused_data + data
                    inflater = zlib.decompressobj(_GZIP_WBITS)
                    inflating = False
                if out:
                    yield self._checked(decoder, out)
        if inflating:
            raise FileRejected(ErrorCode.FILE_NOT_GZIP, "The gzip content is truncated: upload the whole file again.")
        _decode(decoder, b"", self.content_bytes, final=True)
        if self.content_bytes == 0:
            raise FileRejected(ErrorCode.FILE_EMPTY, "The file is empty.")

    def _checked(self, decoder: codecs.IncrementalDecoder, chunk: bytes) -> bytes:
        if not self.content_bytes and self._kind.gzipped:
            _check_magic(chunk, self._kind, compressed=False)  # what was compressed may be a workbook
        offset = self.content_bytes
        self.content_bytes += len(chunk)
        if self.content_bytes > self._max_bytes:
            raise _too_large(self._max_bytes, decompressed=self._kind.gzipped)
        _decode(decoder, chunk, offset, final=False)
        return chunk


def _check_magic(head: bytes, kind: FileKind, compressed: bool) -> None:
    """Name the real cause when the bytes are not text at all."""
    if not compressed and head.startswith(_GZIP_MAGIC):
        raise FileRejected(
            ErrorCode.FILE_UNSUPPORTED_TYPE,
            "The file is gzip-compressed but its name does not end in .gz: add .gz to the name "
            f"(births.{kind.format.value}.gz) or upload it uncompressed.",
        )
    bundle = kind.format.is_bundle
    if head.startswith(_ZIP_MAGIC):
        raise FileRejected(
            ErrorCode.FILE_UNSUPPORTED_TYPE,
            "The file is a ZIP archive, not a bundle: upload the bundle's own .xml or .json file."
            if bundle
            else "The file is a ZIP archive (an Excel .xlsx workbook is one), not text: save "
            "it as 'CSV UTF-8 (Comma delimited)'.",
        )
    if head.startswith(_UTF16_BOMS):
        raise FileRejected(
            ErrorCode.FILE_ENCODING,
            "The file is UTF-16, not UTF-8: export the bundle as UTF-8."
            if bundle
            else "The file is UTF-16 ('Unicode Text'), not UTF-8: save it as 'CSV UTF-8'.",
        )


def _decode(decoder: codecs.IncrementalDecoder, chunk: bytes, offset: int, final: bool) -> None:
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError as exc:
        raise FileRejected(
            ErrorCode.FILE_ENCODING,
            f"The file is not valid UTF-8 (first bad byte near byte {offset + exc.start + 1}); save it as UTF-8.",
        ) from None


def _open_text(stream: IO[bytes], kind: FileKind, max_bytes: int, hashing: bool = True) -> tuple[_Content, IO[str]]:
    content = _Content(stream, kind, max_bytes, hashing)
    buffered = io.BufferedReader(content, buffer_size=CHUNK_BYTES)
    return content, io.TextIOWrapper(buffered, encoding="utf-8-sig", newline="")


def _lines(text: IO[str], content: _Content, number: int = 0) -> Iterator[str]:
    """Physical lines (line ends kept, as csv wants them), each bounded in length; ``number`` lines were read
    before."""
    while line := text.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise _line_too_long(content, number)
        yield line


def _line_too_long(content: _Content, number: int) -> FileRejected:
    content.drain()  # a bomb of one endless line is too large before it is too long
    return FileRejected(
        ErrorCode.FILE_LINE_TOO_LONG,
        f"Line {number} is longer than {MAX_LINE_CHARS // (1024 * 1024)} MB without a line break: "
        "records must be one per line (is the whole file on one line, or were its line breaks lost?).",
    )


def _skip_lines(text: IO[str], count: int) -> str:
    """Read past ``count`` physical lines without parsing them, counting line ends at C speed as ``readline``
    finds them (``\n``, ``\r\n``, a lone ``\r``); returns the text read past them."""
    while count > 0:
        chunk = text.read(SKIP_CHARS)
        if not chunk:
            if count == 1:  # the last line has no line end
                return ""
            raise RuntimeError(f"the content ended {count} lines before the position to resume from")
        while chunk.endswith("\r") and (more := text.read(1)):  # never split a \r\n
            chunk += more
        ends = chunk.count("\n") + chunk.count("\r") - chunk.count("\r\n")
        if ends < count:
            count -= ends
            continue
        lines = io.StringIO(chunk, newline="")
        return chunk[sum(len(lines.readline()) for _ in range(count)) :]
    return ""


def _lines_after(rest: str, text: IO[str], content: _Content, number: int) -> Iterator[str]:
    """The lines after a skip: those in ``rest`` (the last completed from the stream), then the stream's."""
    pending = io.StringIO(rest, newline="")
    while line := pending.readline():
        if not line.endswith(("\n", "\r")):  # the stream goes on with the rest of this line
            line += text.readline(MAX_LINE_CHARS + 1)
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise _line_too_long(content, number)
        yield line
    yield from _lines(text, content, number)


# -- records --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Record:
    row: int
    values: dict[str, Any]
    problems: list[RowProblem]
    unknown: list[str]
    field_problems: list[RowProblem] = field(default_factory=list)
    locations: Mapping[str, str] | None = None


class _CsvRecords:
    """The records of a CSV file after its header, with the header checked."""

    def __init__(self, lines: Iterator[str], only: frozenset[str] | None = None) -> None:
        """``only``: the columns whose values the records carry (all the contract's by default)."""
        counted = _LineCounter(lines)
        self._lines = counted
        self._reader = csv.reader(counted, strict=True)
        try:
            header = next(self._reader)
        except StopIteration:
            raise FileRejected(ErrorCode.FILE_EMPTY, "The file is empty.") from None
        except csv.Error:
            raise FileRejected(ErrorCode.FILE_NOT_CSV, "The header row is not valid CSV (check its quotes).") from None
        self.columns = [name.strip().lower() for name in header]
        _check_header(self.columns, counted.first or "")
        self.unknown = [name for name in self.columns if name not in _KNOWN]
        self._picks = [
            (position, name)
            for position, name in enumerate(self.columns)
            if name in _KNOWN and (only is None or name in only)
        ]
        self._width = len(self.columns)
        self._first_row = 0

    @property
    def lines_read(self) -> int:
        return self._lines.count

    def continue_after(self, position: ReaderPosition, lines: Iterator[str]) -> None:
        """Read the records after ``position`` from ``lines`` (the lines after it; the header was read)."""
        self._lines.resume(lines, position.lines)
        self._first_row = position.row

    def __iter__(self) -> Iterator[_Record]:
        row = self._first_row
        reader, lines = self._reader, self._lines
        while True:
            start, start_chars = lines.count + 1, lines.chars
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row += 1
                if lines.count > start or "unexpected end of data" in str(exc):
                    raise _runaway_quote(row, start, lines.count) from None
                yield _Record(
                    row,
                    {},
                    [RowProblem(ErrorCode.ROW_MALFORMED, f"The row is not valid CSV ({_csv_reason(exc)}).")],
                    [],
                )
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line is not a record
            row += 1
            if len(fields) != self._width:
                if lines.count > start:  # a quoted value ran over lines and the columns no longer line up
                    raise _runaway_quote(row, start, lines.count)
                yield _Record(
                    row,
                    {},
                    [
                        RowProblem(
                            ErrorCode.ROW_MALFORMED, f"The row has {len(fields)} fields; the header has {self._width}."
                        )
                    ],
                    [],
                )
                continue
            values: dict[str, Any] = {}
            if lines.chars - start_chars <= MAX_FIELD_CHARS:
                # No value can be longer than the lines it came from: nearly every row needs no length check.
                for position, name in self._picks:
                    if value := fields[position].strip():
                        values[name] = value
                yield _Record(row, values, [], [])
                continue
            problems: list[RowProblem] = []
            for position, name in self._picks:
                value = fields[position]
                if len(value) > MAX_FIELD_CHARS:
                    problems.append(_too_long(name, len(value)))
                elif value := value.strip():
                    values[name] = value
            yield _Record(row, values, problems, [])


class _LineCounter:
    """Feeds lines to csv and counts them, so a record's first and last line are known."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.count = 0
        self.chars = 0
        """Characters of the lines read so far: what a record spans bounds its fields' lengths."""
        self.first: str | None = None

    def __iter__(self) -> _LineCounter:
        return self

    def resume(self, lines: Iterator[str], count: int) -> None:
        """Go on with ``lines``, the lines after the first ``count``."""
        self._lines, self.count = lines, count

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        self.chars += len(line)
        if self.first is None:
            self.first = line
        return line


def _runaway_quote(row: int, start: int, end: int) -> FileRejected:
    span = f"lines {start}-{end}" if end > start else f"line {start}"
    return FileRejected(
        ErrorCode.FILE_NOT_CSV,
        f"Row {row} (line {start}) opens a quoted value that does not close where the row ends ({span} were read "
        "as one row), so the records after it cannot be told apart. Check the quotes on that line: a value "
        'containing a quote must be quoted, with the quote doubled ("").',
    )


def _too_long(name: str, length: int) -> RowProblem:
    return RowProblem(
        ErrorCode.TEXT_TOO_LONG,
        f"The value is {length:,} characters long; no field may be longer "
        f"than {MAX_FIELD_CHARS:,} (names and address lines at most 100).",
        name,
    )


def _check_header(columns: list[str], first_line: str) -> None:
    """Reject a header that cannot be read as the contract's columns, naming the real cause."""
    text = first_line.strip().lower()
    if text.startswith("sep="):
        raise FileRejected(
            ErrorCode.FILE_NOT_CSV,
            "The first line is Excel's separator hint ('sep=...'), not the header: remove that line "
            "and save the file as 'CSV UTF-8 (Comma delimited)'.",
        )
    known = [name for name in columns if name in _KNOWN]
    if not known:
        for separator, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")):
            if sum(name.strip() in _KNOWN for name in text.split(separator)) >= 2:
                raise FileRejected(
                    ErrorCode.FILE_NOT_CSV,
                    f"The columns are separated by {label}, not commas: save the file as "
                    "'CSV UTF-8 (Comma delimited)'.",
                )
        raise FileRejected(
            ErrorCode.FILE_MISSING_COLUMNS,
            "The first line is not a header: it names none of the upload contract's columns. The "
            "first line must name the columns (notification_id, notification_type, ...).",
        )
    repeated = sorted({name for name in known if known.count(name) > 1})
    if repeated:
        where = "; ".join(
            f"{name} (columns {', '.join(str(i + 1) for i, c in enumerate(columns) if c == name)})" for name in repeated
        )
        raise FileRejected(
            ErrorCode.FILE_DUPLICATE_COLUMNS,
            f"Columns appear more than once: {where}. Each column may appear once, so it is clear which value counts.",
        )
    missing = sorted(REQUIRED_FIELDS - set(columns))
    if missing:
        raise FileRejected(
            ErrorCode.FILE_MISSING_COLUMNS,
            f"Required columns are missing: {', '.join(missing)}. The upload contract lists every column.",
        )


def _csv_reason(exc: csv.Error) -> str:
    # csv's messages describe structure ("',' expected after '\"'"), never content.
    return str(exc).split("\n", 1)[0][:120]


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, so a repeated key is seen rather than silently dropped."""


class _JsonlRecords:
    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.objects = 0
        self.first_line: str | None = None
        self.lines_read = 0
        self._first_row = 0

    def continue_after(self, position: ReaderPosition, lines: Iterator[str]) -> None:
        """Read the records after ``position`` from ``lines`` (the lines after it)."""
        self._lines = lines
        self.lines_read, self._first_row = position.lines, position.row

    def __iter__(self) -> Iterator[_Record]:
        row = self._first_row
        for self.lines_read, line in enumerate(self._lines, self.lines_read + 1):  # noqa: B020 (the count is the position)
            if not line.strip():
                continue
            row += 1
            if self.first_line is None:
                self.first_line = line.strip()
            try:
                parsed = json.loads(line, object_pairs_hook=_Pairs)
            except (ValueError, RecursionError) as exc:
                yield _Record(
                    row,
                    {},
                    [RowProblem(ErrorCode.ROW_MALFORMED, f"The line is not valid JSON ({_json_reason(exc)}).")],
                    [],
                )
                continue
            if not isinstance(parsed, _Pairs):
                yield _Record(row, {}, [RowProblem(ErrorCode.ROW_MALFORMED, "The line is not one JSON object.")], [])
                continue
            self.objects += 1
            values: dict[str, Any] = {}
            problems: list[RowProblem] = []
            unknown: list[str] = []
            seen: set[str] = set()
            for name, value in parsed:
                key = str(name).strip().lower()
                if key not in _KNOWN:
                    unknown.append(key)
                    continue
                if key in seen:
                    problems.append(
                        RowProblem(
                            ErrorCode.ROW_DUPLICATE_FIELD,
                            "The object gives this field more than once: give each field once, "
                            "so it is clear which value counts.",
                            key,
                        )
                    )
                    continue
                seen.add(key)
                if isinstance(value, str):
                    if len(value) > MAX_FIELD_CHARS:
                        problems.append(_too_long(key, len(value)))
                        continue
                    value = value.strip()
                elif isinstance(value, _Pairs):
                    value = dict(value)  # an object where a value belongs: the model says TEXT_INVALID
                if value is not None and value != "":
                    values[key] = value
            # JSON Lines has no header: a missing field is the row's REQUIRED error, not the file's.
            yield _Record(row, values, problems, unknown)

    def check_is_jsonl(self) -> None:
        """After the first pass: a file in which no line is a JSON object is not JSON Lines at all."""
        if self.objects:
            return
        first = self.first_line or ""
        if first.startswith("["):
            cause = "it is one JSON array, not one JSON object per line"
        elif "," in first and "notification_id" in first.lower():
            cause = "its first line looks like a CSV header: name a CSV file .csv"
        else:
            cause = "no line of it is a JSON object"
        raise FileRejected(ErrorCode.FILE_NOT_JSONL, f"The file is not JSON Lines: {cause}.")


def _json_reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos + 1}"  # structure, never content
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "digits" in str(exc):
        return "a number has too many digits"
    return "it cannot be parsed"


def _records(lines: Iterator[str], kind: FileKind, only: frozenset[str] | None = None) -> _CsvRecords | _JsonlRecords:
    return _CsvRecords(lines, only) if kind.format is FileFormat.CSV else _JsonlRecords(lines)


# -- bundles ------------------------------------------------------------------------------------------------


def _read_bundle(stream: IO[bytes], kind: FileKind, max_bytes: int) -> tuple[_Content, Bundle]:
    """The bundle in a file: its bytes read whole within the bundle bound, then parsed and checked to be a
    birth notification."""
    # FHIR parsing and the NEMS mapping are imported only when a bundle arrives: a CSV file's cold start
    # does not pay for them.
    from birthnotify.domain.fhir import parse_json_bundle, parse_xml_bundle
    from birthnotify.domain.nems import check_is_birth_notification

    limit = min(max_bytes, MAX_BUNDLE_BYTES)
    content = _Content(stream, kind, limit)
    try:
        data = b"".join(iter(lambda: content.read(CHUNK_BYTES), b""))
    except FileRejected as rejected:
        if rejected.code is not ErrorCode.FILE_TOO_LARGE:
            raise
        content.close()
        raise FileRejected(
            ErrorCode.FILE_TOO_LARGE,
            f"A bundle file holds one birth notification and may be at most {limit // 1024:,} kB"
            f"{' once decompressed' if kind.gzipped else ''}; this one is larger: is it the right "
            "file?",
        ) from None
    bundle = parse_xml_bundle(data) if kind.format is FileFormat.FHIR_XML else parse_json_bundle(data)
    check_is_birth_notification(bundle)
    return content, bundle


def _bundle_record(bundle: Bundle) -> _Record:
    """The one record of a bundle, named by its elements."""
    from birthnotify.domain.nems import LOCATIONS, read_birth_notification

    reading = read_birth_notification(bundle)
    values: dict[str, Any] = {}
    problems = list(reading.problems)
    for name, value in reading.values.items():
        if len(value) > MAX_FIELD_CHARS:
            problems.append(_too_long(name, len(value)))
        else:
            values[name] = value
    return _Record(1, values, problems, [], reading.field_problems, LOCATIONS)


# -- the two passes ---------------------------------------------------------------------------------------


def scan_file(open_stream: Callable[[], IO[bytes]], kind: FileKind, max_bytes: int) -> FileFacts:
    """The first pass: hash, decompress, decode and parse the whole file without keeping it, and count
    its records. Raises FileRejected for any problem with the file as a whole.

    A gzipped file is first only inflated (at C speed, bounded, in flat memory), so a bomb is refused as
    too large before a line of it is parsed; an uncompressed one was bounded by its size on upload."""
    if kind.format.is_bundle:
        with open_stream() as stream:
            content, _ = _read_bundle(stream, kind, max_bytes)  # bounded: a bomb stops at the bundle limit
        return FileFacts(content.digest.hexdigest(), content.raw_bytes, content.content_bytes, 1)
    if kind.gzipped:
        with open_stream() as stream:
            _Content(stream, kind, max_bytes).drain()
    with open_stream() as stream:
        return _scan(stream, kind, max_bytes)


def content_sha256(open_stream: Callable[[], IO[bytes]], kind: FileKind, max_bytes: int) -> str:
    """The hash the first pass would give, at C speed: the bytes are read (and inflated, and proven UTF-8,
    within every bound) but not parsed. A resumed file is found by this before its parse can be skipped."""
    with open_stream() as stream:
        content = _Content(stream, kind, min(max_bytes, MAX_BUNDLE_BYTES) if kind.format.is_bundle else max_bytes)
        content.drain()
    return content.digest.hexdigest()


_SCAN_FIELDS = frozenset({"notification_id", "notification_type", "original_notification_id"})


def _scan(stream: IO[bytes], kind: FileKind, max_bytes: int) -> FileFacts:
    content, text = _open_text(stream, kind, max_bytes)
    # The first pass needs the ids only: a CSV row's other values are not even picked out (the second pass does).
    records = _records(_lines(text, content), kind, only=_SCAN_FIELDS)
    count = 0
    new_rows = SeenIds()
    waiting: dict[str, list[int]] = {}  # original id -> rows of corrections that came before it
    early: dict[int, int] = {}
    for record in records:
        count = record.row
        values = record.values
        notification_id = values.get("notification_id")
        kind_of = values.get("notification_type")
        if not isinstance(notification_id, str) or not isinstance(kind_of, str):
            continue
        kind_of = kind_of.upper()
        if kind_of == NotificationType.NEW.value:
            for correction in waiting.pop(notification_id, ()):
                early[correction] = record.row
            new_rows.add(notification_id)
        elif kind_of in _CORRECTIONS:
            original = values.get("original_notification_id")
            if isinstance(original, str) and original not in new_rows:
                waiting.setdefault(original, []).append(record.row)
    if isinstance(records, _JsonlRecords):
        records.check_is_jsonl()
    if count == 0:
        raise FileRejected(
            ErrorCode.FILE_EMPTY,
            "The file has a header but no records." if kind.format is FileFormat.CSV else "The file has no records.",
        )
    return FileFacts(content.digest.hexdigest(), content.raw_bytes, content.content_bytes, count, early)


class RowReader:
    """The second pass: iterates the records of a file the first pass accepted.

    ``ignored_columns`` names columns (or JSON keys) outside the contract that look like column names;
    ``ignored_names_not_listed`` counts the others, which are not repeated since a key can be data."""

    def __init__(
        self,
        stream: IO[bytes],
        kind: FileKind,
        facts: FileFacts,
        max_bytes: int,
        *,
        start: ReaderPosition | None = None,
        unknown: Iterable[tuple[str, int, bool]] | None = None,
        conceal: Callable[[str], str] | None = None,
    ) -> None:
        """``start`` (with the ``unknown`` counts read up to it) continues after a position an earlier reader of
        the same content reached: the content is still read from its first byte (inflated, decoded at C speed)
        but the lines before it are not parsed. ``unknown`` is ``unknown_state``'s, made with ``conceal``."""
        self._facts = facts
        self._records: _CsvRecords | _JsonlRecords | list[_Record]
        self._row = 0
        if kind.format.is_bundle:
            self._records = [_bundle_record(_read_bundle(stream, kind, max_bytes)[1])]
        else:
            # The first pass hashed this content: the second does not need its digest.
            content, text = _open_text(stream, kind, max_bytes, hashing=False)
            self._records = _records(_lines(text, content), kind)
        self._jsonl = kind.format is FileFormat.JSONL
        self._unknown: dict[str, int] = {}
        if isinstance(self._records, _CsvRecords):
            for name in self._records.unknown:
                self._unknown[name] = self._unknown.get(name, 0) + 2  # a header names a column for every row
        if start is not None and start.row:
            if isinstance(self._records, list):
                raise ValueError("a bundle is one record: there is nothing to resume after")
            rest = _skip_lines(text, start.lines - self._records.lines_read)
            self._records.continue_after(start, _lines_after(rest, text, content, start.lines))
            self._row = start.row
            if unknown is not None:
                self._unknown = {(_Concealed(name) if hidden else name): seen for name, seen, hidden in unknown}
        self._conceal = conceal
        self._concealing = conceal is not None and any(isinstance(name, _Concealed) for name in self._unknown)

    @property
    def position(self) -> ReaderPosition:
        """After the last record yielded: resuming here reads the next one."""
        records = self._records
        return ReaderPosition(records.lines_read if not isinstance(records, list) else 1, self._row)

    def unknown_state(self, conceal: Callable[[str], str]) -> list[tuple[str, int, bool]]:
        """Unknown column names (or JSON keys) seen so far, how often, and whether concealed, for a resumed reader
        to carry on: a name the report would not list (it may be data) only as ``conceal`` makes it (a keyed
        hash), so nothing is kept that the report leaves out."""
        state = []
        for name, seen in self._unknown.items():
            if self._listable(name, seen):  # never one still concealed (_listable says so)
                state.append((name, seen, False))
            else:
                state.append((name if isinstance(name, _Concealed) else conceal(name), seen, True))
        return state

    @property
    def ignored_columns(self) -> list[str]:
        return [name for name, seen in self._unknown.items() if self._listable(name, seen)][:MAX_IGNORED_NAMES]

    @property
    def ignored_names_not_listed(self) -> int:
        return len(self._unknown) - len(self.ignored_columns)

    def _listable(self, name: str, seen: int) -> bool:
        if isinstance(name, _Concealed):  # not seen again since a resume: still one line's
            return False
        # A key of one JSON line only is more likely data (a name, a number) than a column.
        repeated = seen >= 2 or self._facts.records == 1
        return repeated and bool(_COLUMN_NAME.match(name)) and not _DIGIT_RUN.search(name)

    def _reveal(self, name: str) -> bool:
        """A name the interrupted run saw (concealed) is seen again: it takes its place back, counted once more."""
        assert self._conceal is not None
        hidden = self._conceal(name)
        found = next((key for key in self._unknown if isinstance(key, _Concealed) and key == hidden), None)
        if found is None:
            return False
        self._unknown = {(name if key is found else key): seen + (key is found) for key, seen in self._unknown.items()}
        return True

    def __iter__(self) -> Iterator[RawRow]:
        early = self._facts.corrections_before_original
        rows = self._row
        for record in self._records:
            self._row = rows = record.row
            for name in record.unknown:
                if name in self._unknown:
                    self._unknown[name] += 1
                elif self._concealing and self._reveal(name):
                    pass
                elif len(self._unknown) < 10 * MAX_IGNORED_NAMES:
                    self._unknown[name] = 1
            problems = record.problems
            original_row = early.get(record.row)
            if original_row is not None:
                problems = [
                    *problems,
                    RowProblem(
                        ErrorCode.CORRECTION_BEFORE_ORIGINAL,
                        f"This {str(record.values.get('notification_type', '')).upper()} comes before the notification "
                        f"it corrects (row {original_row} of this file): put corrections after the notification they "
                        "change, or send them in a later file.",
                        "original_notification_id",
                    ),
                ]
            yield RawRow(record.row, record.values, tuple(problems), tuple(record.field_problems), record.locations)
        if rows != self._facts.records:  # the content changed between the passes, or a bug: never misreport
            raise RuntimeError(f"the second pass read {rows} records; the first counted {self._facts.records}")
