"""The trust's report of one upload: reports/<trust>/<file>/<upload>.json and a rejected-rows CSV, no personal
data."""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterable
from typing import Any

from birthnotify.domain.csvsafe import spreadsheet_safe
from birthnotify.domain.messages import FileReport
from birthnotify.domain.uploads import report_folder

REJECTED_COLUMNS = ("row", "notification_id", "field", "code", "message")


def latest_report_key(s3: Any, bucket: str, trust: str, file_name: str) -> str | None:
    """The JSON report of the latest upload of ``file_name`` by ``trust`` (upload ids sort by time)."""
    prefix = report_folder(trust, file_name)
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].endswith(".json")
    ]
    return max(keys, default=None)


def write_report(
    s3: Any, bucket: str, report: FileReport, row_errors: Iterable[str], row_warnings: Iterable[str] = ()
) -> None:
    """Upload the JSON report (``report`` plus every row error and warning) and, when rows failed, the CSV.

    Both are spooled to temporary files first, so a file with many errors does not fill memory.
    """
    with tempfile.TemporaryFile("w+b") as report_file, tempfile.TemporaryFile("w+") as rejected_text:
        writer = csv.writer(rejected_text, lineterminator="\r\n")
        writer.writerow(REJECTED_COLUMNS)
        head = report.model_dump_json(exclude={"errors", "warnings"})
        report_file.write(head[:-1].encode() + b',"errors":[')
        count = 0
        for line in row_errors:
            if count:
                report_file.write(b",")
            report_file.write(line.encode())
            error = json.loads(line)
            writer.writerow([spreadsheet_safe(error.get(column)) for column in REJECTED_COLUMNS])
            count += 1
        report_file.write(b'],"warnings":[')
        for index, line in enumerate(row_warnings):
            report_file.write(b"," + line.encode() if index else line.encode())
        report_file.write(b"]}")
        report_file.seek(0)
        s3.upload_fileobj(report_file, bucket, report.report_key, ExtraArgs={"ContentType": "application/json"})
        if report.rejected_rows_key and count:
            rejected_text.seek(0)
            with tempfile.TemporaryFile("w+b") as rejected_bytes:
                for chunk in iter(lambda: rejected_text.read(1 << 16), ""):
                    rejected_bytes.write(chunk.encode())
                rejected_bytes.seek(0)
                s3.upload_fileobj(
                    rejected_bytes,
                    bucket,
                    report.rejected_rows_key,
                    ExtraArgs={"ContentType": "text/csv; charset=utf-8"},
                )
