"""Re-delivery to a council (``birthnotify redeliver``): re-forward one council's records from the files still
held in the service, when its queue lost them (14 days unconsumed, a purge, a broken consumer).

For each processed file whose report says records went to the council, the upload is found again (the
version of its key whose SHA-256 is the report's), read and validated as on its upload day and routed as on
its processing day, so each record goes under the agreement that was in force when it was first sent, with
the message, FIFO group and deduplication id of the first send (pipeline.forward_message). A file is
re-delivered only when what routing gives now is exactly what its report says was sent to the council (per
agreement and notification type); otherwise (the registry's agreements or the postcode directory changed
since) it is refused and named, so that no record can go to a council it was not first sent to. The council's
consumer keeps a notification it already has once (``birthnotify consume`` keys on the trust and notification
id), so a re-delivered record is harmless.

Every re-delivery is recorded in the held store's action log: who, when, why, which records (by the trust's
ids and row). Issue 16's ledger: ``_redelivered`` is the one place a record is re-delivered.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from birthnotify.application.ledger import ActionLedger
from birthnotify.application.pipeline import Source, forward_message
from birthnotify.application.ports import (
    HeldStore,
    Log,
    Outgoing,
    ProcessedFiles,
    ProgressStore,
    QueueDirectory,
    SenderFactory,
    StoredUpload,
)
from birthnotify.domain.held import ActionKind, ActionRecord, HeldAction, RecordOutcome, names_file, new_action_id
from birthnotify.domain.ledger import LedgerOutcome
from birthnotify.domain.messages import FileReport, FileStatus
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.reader import FileKind, FileRejected, RowReader, scan_file
from birthnotify.domain.record import BirthNotification
from birthnotify.domain.registry import Registry
from birthnotify.domain.routing import Forward, Router
from birthnotify.domain.validation import RowRules, RowValidator, ValidRow
from birthnotify.shared.clock import london_day, utc_now
from birthnotify.shared.settings import DEFAULT_HELD_RETENTION_DAYS, DEFAULT_MAX_BABY_AGE_DAYS, DEFAULT_MAX_FILE_BYTES


@dataclass(frozen=True)
class Selection:
    authority: str
    file: str | None = None
    """The file's key, its name, or its content reference (8+ hex digits of its SHA-256)."""
    since: date | None = None
    """Files processed on or after this day (in England)."""


@dataclass
class FileRedelivery:
    """One file's re-delivery, by its trust and content reference (never its rows' content)."""

    trust_ods_code: str
    key: str
    sha256: str
    expected: int
    sent: int = 0
    problem: str | None = None
    """Why the file was not re-delivered (its upload is no longer kept, or routing differs from the report)."""


@dataclass
class RedeliveryOutcome:
    action: HeldAction
    files: list[FileRedelivery] = field(default_factory=list)
    dry_run: bool = False

    @property
    def sent(self) -> int:
        return sum(f.sent for f in self.files)

    @property
    def refused(self) -> list[FileRedelivery]:
        return [f for f in self.files if f.problem]


class RedeliveryIncomplete(Exception):
    def __init__(self, outcome: RedeliveryOutcome) -> None:
        refused = outcome.refused
        super().__init__(
            f"{len(refused)} file(s) could not be re-delivered: "
            + "; ".join(f"{f.trust_ods_code} {f.sha256[:12]}: {f.problem}" for f in refused)
        )
        self.outcome = outcome


@dataclass
class _Row:
    row: int
    notification_id: str
    agreement_id: str
    outgoing: Outgoing[Any]
    record: BirthNotification | None = None
    forward: Forward | None = None


