"""Held records under review (``birthnotify held list|release|discard|actions``), for the held reviewer role.

- **list** counts open records by reason, council and age (no personal data); with ``show``, one line per
  record with only what a reviewer needs to find the council: the trust's ids and the postcode.
- **release** re-routes open records with the current registry and postcode directory, on the day of the
  release, and forwards those that now have a council and an agreement in force, with the same message,
  FIFO group and deduplication id a first send would have had (pipeline.forward_message). A record is claimed
  before it is sent and marked released only once SQS accepted it; one SQS did not accept is given back.
- **discard** deletes records that must not be shared, with the reviewer's reason.

Every action is recorded in the held store before the first record changes and again when it ends: who (the
caller's identity from STS), when, what, why, and which records (by the trust's ids and row). The trust and
operators then hear of it by email (counts only): one HeldActionEvent per action and file, through the
file-events queue to the notify function.

Issue 16's sharing ledger: ``_released`` and ``_discarded`` are the one place each outcome happens (after SQS
accepted a released record; after the store deleted a discarded one).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from birthnotify.application.ledger import ActionLedger
from birthnotify.application.pipeline import Source, forward_message
from birthnotify.application.ports import (
    EventPublisher,
    HeldDetail,
    HeldKey,
    HeldStore,
    HeldSummary,
    Log,
    QueueDirectory,
    SenderFactory,
)
from birthnotify.domain.held import (
    ActionKind,
    ActionRecord,
    HeldAction,
    HeldStatus,
    RecordOutcome,
    age_band,
    names_file,
    new_action_id,
)
from birthnotify.domain.ledger import LedgerOutcome
from birthnotify.domain.messages import AuthorityCounts, HeldActionEvent, HeldReason
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.record import BirthNotification, NotificationType
from birthnotify.domain.registry import Registry
from birthnotify.domain.routing import Forward, Hold, Router
from birthnotify.shared.clock import london_day, utc_now
from birthnotify.shared.settings import DEFAULT_HELD_RETENTION_DAYS

CLAIM_STALE_AFTER = timedelta(minutes=15)
"""A record claimed by a release that has not finished it in this long is taken over by the next release
(the first one stopped half-way: the council's consumer keeps a record it already has once)."""


class NothingSelected(ValueError):
    """A discard must say which records: it never applies to every held record by default."""


@dataclass(frozen=True)
class Selection:
    """Which open records a command applies to."""

    reasons: tuple[HeldReason, ...] = ()
    authority: str | None = None
    """list and discard: records held for (or about) this council; release: records that now go to it."""
    file: str | None = None
    """The file's key, its name, or its content reference (8+ hex digits of its SHA-256)."""
    rows: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.reasons or self.authority or self.file or self.rows)

    def describe(self) -> dict[str, str]:
        described = {
            "reason": ",".join(r.value for r in self.reasons),
            "authority": self.authority or "",
            "file": self.file or "",
            "rows": ",".join(str(r) for r in self.rows),
        }
        return {name: value for name, value in described.items() if value}

    def admits(self, summary: HeldSummary, *, by_authority: bool = True) -> bool:
        if self.reasons and summary.reason not in self.reasons:
            return False
        if self.file and not names_file(self.file, summary.file_key, summary.key.sha256):
            return False
        if self.rows and summary.key.row not in self.rows:
            return False
        return not (by_authority and self.authority and summary.authority_gss_code != self.authority)


@dataclass
class Overview:
    """Open records counted by reason (and council), council and age: no personal data."""

    total: int = 0
    by_reason: Counter[tuple[HeldReason, str]] = field(default_factory=Counter)
    by_council: Counter[str] = field(default_factory=Counter)
    by_age: Counter[str] = field(default_factory=Counter)
    by_file: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(trust, content reference) -> records: a file is named by its reference, never its name."""
    oldest: timedelta | None = None
    releasing: int = 0
    """Records claimed by a release that has not finished (the next release takes them over)."""


@dataclass(frozen=True)
class HeldView:
    """One open record as ``held list --show`` prints it: the trust's ids and the postcode, nothing more."""

    trust_ods_code: str
    file_reference: str
    row: int
    notification_id: str
    postcode: str
    reason: HeldReason
    council: str
    age: timedelta


@dataclass
class ActionOutcome:
    action: HeldAction
    released: dict[tuple[str, str], AuthorityCounts] = field(default_factory=dict)
    """(GSS code, agreement id) -> records released there."""
    still_held: Counter[str] = field(default_factory=Counter)
    """Why records re-routed by a release are still held: reason (and council)."""
    discarded: int = 0
    taken: int = 0
    not_sent: int = 0
    events: list[HeldActionEvent] = field(default_factory=list)
    dry_run: bool = False

    @property
    def released_total(self) -> int:
        return sum(counts.total for counts in self.released.values())


