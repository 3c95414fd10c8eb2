"""A file checked on the trust's own machine, by the same reader, rules and routing as the pipeline.

``birthnotify validate`` uses it so a trust sees, before uploading, exactly the row errors and outcome
counts the ingest function would report. Nothing is sent anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from birthnotify.application.pipeline import FilePipeline, Source
from birthnotify.application.ports import HeldEntry, HeldWriterStats, Outgoing, SenderStats
from birthnotify.domain.messages import FileOutcome, RowError, RowWarning
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.reader import FileKind, FileRejected, RowReader, scan_file
from birthnotify.domain.registry import Registry
from birthnotify.domain.routing import Router
from birthnotify.domain.validation import RowRules, RowValidator
from birthnotify.shared.settings import DEFAULT_MAX_BABY_AGE_DAYS, DEFAULT_MAX_FILE_BYTES


@dataclass
class OfflineCheck:
    """What the pipeline would report for the file, had it been uploaded on ``upload_day``."""

    rejection: FileRejected | None = None
    outcome: FileOutcome = field(default_factory=FileOutcome)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowWarning] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    ignored_names_not_listed: int = 0
    unexpected: list[tuple[int, str]] = field(default_factory=list)
    """(row, exception type) of rows that failed unexpectedly: a fault to report to the service's team."""


class _AcceptingSender:
    """Stands in for SQS: every message counts as accepted, so the tallies match a real run."""

    def __init__(self, on_accepted: Callable[[Any], None]) -> None:
        self._on_accepted = on_accepted
        self.stats = SenderStats()

    def add(self, queue_url: str, message: Outgoing[Any]) -> None:
        self._on_accepted(message.tag)

    def flush(self) -> None:
        return None

    def settle(self) -> None:
        return None


class _AcceptingHeldStore:
    """Stands in for the held store: every held record counts as stored."""

    def __init__(self, on_stored: Callable[[Any], None], conditional: bool = False) -> None:
        self._on_stored = on_stored
        self.stats = HeldWriterStats()

    def add(self, entry: HeldEntry, tag: Any) -> None:
        self._on_stored(tag)

    def flush(self) -> None:
        return None


def check_file(
    path: str | Path,
    *,
    trust_ods_code: str,
    registry: Registry,
    postcodes: PostcodeDirectory,
    upload_day: date,
    max_baby_age_days: int = DEFAULT_MAX_BABY_AGE_DAYS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> OfflineCheck:
    """Read, validate and route every row of a local file; nothing leaves the machine."""
    path = Path(path)
    unexpected: list[tuple[int, str]] = []
    try:
        kind = FileKind.from_name(path.name)
        facts = scan_file(lambda: path.open("rb"), kind, max_file_bytes)
        with path.open("rb") as stream:
            reader = RowReader(stream, kind, facts, max_file_bytes)
            pipeline = FilePipeline(
                source=Source(trust_ods_code, f"inbound/{trust_ods_code}/{path.name}", facts.sha256),
                validator=RowValidator(RowRules(upload_day, max_baby_age_days)),
                router=Router(registry, postcodes, upload_day),
                sender_factory=_AcceptingSender,
                queue_url=lambda gss_code: gss_code,
                held_writer_factory=_AcceptingHeldStore,
                on_unexpected=lambda row, notification_id, exc: unexpected.append((row, type(exc).__name__)),
            )
            tally = pipeline.run(reader)
    except FileRejected as rejection:
        return OfflineCheck(rejection=rejection)
    return OfflineCheck(
        outcome=tally.outcome(),
        errors=[RowError.model_validate_json(line) for line in tally.row_errors()],
        warnings=[RowWarning.model_validate_json(line) for line in tally.row_warnings()],
        ignored_columns=reader.ignored_columns,
        ignored_names_not_listed=reader.ignored_names_not_listed,
        unexpected=unexpected,
    )
