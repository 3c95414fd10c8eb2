"""A resumed file starts where the interrupted run stopped, instead of re-reading every row before it.

When a run stops early (the function's time running out), it checkpoints and then saves a snapshot of
everything the rows so far built up: the tallies, the row errors and warnings for the report, the notification
ids seen (duplicates within a file), this file's additions to the trust's destination index, the unknown
columns seen, the first pass's facts, and where the reader stands (lines read, row). The next attempt restores
that and skips the lines before it without parsing them: no row is validated or routed twice.

A snapshot is trusted only for the same content (SHA-256), trust, processing day and row rules, and only at or
before the checkpoint (rows between it and the checkpoint are replayed, as without a snapshot). Anything else,
including no snapshot at all (a hard crash, a run that failed rather than stopped), falls back to replaying
every row before the checkpoint, which stays correct on its own.

It holds no personal data beyond what the reports and the destination index already hold: notification ids
(the trust's own ids), council codes, counts, and row errors and warnings (row number, id, field, code,
message, never a value). It is kept in the ledger bucket (encrypted with the ledger key) under ``resume/``,
expiring with the checkpoint (35 days).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import IO, TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from birthnotify.application.destinations import Destinations
from birthnotify.domain.messages import AuthorityCounts, HeldCount, WithheldReason
from birthnotify.domain.reader import FileFacts, ReaderPosition, RowReader
from birthnotify.domain.record import ErrorCode
from birthnotify.domain.seen import SeenIds

if TYPE_CHECKING:
    from birthnotify.application.pipeline import FilePipeline, Tally
    from birthnotify.application.ports import Log, SnapshotStore

SNAPSHOT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ResumeContext:
    """What the rows' outcomes depend on besides their content: a snapshot made under other rules is not used."""

    trust_ods_code: str
    sha256: str
    processing_day: date
    upload_day: date
    max_baby_age_days: int


class ResumeSnapshot(BaseModel):
    """A file's state after its row ``rows_done`` (schema of the ``resume/`` objects)."""

    schema_version: int = SNAPSHOT_SCHEMA_VERSION
    trust_ods_code: str
    sha256: str
    processing_day: date
    upload_day: date
    max_baby_age_days: int
    rows_done: int
    lines_read: int
    # the first pass's facts
    records: int
    compressed_bytes: int
    text_bytes: int
    corrections_before_original: dict[int, int]
    # the tally
    forwarded: int
    rejected: int
    withheld: int
    held: int
    by_authority: list[AuthorityCounts]
    held_by: list[HeldCount]
    withheld_by: dict[WithheldReason, int]
    rejected_by: dict[ErrorCode, int]
    rows_with_warnings: int
    warnings_by: dict[ErrorCode, int]
    errors: str
    """The row errors so far, as the report's lines (JSON objects, one a line)."""
    warnings: str
    seen_ids: str
    """Every well-formed notification id seen so far, as ``SeenIds.dump`` keeps them (base64)."""
    destinations_added: dict[str, dict[str, str]]
    destinations_left: dict[str, dict[str, bool]]
    destinations_unindexed: int
    unknown_columns: list[tuple[str, int, bool]]
    """The reader's unknown names, counts, and whether concealed (RowReader.unknown_state)."""

    @property
    def context(self) -> ResumeContext:
        return ResumeContext(
            self.trust_ods_code, self.sha256, self.processing_day, self.upload_day, self.max_baby_age_days
        )

    @property
    def facts(self) -> FileFacts:
        return FileFacts(
            self.sha256, self.compressed_bytes, self.text_bytes, self.records, dict(self.corrections_before_original)
        )

    @property
    def position(self) -> ReaderPosition:
        return ReaderPosition(self.lines_read, self.rows_done)

    def usable(self, context: ResumeContext, checkpoint_rows: int) -> bool:
        """Made under the same rules, for the same content, at or before the checkpoint."""
        return (
            self.schema_version == SNAPSHOT_SCHEMA_VERSION
            and self.context == context
            and 0 < self.rows_done <= checkpoint_rows
        )

    def encode(self) -> bytes:
        return gzip.compress(self.model_dump_json().encode(), compresslevel=1, mtime=0)

    @classmethod
    def decode(cls, data: bytes) -> ResumeSnapshot:
        return cls.model_validate_json(gzip.decompress(data))