class Redelivery:
    """Re-forwards a council's records from the processed files still kept."""

    def __init__(
        self,
        *,
        files: ProcessedFiles,
        registry: Registry,
        postcodes: PostcodeDirectory,
        progress: ProgressStore,
        sender: SenderFactory,
        queues: QueueDirectory,
        actions: HeldStore,
        actor: str,
        max_baby_age_days: int = DEFAULT_MAX_BABY_AGE_DAYS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        clock: Callable[[], datetime] = utc_now,
        log: Log | None = None,
        ledger: ActionLedger | None = None,
    ) -> None:
        self.ledger = ledger
        """The sharing ledger: each re-delivered record is an entry (written when the action ends)."""
        self.files = files
        self.registry = registry
        self.postcodes = postcodes
        self.progress = progress
        self.sender = sender
        self.queues = queues
        self.actions = actions
        self.actor = actor
        self.max_baby_age_days = max_baby_age_days
        self.max_file_bytes = max_file_bytes
        self._clock = clock
        self.log: Log = log or logging.getLogger("birthnotify.redeliver")

    def redeliver(self, selection: Selection, why: str, *, dry_run: bool = False) -> RedeliveryOutcome:
        if self.registry.authority(selection.authority) is None:
            raise ValueError(f"{selection.authority} is not an authority in the registry")
        if selection.file is None and selection.since is None:
            raise ValueError("say which files: --file REF or --since DATE")
        now = self._clock()
        action = HeldAction(
            action_id=new_action_id(now),
            kind=ActionKind.REDELIVER,
            actor=self.actor,
            at=now,
            why=why.strip(),
            selection={
                k: str(v)
                for k, v in {"authority": selection.authority, "file": selection.file, "since": selection.since}.items()
                if v
            },
            expires_at=now + timedelta(days=DEFAULT_HELD_RETENTION_DAYS),
        )
        outcome = RedeliveryOutcome(action, dry_run=dry_run)
        if not dry_run:
            self.actions.save_action(action)  # who, when, what and why: before anything is sent
        for report in self._selected(selection):
            outcome.files.append(self._file(report, selection.authority, action, dry_run))
        if not dry_run:
            if self.ledger is not None:
                self.ledger.write(action.action_id, london_day(now))
            action.complete = True
            self.actions.save_action(action)
        self.log.info(
            "re-delivered",
            extra={
                "action_id": action.action_id,
                "files": len(outcome.files),
                "sent": outcome.sent,
                "refused": len(outcome.refused),
            },
        )
        if outcome.refused:
            raise RedeliveryIncomplete(outcome)
        return outcome

    def _selected(self, selection: Selection) -> list[FileReport]:
        chosen: dict[tuple[str, str], FileReport] = {}
        for report in self.files.reports():
            if report.status is not FileStatus.PROCESSED or not report.sha256 or not report.trust_ods_code:
                continue
            if not any(c.gss_code == selection.authority and c.total for c in report.outcome.authorities):
                continue
            if selection.file and not names_file(selection.file, report.key, report.sha256):
                continue
            if selection.since and london_day(report.processed_at) < selection.since:
                continue
            chosen.setdefault((report.trust_ods_code, report.sha256), report)  # one content, one report
        return sorted(chosen.values(), key=lambda r: r.processed_at)

    def _file(self, report: FileReport, gss: str, action: HeldAction, dry_run: bool) -> FileRedelivery:
        assert report.sha256 and report.trust_ods_code
        trust, sha256 = report.trust_ods_code, report.sha256
        expected = Counter(
            {
                (c.agreement_id, kind): getattr(c, kind)
                for c in report.outcome.authorities
                if c.gss_code == gss
                for kind in ("new", "amend", "cancel")
            }
        )
        result = FileRedelivery(trust, report.key, sha256, sum(expected.values()))
        found = self._upload(report)
        if found is None:
            result.problem = "its upload is no longer kept in the service (raw uploads are kept for a limited time)"
            return result
        stored, kind = found
        rows = self._rows(report, stored, kind, gss)
        routed = Counter((r.agreement_id, r.outgoing.tag) for r in rows)
        if +routed != +expected:
            result.problem = (
                "routing it today, as on its processing day, does not give what its report says was "
                "sent (the registry's agreements or the postcode directory changed): not re-delivered"
            )
            return result
        if dry_run:
            result.sent = len(rows)
            return result
        accepted: list[_Row] = []
        sender = self.sender(lambda row: accepted.append(row))
        for row in rows:
            sender.add(
                self.queues.authority_queue_url(gss),
                Outgoing(row.outgoing.body, row, row.outgoing.group_id, row.outgoing.deduplication_id),
            )
        try:
            sender.flush()
        finally:
            for row in accepted:
                self._redelivered(trust, sha256, row, gss, action)
            result.sent = len(accepted)
        return result

    def _upload(self, report: FileReport) -> tuple[StoredUpload, FileKind] | None:
        try:
            kind = FileKind.from_name(report.key.rsplit("/", 1)[-1])
        except FileRejected:
            return None
        for stored in self.files.versions(report.bucket, report.key):
            try:
                facts = scan_file(functools.partial(self.files.open, stored.upload), kind, self.max_file_bytes)
            except FileRejected:
                continue
            if facts.sha256 == report.sha256:
                return stored, kind
        return None

    def _rows(self, report: FileReport, stored: StoredUpload, kind: FileKind, gss: str) -> list[_Row]:
        assert report.sha256 and report.trust_ods_code
        progress = self.progress.load(report.trust_ods_code, report.sha256)
        processing_day = progress.processing_day if progress else london_day(report.processed_at)
        validator = RowValidator(RowRules(london_day(stored.uploaded_at), self.max_baby_age_days))
        router = Router(self.registry, self.postcodes, processing_day)
        source = Source(report.trust_ods_code, report.key, report.sha256)
        facts = scan_file(lambda: self.files.open(stored.upload), kind, self.max_file_bytes)
        rows: list[_Row] = []
        for raw in RowReader(self.files.open(stored.upload), kind, facts, self.max_file_bytes):
            try:
                valid = validator.validate(raw)
                if not isinstance(valid, ValidRow):
                    continue
                record = valid.record
                decision = router.decide(record)
                if not isinstance(decision, Forward) or decision.authority.gss_code != gss:
                    continue
                outgoing = forward_message(record, decision, source, raw.row, record.notification_type.value.lower())
            except Exception:  # noqa: BLE001,S112 (as on its first run: a row that failed then was never sent)
                continue
            rows.append(_Row(raw.row, record.notification_id, decision.agreement.id, outgoing, record, decision))
        return rows

    # -- the outcome of each record: where issue 16's ledger will write ------------------------------------

    def _redelivered(self, trust: str, sha256: str, row: _Row, gss: str, action: HeldAction) -> None:
        """SQS accepted a re-delivered record."""
        action.records.append(
            ActionRecord(
                trust_ods_code=trust,
                sha256=sha256,
                row=row.row,
                notification_id=row.notification_id,
                outcome=RecordOutcome.REDELIVERED,
                authority_gss_code=gss,
                agreement_id=row.agreement_id,
            )
        )
        if self.ledger is not None and row.record is not None and row.forward is not None:
            self.ledger.record(
                trust,
                sha256,
                row.row,
                row.record,
                LedgerOutcome.REDELIVERED,
                reason=f"action {action.action_id}",
                authority_gss_code=gss,
                agreement=row.forward.agreement,
            )
