"""The notifier: turns file-processed events into emails, each sent at most once per recipient; sends the
report of a file that came by MESH back to the trust's mailbox, each document once; tells the operators of
a MESH message set aside in quarantine."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from pydantic import BaseModel

from birthnotify.application.notify.compose import Composer, Email
from birthnotify.application.ports import (
    BulkEmailTransport,
    Deliveries,
    DeliveryInProgress,
    DeliveryRun,
    DestinationRefused,
    DigestStore,
    EmailTransport,
    HeldAges,
    Log,
    MeshSender,
    ReportSource,
    SentMarks,
)
from birthnotify.domain.messages import FileProcessedEvent, HeldActionEvent, MeshQuarantinedEvent
from birthnotify.domain.registry import NotificationMode, Registry
from birthnotify.shared.clock import london_day, utc_now

SENT_RECORD_SECONDS = 35 * 24 * 3600
DEFAULT_LEASE_SECONDS = 15 * 60
"""Without a Lambda context (a local run), a run of emails is held as long as a Lambda can run."""
EXPIRY_WARNING_DAYS = (60, 30, 7)
"""An agreement that ends with no successor is warned of once at each of these many days before its end."""
DIGEST_LOOKBACK_DAYS = 14
"""A scheduled run also sends any unsent digest of the last 14 days (a missed or failed run): as long as
records stay on an authority's queue."""


@dataclass(frozen=True)
class NotifyPorts:
    """Everything the notifier needs from outside: a way to send mail, the digest counts, a memory of what
    was sent."""

    transport: EmailTransport
    digests: DigestStore
    idempotency_store: BasePersistenceLayer
    """Powertools idempotency: each document of a report sent back by MESH, once."""
    deliveries: Deliveries
    """Who was mailed: each recipient of an email at most once, across retries."""
    marks: SentMarks
    """What expiry warnings were sent (the state table)."""
    mesh: MeshSender | None = None
    """The service's MESH mailbox, when the stage has one: reports of files that came by MESH go back by it."""
    reports: ReportSource | None = None
    held: HeldAges | None = None
    """The held store's open records (counts and ages only), for the daily reminder."""


class MeshNotConfigured(RuntimeError):
    """A file came by MESH but this notifier has no MESH mailbox to answer it with."""


class Delivered(BaseModel):
    message_id: str


class ReportBack(BaseModel):
    """One document of a file's report, sent back by MESH at most once, remembered by ``key``."""

    key: str
    mailbox: str
    report_key: str
    file_name: str
    content_type: str