def concealer(key: bytes) -> Callable[[str], str]:
    """A keyed hash (HMAC-SHA256, with the ledger key) for what a snapshot keeps but may not show: unknown names
    the report does not list (a JSON key of one line may be data)."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def conceal(name: str) -> str:
        digest = keyed.copy()
        digest.update(name.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    return conceal


def take_snapshot(
    context: ResumeContext,
    facts: FileFacts,
    pipeline: FilePipeline,
    reader: RowReader,
    destinations: Destinations,
    conceal: Callable[[str], str],
) -> ResumeSnapshot:
    """The state of a run that has just checkpointed after the reader's last row (nothing in flight)."""
    tally = pipeline.tally
    position = reader.position
    if position.row != tally.rows_in:
        raise ValueError(f"the reader is at row {position.row}, the tally at {tally.rows_in}")
    added, left, unindexed = destinations.changes()
    return ResumeSnapshot(
        trust_ods_code=context.trust_ods_code,
        sha256=context.sha256,
        processing_day=context.processing_day,
        upload_day=context.upload_day,
        max_baby_age_days=context.max_baby_age_days,
        rows_done=position.row,
        lines_read=position.lines,
        records=facts.records,
        compressed_bytes=facts.compressed_bytes,
        text_bytes=facts.text_bytes,
        corrections_before_original=facts.corrections_before_original,
        forwarded=tally.forwarded,
        rejected=tally.rejected,
        withheld=tally.withheld,
        held=tally.held,
        by_authority=list(tally.by_authority.values()),
        held_by=list(tally.held_by.values()),
        withheld_by=tally.withheld_by,
        rejected_by=tally.rejected_by,
        rows_with_warnings=tally.rows_with_warnings,
        warnings_by=tally.warnings_by,
        errors=_spool_text(tally.errors),
        warnings=_spool_text(tally.warnings),
        seen_ids=base64.b64encode(pipeline.seen_ids.dump()).decode("ascii"),
        destinations_added=added,
        destinations_left=left,
        destinations_unindexed=unindexed,
        unknown_columns=reader.unknown_state(conceal),
    )


def restore(snapshot: ResumeSnapshot, pipeline: FilePipeline, destinations: Destinations) -> None:
    """Put a fresh pipeline (and this file's destination index) in the state of the snapshot; raises ValueError,
    leaving both untouched, when the snapshot's ids cannot be read."""
    seen = SeenIds.load(base64.b64decode(snapshot.seen_ids, validate=True))  # binascii.Error is a ValueError
    _restore_tally(pipeline.tally, snapshot)
    pipeline.seen_ids = seen
    destinations.apply_changes(snapshot.destinations_added, snapshot.destinations_left, snapshot.destinations_unindexed)


def _restore_tally(tally: Tally, snapshot: ResumeSnapshot) -> None:
    tally.rows_in = snapshot.rows_done
    tally.forwarded, tally.rejected = snapshot.forwarded, snapshot.rejected
    tally.withheld, tally.held = snapshot.withheld, snapshot.held
    tally.by_authority = {counts.gss_code: counts.model_copy() for counts in snapshot.by_authority}
    tally.held_by = {(held.reason, held.authority_gss_code): held.model_copy() for held in snapshot.held_by}
    tally.withheld_by = dict(snapshot.withheld_by)
    tally.rejected_by = dict(snapshot.rejected_by)
    tally.rows_with_warnings = snapshot.rows_with_warnings
    tally.warnings_by = dict(snapshot.warnings_by)
    tally.errors.write(snapshot.errors)
    tally.warnings.write(snapshot.warnings)


def _spool_text(stream: IO[str]) -> str:
    stream.flush()
    stream.seek(0)
    text = stream.read()
    stream.seek(0, 2)  # appends go on at the end
    return text


def load_snapshot(
    store: SnapshotStore, context: ResumeContext, checkpoint_rows: int, log: Log
) -> ResumeSnapshot | None:
    """The file's snapshot if it can be trusted for this checkpoint; None (replay) otherwise, or when it
    cannot be read."""
    try:
        data = store.load(context.trust_ods_code, context.sha256)
        snapshot = ResumeSnapshot.decode(data) if data is not None else None
    except (ValidationError, OSError, EOFError, ValueError, binascii.Error) as exc:
        log.warning(
            "resume snapshot unreadable: replaying the rows before the checkpoint", extra={"error": type(exc).__name__}
        )
        return None
    except Exception as exc:  # noqa: BLE001 (an unreadable snapshot costs time, never correctness)
        log.warning(
            "resume snapshot not loaded: replaying the rows before the checkpoint", extra={"error": type(exc).__name__}
        )
        return None
    if snapshot is None:
        return None
    if not snapshot.usable(context, checkpoint_rows):
        log.info(
            "resume snapshot does not match the checkpoint: replaying", extra={"snapshot_rows": snapshot.rows_done}
        )
        return None
    return snapshot


def save_snapshot(store: SnapshotStore, snapshot: ResumeSnapshot, log: Log) -> None:
    """Best effort: without it the next attempt replays the rows before the checkpoint."""
    try:
        store.save(snapshot.trust_ods_code, snapshot.sha256, snapshot.encode())
    except Exception as exc:  # noqa: BLE001 (the checkpoint is what the retry needs; this only saves it time)
        log.warning("resume snapshot not saved: the next attempt replays", extra={"error": type(exc).__name__})
        return
    log.info("resume snapshot saved", extra={"rows_done": snapshot.rows_done})
