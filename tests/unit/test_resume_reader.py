"""A resumed reader skips the lines before its position unparsed: whatever the file (line endings, quoted values
over several lines, blank lines, a byte order mark, gzip, CSV or JSON Lines), it must yield exactly the records
an uninterrupted reader yields after that point, and end with the same unknown columns. And the seen ids a
snapshot carries come back exactly, in a process whose string hashes differ."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from unittest.mock import patch

import pytest
from birthnotify.application.resume import concealer
from birthnotify.domain import reader
from birthnotify.domain.reader import FileKind, FileRejected, RowReader, content_sha256, scan_file
from birthnotify.domain.record import RECORD_FIELDS
from birthnotify.domain.seen import SeenIds
from hypothesis import assume, given, settings
from hypothesis import strategies as st

MAX_BYTES = 10 * 2**20
CONCEAL = concealer(b"k" * 32)
VALUE = st.text(alphabet='ab ,"\n\r\u00e9\u4e2d', max_size=6)
ROW = st.fixed_dictionaries({"notification_id": VALUE, "postcode": VALUE, "ward_note": VALUE})


def csv_file(rows: list[dict[str, str]], terminator: str, blank_every: int, bom: bool) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator=terminator)
    writer.writerow([*RECORD_FIELDS, "ward_note"])
    for index, row in enumerate(rows):
        writer.writerow([row.get(name, "") for name in [*RECORD_FIELDS, "ward_note"]])
        if blank_every and index % blank_every == 0:
            text.write(terminator)
    return ("\ufeff" if bom else "").encode() + text.getvalue().encode()


def jsonl_file(rows: list[dict[str, str]], terminator: str, blank_every: int) -> bytes:
    lines = []
    for index, row in enumerate(rows):
        lines.append(json.dumps({**row, f"key_{index % 3}": 1, f"rare {index % 5}": 1}))
        if blank_every and index % blank_every == 0:
            lines.append("  ")
    return (terminator.join(lines) + terminator).encode()


def read_all(body: bytes, name: str, **start) -> tuple[list[tuple[int, dict]], list, list[str], int]:
    kind = FileKind.from_name(name)
    facts = scan_file(lambda: io.BytesIO(body), kind, MAX_BYTES)
    reader = RowReader(io.BytesIO(body), kind, facts, MAX_BYTES, conceal=CONCEAL, **start)
    records, points = [], []
    for raw in reader:
        records.append((raw.row, raw.values, [p.code for p in raw.problems]))
        points.append((reader.position, reader.unknown_state(CONCEAL)))
    return records, points, reader.ignored_columns, reader.ignored_names_not_listed


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(ROW, min_size=1, max_size=12),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
    blank_every=st.integers(0, 4),
    bom=st.booleans(),
    jsonl=st.booleans(),
    gzipped=st.booleans(),
    skip_chars=st.integers(1, 64),
    data=st.data(),
)
def test_a_reader_resumed_at_any_record_yields_what_follows_it_in_an_uninterrupted_read(
    rows, terminator, blank_every, bom, jsonl, gzipped, skip_chars, data
):
    body = jsonl_file(rows, terminator, blank_every) if jsonl else csv_file(rows, terminator, blank_every, bom)
    name = f"x.{'jsonl' if jsonl else 'csv'}{'.gz' if gzipped else ''}"
    if gzipped:
        body = gzip.compress(body, mtime=0)
    try:
        records, points, ignored, not_listed = read_all(body, name)
    except FileRejected:  # a value's lone carriage return can end its row: a file refused whole has no resume
        assume(False)
    after = data.draw(st.integers(0, len(records) - 1), label="resume after record index")
    position, unknown = points[after]
    with patch.object(reader, "SKIP_CHARS", skip_chars):  # small reads: line ends fall across their edges
        resumed, _, resumed_ignored, resumed_not_listed = read_all(body, name, start=position, unknown=unknown)
    assert resumed == records[after + 1 :]
    assert (resumed_ignored, resumed_not_listed) == (ignored, not_listed)
    # What the report does not list (a key of one line may be data) is kept only as a keyed hash.
    assert all(hidden or name in ignored for name, _, hidden in unknown)


def test_the_content_hash_without_parsing_is_the_first_pass_hash():
    body = csv_file([{"notification_id": "A1"}], "\r\n", 0, bom=True)
    for name, data in (("x.csv", body), ("x.csv.gz", gzip.compress(body))):
        kind = FileKind.from_name(name)
        expected = scan_file(lambda data=data: io.BytesIO(data), kind, MAX_BYTES).sha256
        assert content_sha256(lambda data=data: io.BytesIO(data), kind, MAX_BYTES) == expected


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.from_regex(r"[A-Za-z0-9._/-]{1,64}", fullmatch=True), max_size=200),
    st.lists(st.from_regex(r"[A-Za-z0-9._/-]{1,64}", fullmatch=True), max_size=20),
)
def test_seen_ids_come_back_exactly_from_their_dump(ids, others):
    seen = SeenIds()
    for value in ids:
        seen.add(value)
    restored = SeenIds.load(seen.dump())
    assert restored.dump() == seen.dump()
    for value in ids:
        assert value in restored and restored.add(value)  # already there
    for value in others:
        assert (value in restored) == (value in ids)


def test_a_dump_that_is_not_one_is_refused():
    dumped = SeenIds().dump()
    for spoiled in (b"", dumped[:-1], dumped + b"x"):
        with pytest.raises(ValueError):
            SeenIds.load(spoiled)


def test_seen_ids_dumped_in_one_process_are_found_in_another_whose_hashes_differ():
    ids = [f"BN{number:08d}" for number in range(5000)]
    seen = SeenIds()
    for value in ids:
        seen.add(value)
    script = (
        "import sys; from birthnotify.domain.seen import SeenIds; s = SeenIds.load(sys.stdin.buffer.read()); "
        "print(all(f'BN{n:08d}' in s for n in range(5000)), 'BN99999999' in s, s.add('BN00000007'))"
    )
    result = subprocess.run(  # noqa: S603 (the test's own script, run by this interpreter)
        [sys.executable, "-c", script],
        input=seen.dump(),
        capture_output=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    )
    assert result.stdout.decode().split() == ["True", "False", "True"]


@pytest.mark.parametrize("length", [reader.MAX_FIELD_CHARS - 1, reader.MAX_FIELD_CHARS, reader.MAX_FIELD_CHARS + 1])
@pytest.mark.parametrize("lines", [1, 3])
@pytest.mark.parametrize("resume", [False, True])
def test_a_field_is_too_long_only_past_the_limit_whatever_lines_its_record_spans(length, lines, resume):
    # Rows whose lines are no longer than the limit skip the per-field check: the boundary must still hold.
    value = "\n".join(["a" * (length // lines)] * (lines - 1) + ["a" * (length - (length // lines + 1) * (lines - 1))])
    assert len(value) == length
    rows = [{"notification_id": "A1", "postcode": "LS1 4AP"}, {"notification_id": "A2", "address_line_2": value}]
    body = csv_file(rows, "\r\n", 0, bom=False)
    records, points, _, _ = read_all(body, "x.csv")
    if resume:
        records = [records[0], *read_all(body, "x.csv", start=points[0][0], unknown=points[0][1])[0]]
    [(_, first, first_problems), (_, second, second_problems)] = records
    assert first == {"notification_id": "A1", "postcode": "LS1 4AP"} and first_problems == []
    if length > reader.MAX_FIELD_CHARS:
        assert second == {"notification_id": "A2"} and second_problems == ["TEXT_TOO_LONG"]
    else:
        assert second == {"notification_id": "A2", "address_line_2": value} and second_problems == []