class NotifyService:
    def __init__(
        self,
        *,
        registry: Registry,
        composer: Composer,
        ports: NotifyPorts,
        clock: Callable[[], datetime] = utc_now,
        log: Log | None = None,
        mesh_report_workflow: str = "",
    ) -> None:
        self.registry = registry
        self.log: Log = log or logging.getLogger("birthnotify.notify")
        self.composer = composer
        self.ports = ports
        self._clock = clock
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="key", expires_after_seconds=SENT_RECORD_SECONDS, raise_on_no_idempotency_key=True
        )
        self._report_back_once = idempotent_function(
            data_keyword_argument="document",
            persistence_store=ports.idempotency_store,
            config=self.idempotency,
            output_serializer=PydanticSerializer(model=Delivered),
        )(self._report_back)
        self.mesh_report_workflow = mesh_report_workflow
        self.sent: list[tuple[Email, str]] = []
        """What this container sent (for metrics and the local demo's summary)."""
        self.reports_sent: list[tuple[str, str]] = []
        """(mailbox, MESH message id) of each report document this container sent back by MESH."""
        self.report_failures = 0
        self._context: Any = None

    @property
    def transport(self) -> EmailTransport:
        return self.ports.transport

    @property
    def digests(self) -> DigestStore:
        return self.ports.digests

    def register_lambda_context(self, context: Any) -> None:
        self.idempotency.register_lambda_context(context)
        self._context = context

    def handle_event(self, event: FileProcessedEvent | HeldActionEvent) -> int:
        """Send the event's emails and count digest authorities' records; returns emails newly sent. A file
        processed, or reviewers' action on a file's held records (records released count like records
        forwarded)."""
        before = len(self.sent)
        failures: list[Exception] = []
        if isinstance(event, HeldActionEvent):
            emails, day, forwarded = self.composer.for_held_action(event), london_day(event.acted_at), event.released
        else:
            emails, day, forwarded = (
                self.composer.for_event(event),
                london_day(event.processed_at),
                event.outcome.authorities,
            )
        try:
            self.send_all(emails, f"event#{event.event_id}")
        except Exception as exc:  # noqa: BLE001 (the digest counts and the MESH report still go; the retry
            failures.append(exc)  # mails only those not yet mailed)
        for counts in forwarded:
            authority = self.registry.authority(counts.gss_code)
            if authority is not None and authority.notification_mode is NotificationMode.DIGEST:
                self.digests.add(
                    authority.gss_code,
                    day,
                    event.event_id,
                    event.trust_name or event.trust_ods_code or "",
                    counts.agreement_id,
                    counts.new,
                    counts.amend,
                    counts.cancel,
                )
        if isinstance(event, FileProcessedEvent) and event.mesh is not None:
            try:
                self.report_back(event)
            except Exception as exc:  # noqa: BLE001 (retried with the emails, each part sent once)
                failures.append(exc)
        if failures:
            raise failures[0]
        return len(self.sent) - before

    def handle_notice(self, event: MeshQuarantinedEvent) -> int:
        """Tell the operators of a quarantined MESH message (once); returns emails newly sent."""
        before = len(self.sent)
        self.send(self.composer.mesh_quarantined(event))
        return len(self.sent) - before

    def report_back(self, event: FileProcessedEvent) -> None:
        """Send the file's report (the JSON, and the rejected rows' CSV when there is one) to the mailbox it
        came from, each document once: a retry after a failure sends only what was not sent."""
        origin = event.mesh
        assert origin is not None
        if self.ports.mesh is None or self.ports.reports is None or not self.mesh_report_workflow:
            raise MeshNotConfigured("a file came by MESH but the notifier has no MESH secret or report workflow")
        documents = [
            (event.report_key, f"report-{origin.message_id}.json", "application/json"),
            (event.rejected_rows_key, f"rejected-rows-{origin.message_id}.csv", "text/csv"),
        ]
        failures: list[Exception] = []
        for report_key, file_name, content_type in documents:
            if not report_key:
                continue
            document = ReportBack(
                key=f"{event.event_id}:mesh:{file_name}",
                mailbox=origin.mailbox,
                report_key=report_key,
                file_name=file_name,
                content_type=content_type,
            )
            try:
                self._report_back_once(document=document, event=event)
            except Exception as exc:  # noqa: BLE001 (the other document is still sent)
                self.report_failures += 1
                self.log.warning(
                    "report not sent back by MESH", extra={"message_id": origin.message_id, "error": type(exc).__name__}
                )
                failures.append(exc)
        if failures:
            raise failures[0]

    def _report_back(self, document: ReportBack, event: FileProcessedEvent) -> Delivered:
        assert self.ports.mesh is not None and self.ports.reports is not None and event.mesh is not None
        outcome = event.outcome
        subject = (
            f"Birth notifications report: {event.status.value}, {outcome.forwarded} forwarded, "
            f"{outcome.rejected} rejected"
        )
        body, size = self.ports.reports.open(document.report_key)
        try:
            with self.ports.mesh() as mailbox:
                message_id = mailbox.send(
                    document.mailbox,
                    body,
                    size,
                    workflow_id=self.mesh_report_workflow,
                    file_name=document.file_name,
                    local_id=event.mesh.message_id,
                    subject=subject,
                    content_type=document.content_type,
                )
        finally:
            body.close()
        self.reports_sent.append((document.mailbox, message_id))
        self.log.info(
            "report sent back by MESH", extra={"message_id": event.mesh.message_id, "report_message_id": message_id}
        )
        return Delivered(message_id=message_id)

    def remind_held(self, max_age: timedelta) -> int:
        """Tell the operators, once a day and in counts only, of held records that have waited longer than
        ``max_age`` for a reviewer (the held store keeps them until someone acts, so nothing expires them);
        returns emails newly sent."""
        if self.ports.held is None:
            return 0
        now = self._clock()
        waiting = self.ports.held.open_records()
        overdue = [summary for summary in waiting if now - summary.held_at > max_age]
        if not overdue:
            return 0
        before = len(self.sent)
        self.send(
            self.composer.held_reminder(
                london_day(now),
                len(waiting),
                Counter(s.reason for s in overdue),
                max(now - s.held_at for s in overdue),
                max_age,
            )
        )
        return len(self.sent) - before

    def send_digests(self) -> int:
        """Send every unsent digest of the last days, today excluded; returns how many digests were sent.

        Every authority's pending days are looked at, not only those now in digest mode, so counts taken
        before an authority went back to per-file mails are still sent. A failure does not stop the other
        digests; it is raised at the end (the scheduled invocation fails, and the next run sends it)."""
        sent = 0
        today = london_day(self._clock())
        days = [today - timedelta(days=back) for back in range(DIGEST_LOOKBACK_DAYS, 0, -1)]
        failures: list[Exception] = []
        for pending in self.digests.unsent([a.gss_code for a in self.registry.authorities], days):
            authority = self.registry.authority(pending.gss_code)
            try:
                digest = pending if pending.closed else self.digests.close(pending.gss_code, pending.day)
                if authority is not None and digest.total:
                    self.send(
                        self.composer.digest(
                            authority,
                            digest.day,
                            digest.new,
                            digest.amend,
                            digest.cancel,
                            digest.files,
                            digest.trusts,
                            digest.agreements,
                        )
                    )
                    sent += 1
                self.digests.mark_sent(digest.gss_code, digest.day)
            except Exception as exc:  # noqa: BLE001 (the other authorities' digests are still sent)
                self.log.warning(
                    "digest not sent",
                    extra={"authority": pending.gss_code, "day": pending.day.isoformat(), "error": type(exc).__name__},
                )
                failures.append(exc)
        if failures:
            raise failures[0]
        return sent

    def send_expiry_warnings(self) -> int:
        """Warn the operators and the council of each agreement ending within 60, 30 or 7 days with no successor in
        the registry: the most urgent threshold reached, once (a missed run still warns at the next one, a
        repeated run sends nothing again). Returns how many warnings were sent."""
        today = london_day(self._clock())
        sent = 0
        failures: list[Exception] = []
        for authority in self.registry.authorities:
            for agreement in authority.agreements:
                if agreement.valid_to is None or any(
                    other.valid_from > agreement.valid_to for other in authority.agreements
                ):
                    continue
                days_left = (agreement.valid_to - today).days
                due = [threshold for threshold in EXPIRY_WARNING_DAYS if 0 <= days_left <= threshold]
                if not due:
                    continue
                email = self.composer.agreement_expiry(authority, agreement, days_left, min(due))
                try:
                    if self.ports.marks.was_sent(email.key):
                        continue
                    self.send(email)
                    self.ports.marks.mark_sent(email.key)
                    sent += 1
                except Exception as exc:  # noqa: BLE001 (the other warnings are still sent)
                    self.log.warning(
                        "expiry warning not sent", extra={"agreement": agreement.id, "error": type(exc).__name__}
                    )
                    failures.append(exc)
        if failures:
            raise failures[0]
        return sent

    def send(self, email: Email) -> None:
        """Send to every recipient not yet mailed; raises if any send fails (SQS then retries)."""
        self.send_all([email], email.key)

    def send_all(self, emails: list[Email], run_key: str) -> None:
        """Send each email to each of its recipients not yet mailed, remembered together under ``run_key``;
        raises the first failure once the others are sent (SQS then retries, and mails only the rest).

        With a bulk transport (SES) the run is claimed once, its recipients leave in one request per 50, and
        those accepted are marked in one write: a crash or a DynamoDB failure between SES accepting a bulk and
        that write mails the bulk's recipients again after the lease (adapters/deliveries.py says why that is
        acceptable). Otherwise (GOV.UK Notify) each recipient is claimed and marked on its own."""
        if not emails:
            return
        run = self.ports.deliveries.run(run_key, self._lease_seconds())
        failures: list[Exception] = []
        try:
            transport = self.transport
            if isinstance(transport, BulkEmailTransport):
                self._send_in_bulk(transport, run, emails, failures)
            else:
                self._send_one_by_one(run, emails, failures)
        except DeliveryInProgress as exc:
            self.log.warning("emails being sent by another invocation", extra={"error": type(exc).__name__})
            failures.append(exc)
        finally:
            run.close()
        if failures:
            raise failures[0]

    def _send_one_by_one(self, run: DeliveryRun, emails: list[Email], failures: list[Exception]) -> None:
        for email in emails:
            for recipient in email.recipients:
                mark = f"{email.key}:{recipient}"
                if not run.claim(mark):
                    continue
                try:
                    self._deliver(email, recipient)
                except Exception as exc:  # noqa: BLE001 (one failed recipient must not stop the others)
                    self.log.warning("email not sent", extra={"kind": email.kind.value, "error": type(exc).__name__})
                    failures.append(exc)
                else:
                    run.sent(mark)

    def _send_in_bulk(
        self, transport: BulkEmailTransport, run: DeliveryRun, emails: list[Email], failures: list[Exception]
    ) -> None:
        deliveries = {
            f"{email.key}:{recipient}": (email, recipient) for email in emails for recipient in email.recipients
        }
        todo = run.claim_all(list(deliveries))
        size = transport.max_destinations
        for start in range(0, len(todo), size):
            run.remember()  # the previous bulk's recipients, before the next bulk goes (none pending: no request)
            chunk = todo[start : start + size]
            try:
                outcomes = transport.send_bulk([deliveries[mark] for mark in chunk])
            except Exception as exc:  # noqa: BLE001 (nobody in this bulk was mailed; the next bulk still goes)
                self.log.warning("emails not sent", extra={"emails": len(chunk), "error": type(exc).__name__})
                failures.append(exc)
                continue
            for mark, outcome in zip(chunk, outcomes, strict=True):
                email, recipient = deliveries[mark]
                if isinstance(outcome, DestinationRefused):  # not marked: the next attempt mails it
                    self.log.warning("email not sent", extra={"kind": email.kind.value, "error": str(outcome)})
                    failures.append(outcome)
                    continue
                run.sent(mark)
                self._record_sent(email, recipient, outcome)

    def _lease_seconds(self) -> float:
        """How long this invocation may still be mailing: after that, a retry may take its recipients."""
        if self._context is None:
            return DEFAULT_LEASE_SECONDS
        return max(float(self._context.get_remaining_time_in_millis()) / 1000, 1.0)

    def _deliver(self, email: Email, recipient: str) -> str:
        message_id = self.transport.send(email, recipient)
        self._record_sent(email, recipient, message_id)
        return message_id

    def _record_sent(self, email: Email, recipient: str, message_id: str) -> None:
        self.sent.append((email, recipient))
        self.log.info("email sent", extra={"kind": email.kind.value, "message_id": message_id})