@dataclass
class _Release:
    detail: HeldDetail
    record: BirthNotification
    forward: Forward
    accepted: bool = False


class HeldReview:
    """The reviewers' use cases, over the held store and (for release) the authority queues."""

    def __init__(
        self,
        *,
        store: HeldStore,
        registry: Registry,
        actor: str,
        postcodes: PostcodeDirectory | None = None,
        sender: SenderFactory | None = None,
        queues: QueueDirectory | None = None,
        events: EventPublisher | None = None,
        clock: Callable[[], datetime] = utc_now,
        log: Log | None = None,
        ledger: ActionLedger | None = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        """The sharing ledger: each release and discard is an entry (written when the action ends)."""
        self._discarding: dict[HeldKey, HeldDetail] = {}
        self.registry = registry
        self.actor = actor
        self.postcodes = postcodes
        self.sender = sender
        self.queues = queues
        self.events = events
        self._clock = clock
        self.log: Log = log or logging.getLogger("birthnotify.held")

    # -- looking ------------------------------------------------------------------------------------------

    def overview(self, selection: Selection = Selection()) -> Overview:
        now = self._clock()
        overview = Overview()
        for summary in self.store.open_records(selection.reasons or None):
            if not selection.admits(summary):
                continue
            age = now - summary.held_at
            overview.total += 1
            overview.by_reason[(summary.reason, _council(summary))] += 1
            overview.by_council[_council(summary) or "(no council)"] += 1
            overview.by_age[age_band(age)] += 1
            overview.by_file[(summary.key.trust_ods_code, summary.key.sha256[:12])] += 1
            overview.oldest = max(overview.oldest or age, age)
            overview.releasing += summary.status is HeldStatus.RELEASING
        return overview

    def show(self, selection: Selection = Selection()) -> list[HeldView]:
        now = self._clock()
        summaries = [s for s in self.store.open_records(selection.reasons or None) if selection.admits(s)]
        return [
            HeldView(
                d.key.trust_ods_code,
                d.key.sha256[:12],
                d.key.row,
                str(d.message.record["notification_id"]),
                str(d.message.record.get("postcode", "")),
                d.summary.reason,
                _council(d.summary) or "",
                now - d.summary.held_at,
            )
            for d in self.store.details(s.key for s in summaries)
        ]

    # -- acting -------------------------------------------------------------------------------------------

    def release(self, selection: Selection, why: str, *, dry_run: bool = False) -> ActionOutcome:
        """Re-route the selected open records today and forward those that now have a council and an
        agreement in force; the rest stay held."""
        if self.postcodes is None or self.sender is None or self.queues is None:
            raise RuntimeError("release needs the postcode directory, a sender and the authority queues")
        now = self._clock()
        every_open = self.store.open_records()
        chosen = [s for s in every_open if selection.admits(s, by_authority=False)]
        router = Router(self.registry, self.postcodes, london_day(now))
        action = self._action(ActionKind.RELEASE, now, why, selection, chosen)
        outcome = ActionOutcome(action, dry_run=dry_run)
        releases: list[_Release] = []
        for detail in self.store.details(s.key for s in chosen):
            record = BirthNotification.model_validate(detail.message.record)
            decision = router.decide(record)
            if isinstance(decision, Forward):
                if selection.authority and decision.authority.gss_code != selection.authority:
                    continue  # goes elsewhere now: not this release's to send
                releases.append(_Release(detail, record, decision))
                continue
            name = decision.name if isinstance(decision, Hold) else None
            label = decision.reason.value + (f" ({name})" if name else "")
            outcome.still_held[label] += 1
            action.records.append(self._reference(detail, RecordOutcome.STILL_HELD, reason=decision.reason.value))
        if dry_run:
            for release in releases:
                self._count_released(outcome, release)
            return outcome
        self.store.save_action(action)  # who, when, what and why: before any record changes
        claimed = []
        for release in releases:
            if self.store.claim(release.detail.key, action, stale_before=now - CLAIM_STALE_AFTER):
                claimed.append(release)
            else:
                outcome.taken += 1
                action.records.append(self._reference(release.detail, RecordOutcome.TAKEN))
        failure: Exception | None = None
        try:
            self._send(claimed, action)
        except Exception as exc:  # noqa: BLE001 (what SQS accepted stays released; the rest is given back)
            failure = exc
        for release in claimed:
            if release.accepted:
                self._count_released(outcome, release)
                action.records.append(
                    self._reference(
                        release.detail,
                        RecordOutcome.RELEASED,
                        gss=release.forward.authority.gss_code,
                        agreement=release.forward.agreement.id,
                    )
                )
            else:
                self.store.unclaim(release.detail.key, action)
                outcome.not_sent += 1
                action.records.append(self._reference(release.detail, RecordOutcome.NOT_SENT))
        self._finish(action, outcome, every_open)
        if failure is not None:
            raise ReleaseIncomplete(outcome) from failure
        return outcome

    def discard(self, selection: Selection, why: str, *, dry_run: bool = False) -> ActionOutcome:
        """Delete the selected open records: they will never be shared."""
        if selection.empty:
            raise NothingSelected("say which held records to discard: --file, --held-reason, --authority or --row")
        if len(why.strip()) < 10:
            raise NothingSelected("give the reason for discarding (at least 10 characters): it is recorded")
        now = self._clock()
        every_open = self.store.open_records()
        chosen = [s for s in every_open if selection.admits(s) and s.status is HeldStatus.HELD]
        action = self._action(ActionKind.DISCARD, now, why, selection, chosen)
        outcome = ActionOutcome(action, dry_run=dry_run)
        if dry_run:
            outcome.discarded = len(chosen)
            return outcome
        self.store.save_action(action)
        if self.ledger is not None:  # the record, to name it in the ledger: the store deletes it with the discard
            self._discarding = {detail.key: detail for detail in self.store.details(s.key for s in chosen)}
        for summary in chosen:
            if self.store.discard(summary.key, action):
                self._discarded(summary, action, outcome)
            else:
                outcome.taken += 1
                action.records.append(
                    ActionRecord(
                        trust_ods_code=summary.key.trust_ods_code,
                        sha256=summary.key.sha256,
                        row=summary.key.row,
                        outcome=RecordOutcome.TAKEN,
                    )
                )
        self._finish(action, outcome, every_open)
        return outcome

    def actions(self, since: datetime) -> list[HeldAction]:
        return self.store.actions(since)

    # -- the outcome of each record: where issue 16's ledger will write ------------------------------------

    def _released(self, release: _Release, action: HeldAction) -> None:
        """SQS accepted a released record: it is released (the store no longer keeps its content)."""
        self.store.mark_released(
            release.detail.key, action, release.forward.authority.gss_code, release.forward.agreement.id
        )
        release.accepted = True
        if self.ledger is not None:
            key, forward = release.detail.key, release.forward
            self.ledger.record(
                key.trust_ods_code,
                key.sha256,
                key.row,
                release.record,
                LedgerOutcome.RELEASED,
                reason=f"action {action.action_id}",
                authority_gss_code=forward.authority.gss_code,
                agreement=forward.agreement,
            )

    def _discarded(self, summary: HeldSummary, action: HeldAction, outcome: ActionOutcome) -> None:
        """The store deleted a discarded record."""
        outcome.discarded += 1
        detail = self._discarding.get(summary.key)
        if self.ledger is not None and detail is not None:
            key = summary.key
            self.ledger.record(
                key.trust_ods_code,
                key.sha256,
                key.row,
                BirthNotification.model_validate(detail.message.record),
                LedgerOutcome.DISCARDED,
                reason=f"action {action.action_id}",
                authority_gss_code=summary.authority_gss_code,
            )
        action.records.append(
            ActionRecord(
                trust_ods_code=summary.key.trust_ods_code,
                sha256=summary.key.sha256,
                row=summary.key.row,
                outcome=RecordOutcome.DISCARDED,
            )
        )

    # -- helpers ------------------------------------------------------------------------------------------

    def _send(self, claimed: list[_Release], action: HeldAction) -> None:
        assert self.sender is not None and self.queues is not None
        sender = self.sender(lambda release: self._released(release, action))
        for release in claimed:
            message = release.detail.message
            source = Source(message.source.trust_ods_code, message.source.key, message.source.sha256)
            outgoing = forward_message(release.record, release.forward, source, message.source.row, release)
            sender.add(self.queues.authority_queue_url(release.forward.authority.gss_code), outgoing)
        sender.flush()

    def _action(
        self, kind: ActionKind, now: datetime, why: str, selection: Selection, chosen: Iterable[HeldSummary]
    ) -> HeldAction:
        retention = timedelta(
            days=max((s.retention_days for s in chosen if s.retention_days), default=DEFAULT_HELD_RETENTION_DAYS)
        )
        return HeldAction(
            action_id=new_action_id(now),
            kind=kind,
            actor=self.actor,
            at=now,
            why=why.strip(),
            selection=selection.describe(),
            expires_at=now + retention,
        )

    @staticmethod
    def _reference(
        detail: HeldDetail,
        outcome: RecordOutcome,
        *,
        gss: str | None = None,
        agreement: str | None = None,
        reason: str | None = None,
    ) -> ActionRecord:
        return ActionRecord(
            trust_ods_code=detail.key.trust_ods_code,
            sha256=detail.key.sha256,
            row=detail.key.row,
            notification_id=str(detail.message.record.get("notification_id")),
            outcome=outcome,
            authority_gss_code=gss,
            agreement_id=agreement,
            reason=reason,
        )

    def _count_released(self, outcome: ActionOutcome, release: _Release) -> None:
        forward = release.forward
        counts = outcome.released.setdefault(
            (forward.authority.gss_code, forward.agreement.id),
            AuthorityCounts(
                gss_code=forward.authority.gss_code, name=forward.authority.name, agreement_id=forward.agreement.id
            ),
        )
        kind = release.record.notification_type
        if kind is NotificationType.NEW:
            counts.new += 1
        elif kind is NotificationType.AMEND:
            counts.amend += 1
        else:
            counts.cancel += 1

    def _finish(self, action: HeldAction, outcome: ActionOutcome, every_open: list[HeldSummary]) -> None:
        """Record the action's end, then tell the trust and operators (an event per file it changed)."""
        if self.ledger is not None:
            self.ledger.write(action.action_id, london_day(action.at))
        action.complete = True
        self.store.save_action(action)
        outcome.events = self._events(action, every_open)
        for event in outcome.events:
            if self.events is not None:
                self.events.publish(event)
        self.log.info(
            "held records acted on",
            extra={
                "action_id": action.action_id,
                "kind": action.kind.value,
                "counts": {k.value: v for k, v in action.counts().items()},
            },
        )

    def _events(self, action: HeldAction, every_open: list[HeldSummary]) -> list[HeldActionEvent]:
        by_file: dict[HeldKey, list[ActionRecord]] = {}
        for record in action.records:
            if record.outcome in (RecordOutcome.RELEASED, RecordOutcome.DISCARDED):
                by_file.setdefault(HeldKey(record.trust_ods_code, record.sha256, 0), []).append(record)
        summaries = {(s.key.trust_ods_code, s.key.sha256): s for s in every_open}
        open_per_file = Counter((s.key.trust_ods_code, s.key.sha256) for s in every_open)
        types = {(s.key.trust_ods_code, s.key.sha256, s.key.row): s.notification_type for s in every_open}
        events = []
        for file, records in by_file.items():
            summary = summaries[(file.trust_ods_code, file.sha256)]
            released: dict[tuple[str, str], AuthorityCounts] = {}
            for record in records:
                if record.outcome is not RecordOutcome.RELEASED or not record.authority_gss_code:
                    continue
                authority = self.registry.authority(record.authority_gss_code)
                counts = released.setdefault(
                    (record.authority_gss_code, record.agreement_id or ""),
                    AuthorityCounts(
                        gss_code=record.authority_gss_code,
                        name=authority.name if authority else record.authority_gss_code,
                        agreement_id=record.agreement_id or "",
                    ),
                )
                kind = types[(record.trust_ods_code, record.sha256, record.row)]
                if kind is NotificationType.NEW:
                    counts.new += 1
                elif kind is NotificationType.AMEND:
                    counts.amend += 1
                else:
                    counts.cancel += 1
            discarded = sum(record.outcome is RecordOutcome.DISCARDED for record in records)
            events.append(
                HeldActionEvent(
                    event_id=f"{action.action_id}:{file.trust_ods_code}:{file.sha256}",
                    action_id=action.action_id,
                    action="release" if action.kind is ActionKind.RELEASE else "discard",
                    acted_at=action.at,
                    trust_ods_code=file.trust_ods_code,
                    trust_name=self.registry.trust_name(file.trust_ods_code),
                    key=summary.file_key,
                    sha256=file.sha256,
                    report_key=summary.report_key or None,
                    released=sorted(released.values(), key=lambda c: c.gss_code),
                    discarded=discarded,
                    still_held=open_per_file[(file.trust_ods_code, file.sha256)] - len(records),
                )
            )
        return events


class ReleaseIncomplete(Exception):
    """SQS did not accept some released records: they were given back to the store, still held."""

    def __init__(self, outcome: ActionOutcome) -> None:
        super().__init__(
            f"{outcome.not_sent} record(s) were not accepted by SQS and are still held; "
            f"{outcome.released_total} were released. Run the release again."
        )
        self.outcome = outcome


def _council(summary: HeldSummary) -> str:
    if not summary.authority_gss_code:
        return ""
    return (
        f"{summary.authority_name} ({summary.authority_gss_code})"
        if summary.authority_name
        else summary.authority_gss_code
    )
