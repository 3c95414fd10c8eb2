"""The emails a file-processed event leads to, composed from counts and references only.

Authorities and operators see a file by its trust and a short content reference, never its name: a
trust might name a file after a patient. The trust's own receipt names its file. A file no registered
trust can be found for is reported to the operators, again without its name.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from importlib import resources
from string import Template

from birthnotify.domain.mesh import QUARANTINE_HELP
from birthnotify.domain.messages import (
    AuthorityCounts,
    FileProcessedEvent,
    FileStatus,
    HeldActionEvent,
    HeldReason,
    MeshQuarantinedEvent,
    QuarantineReason,
    WithheldReason,
)
from birthnotify.domain.record import ERROR_HELP, ErrorCode
from birthnotify.domain.registry import Authority, Registry, SharingAgreement, Trust
from birthnotify.shared.names import INBOUND_PREFIX, REPORTS_PREFIX

_TEMPLATES = resources.files("birthnotify.application.notify") / "templates"
TEXT_TEMPLATE = Template((_TEMPLATES / "email.txt").read_text(encoding="utf-8"))
HTML_TEMPLATE = Template((_TEMPLATES / "email.html").read_text(encoding="utf-8"))

HELD_REASON_TEXT = {
    HeldReason.NO_AUTHORITY: "the council code is not an English or Welsh council",
    HeldReason.POSTCODE_NOT_FOUND: "the postcode is not in the postcode directory and no council code was given",
    HeldReason.PSEUDO_POSTCODE: "a ZZ99 pseudo-postcode (no fixed abode or not known): a person must find the "
    "family's council",
    HeldReason.NO_AGREEMENT: "the council has no sharing agreement in force (it may have lapsed, or never been made)",
    HeldReason.RESIDENCE_CONFLICT: "the council code and the postcode lead to different councils",
    HeldReason.AMBIGUOUS_SUCCESSOR: "the council code is of a council that has ended and was split, and the "
    "postcode does not say which successor",
    HeldReason.OUTSIDE_SERVICE: "the address is in Scotland, Northern Ireland, the Channel Islands or the Isle of "
    "Man, outside this service",
}
QUARANTINE_REASON_TEXT = {
    QuarantineReason.UNKNOWN_SENDER: "it came from a mailbox no registered trust has",
    QuarantineReason.UNREADABLE_FILE_NAME: "its file name is not one of the formats the pipeline reads",
    QuarantineReason.UNEXPECTED_WORKFLOW: "it came under a workflow id the service does not take",
    QuarantineReason.NOT_A_DATA_MESSAGE: "it is a MESH report, not a file",
}
WITHHELD_REASON_TEXT = {
    WithheldReason.STILLBIRTH: "stillbirths",
    WithheldReason.RESTRICTED: "restricted (PDS-flagged) records",
    WithheldReason.SHARING_OBJECTION: "a parent objected to sharing",
}


class EmailKind(StrEnum):
    AUTHORITY_WAITING = "authority-waiting"
    TRUST_RECEIPT = "trust-receipt"
    HELD_ALERT = "held-alert"
    UNATTRIBUTED_FILE = "unattributed-file"
    AUTHORITY_DIGEST = "authority-digest"
    MESH_QUARANTINED = "mesh-quarantined"
    HELD_REMINDER = "held-reminder"
    """Held records have waited longer than the stage allows for a reviewer: the operators' daily reminder."""
    HELD_UPDATE = "held-update"
    """Reviewers released or discarded a file's held records: the trust and operators hear what became of them."""
    AGREEMENT_EXPIRY = "agreement-expiry"


@dataclass(frozen=True)
class Email:
    """One message to one or more recipients; ``key`` identifies it across retries."""

    kind: EmailKind
    key: str
    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str


@dataclass
class Document:
    """Paragraphs and bullet lists, rendered to both the plain-text and the HTML part."""

    heading: str
    blocks: list[str | list[str]] = field(default_factory=list)

    def para(self, text: str) -> Document:
        self.blocks.append(text)
        return self

    def bullets(self, items: list[str]) -> Document:
        if items:
            self.blocks.append(items)
        return self

    def text(self) -> str:
        return "\n\n".join(b if isinstance(b, str) else "\n".join(f"  - {i}" for i in b) for b in self.blocks)

    def html(self) -> str:
        return "\n".join(
            f"<p>{_escape_and_link(b)}</p>"
            if isinstance(b, str)
            else "<ul>" + "".join(f"<li>{_escape_and_link(i)}</li>" for i in b) + "</ul>"
            for b in self.blocks
        )


_URL = re.compile(r"https://[^\s<>\"']+?(?=[.,;:)]?(?:\s|$))")


def _escape_and_link(text: str) -> str:
    """HTML-escape a value; https addresses (the consumer guide, from configuration) become links."""
    return _URL.sub(lambda m: f'<a href="{m[0]}">{m[0]}</a>', html.escape(text))


@dataclass(frozen=True)
class Composer:
    registry: Registry
    stage: str
    consumer_guide_url: str
    reports_bucket: str

    def render(
        self, kind: EmailKind, key: str, recipients: tuple[str, ...] | list[str], subject: str, document: Document
    ) -> Email:
        values = {"stage": self.stage, "operator_contact": self.registry.operator_emails[0]}
        return Email(
            kind=kind,
            key=key,
            recipients=tuple(recipients),
            subject=subject,
            text=TEXT_TEMPLATE.substitute(values, heading=document.heading, body=document.text()),
            html=HTML_TEMPLATE.substitute(
                {k: html.escape(v) for k, v in values.items()},
                title=html.escape(subject),
                heading=html.escape(document.heading),
                body=document.html(),
            ),
        )

    # -- per file ------------------------------------------------------------------------------------

    def for_event(self, event: FileProcessedEvent) -> list[Email]:
        """Every email a file leads to, except digests (accumulated instead; see ``digest_counts``)."""
        trust = self.uploader(event)
        emails = [self.trust_receipt(event, trust) if trust else self.unattributed_file(event)]
        for counts in event.outcome.authorities:
            authority = self.registry.authority(counts.gss_code)
            if authority is not None and authority.notification_mode == "per_file":
                emails.append(
                    self.authority_waiting(
                        event, authority, counts.new, counts.amend, counts.cancel, counts.agreement_id, counts.notices
                    )
                )
        emails += self.held_alerts(event)
        return emails

    def authority_waiting(
        self,
        event: FileProcessedEvent,
        authority: Authority,
        new: int,
        amend: int,
        cancel: int,
        agreement_id: str,
        notices: int = 0,
    ) -> Email:
        total = new + amend + cancel + notices
        trust = self.trust_label(event)
        document = Document(f"{_births(total)} waiting for {authority.name}")
        document.para(
            f"{trust} ({event.trust_ods_code}) sent a file (reference {_reference(event)}) with "
            f"records for you under sharing agreement {agreement_id}. On your queue now:"
        )
        document.bullets(
            [
                f"{new} new",
                f"{amend} amended (replace the notification they name)",
                f"{cancel} cancelled (withdraw the notification they name)",
                *(
                    [
                        f"{notices} about records you received before (a family moved out of your area, "
                        "or a cancellation)"
                    ]
                    if notices
                    else []
                ),
            ]
        )
        document.para(
            f"Collect them with `birthnotify consume` using your authority's consumer role; records "
            f"stay on the queue for 14 days. How to: {self.consumer_guide_url}"
        )
        return self.render(
            EmailKind.AUTHORITY_WAITING,
            f"{event.event_id}:{EmailKind.AUTHORITY_WAITING}:{authority.gss_code}",
            authority.contact_emails,
            f"{_births(total)} waiting from {trust}",
            document,
        )

    def trust_label(self, event: FileProcessedEvent | HeldActionEvent) -> str:
        """The trust's name as the event or, failing that, the registry gives it."""
        registered = self.registry.trust(event.trust_ods_code) if event.trust_ods_code else None
        return event.trust_name or (registered.name if registered else None) or event.trust_ods_code or "unknown"

    def uploader(self, event: FileProcessedEvent) -> Trust | None:
        """The registered trust whose folder the file was uploaded to, even when the key was refused (a file
        in a subfolder of ``inbound/<ODS>/`` is rejected before the event names its trust)."""
        if event.trust_ods_code:
            return self.registry.trust(event.trust_ods_code)
        parts = event.key.split("/")
        if len(parts) > 2 and f"{parts[0]}/" == INBOUND_PREFIX and parts[1]:
            return self.registry.trust(parts[1].upper())
        return None

    def trust_receipt(self, event: FileProcessedEvent, trust: Trust) -> Email:
        name = event.key.rsplit("/", 1)[-1]
        outcome = event.outcome
        if event.status is FileStatus.DUPLICATE and event.duplicate_of is not None:
            first = event.duplicate_of
            document = Document(f"Your file {name} was already processed")
            document.para(
                f"It is identical to {first.key}, which was processed before, so nothing in it was "
                "forwarded again and nobody receives its records twice. Nothing needs doing."
            )
            if first.report_key:
                document.para(f"That file's report: s3://{self.reports_bucket}/{first.report_key}")
            document.para("To correct records, send AMEND or CANCEL rows in a new file.")
            subject = f"Already processed: {name}"
        elif event.status is FileStatus.REJECTED and event.file_error is not None:
            code = event.file_error.code
            document = Document(f"Your file {name} was not accepted")
            document.para(f"Nothing in it was forwarded. Reason: {event.file_error.message}")
            if code is not ErrorCode.FILE_DUPLICATE:
                document.para(
                    f"How to fix it: {ERROR_HELP[code]} Then upload the corrected file again (error code {code.value})."
                )
            subject = f"File not accepted: {name}"
        else:
            document = Document(f"Your file {name} was processed")
            document.para(
                f"{outcome.rows_in} rows received: {outcome.forwarded} forwarded, {outcome.rejected} "
                f"rejected, {outcome.withheld} withheld, {outcome.held} held for review."
            )
            document.bullets(
                [
                    f"{a.name}: {a.total} forwarded ({a.new} new, {a.amend} amended, {a.cancel} cancelled)"
                    for a in outcome.authorities
                ]
            )
            document.bullets(
                [
                    f"withheld, {WITHHELD_REASON_TEXT[reason]}: {count}"
                    for reason, count in outcome.withheld_by_reason.items()
                ]
            )
            document.bullets(
                [
                    f"held, {HELD_REASON_TEXT[h.reason]}"
                    f"{' (' + h.authority_name + ')' if h.authority_name else ''}: {h.count}"
                    for h in outcome.held_by_reason
                ]
            )
            if outcome.rejected:
                document.para("Rejected rows, by error code:")
                document.bullets([f"{code.value}: {count}" for code, count in outcome.rejected_by_code.items()])
                document.para(
                    f"The rows and how to fix each are in s3://{self.reports_bucket}/"
                    f"{event.rejected_rows_key} (row numbers and notification ids only). Send the "
                    "corrected rows in a new file."
                )
            if outcome.rows_with_warnings:
                rows = outcome.rows_with_warnings
                document.para(
                    f"{rows} row{'s were' if rows != 1 else ' was'} forwarded or counted without an optional "
                    "field that was invalid (the field was left out, so the family still gets support). "
                    "Warnings, by error code:"
                )
                document.bullets([f"{code.value}: {count}" for code, count in outcome.warnings_by_code.items()])
                document.para(
                    'Each warning\'s row, notification id and field are under "warnings" in the full '
                    "report below. Correct the field in your system; an AMEND row sends the corrected "
                    "record on."
                )
            subject = f"File processed: {name}: {outcome.forwarded} forwarded, {outcome.rejected} rejected"
        document.para(f"Full report: s3://{self.reports_bucket}/{event.report_key}")
        if event.mesh is not None:
            local = f" (your local id {event.mesh.local_id})" if event.mesh.local_id else ""
            document.para(
                f"The file came by MESH as message {event.mesh.message_id}{local}: its report is also sent "
                f"back to your mailbox {event.mesh.mailbox}."
            )
        return self.render(
            EmailKind.TRUST_RECEIPT,
            f"{event.event_id}:{EmailKind.TRUST_RECEIPT}",
            trust.contact_emails,
            subject,
            document,
        )

    def unattributed_file(self, event: FileProcessedEvent) -> Email:
        """Operators hear of a file no registered trust sent (an unknown folder, or a key outside
        ``inbound/<ODS>/``), without its name: they find it by its reference in the reports bucket."""
        code = event.trust_ods_code
        where = (
            f"the folder {INBOUND_PREFIX}{code}/, which belongs to no registered trust"
            if code
            else f"a location outside {INBOUND_PREFIX}<ODS code>/<file name>"
        )
        # The trust's folder only: below it, the report's key holds the file's name, which may be personal.
        folder = "/".join(event.report_key.split("/")[:2]) + "/" if event.report_key else REPORTS_PREFIX
        document = Document("A file was uploaded that no registered trust sent")
        document.para(
            f"A file (reference {_reference(event)}) was uploaded to {where}, so no trust can be told about it."
        )
        if event.file_error is not None:
            document.para(
                f"It was not accepted ({event.file_error.code.value}): {event.file_error.message} "
                "Nothing in it was forwarded."
            )
        else:
            document.para(
                f"{event.outcome.rows_in} rows were processed: {event.outcome.forwarded} forwarded, "
                f"{event.outcome.held} held (the trust may have left the registry since)."
            )
        document.para(
            f"Its report is under s3://{self.reports_bucket}/{folder} with event_id {event.event_id}. "
            "Find out who uploaded it; register the trust if it should be able to send files."
        )
        return self.render(
            EmailKind.UNATTRIBUTED_FILE,
            f"{event.event_id}:{EmailKind.UNATTRIBUTED_FILE}",
            self.registry.operator_emails,
            "A file from an unregistered location was not accepted"
            if event.file_error is not None
            else "A file from an unregistered trust was processed",
            document,
        )

    def held_alerts(self, event: FileProcessedEvent) -> list[Email]:
        """Operators hear of every held record; an authority also hears when its agreement has lapsed."""
        held = event.outcome.held_by_reason
        if not held:
            return []
        trust = self.trust_label(event)
        total = sum(h.count for h in held)
        document = Document(f"{total} record{'s' if total != 1 else ''} from {trust} held for review")
        document.para(
            f"File reference {_reference(event)} from {trust} ({event.trust_ods_code}). These records "
            "were not forwarded; they wait in the held store until a reviewer releases or discards them "
            "(`birthnotify held list`, as the held reviewer role):"
        )
        document.bullets(
            [
                f"{h.count}: {HELD_REASON_TEXT[h.reason]}{' (' + h.authority_name + ')' if h.authority_name else ''}"
                for h in held
            ]
        )
        document.para(
            "Renew or add the sharing agreement in the registry, deploy it, then `birthnotify held "
            "release`; or `birthnotify held discard --reason ...` what must not be shared."
        )
        emails = [
            self.render(
                EmailKind.HELD_ALERT,
                f"{event.event_id}:{EmailKind.HELD_ALERT}:operators",
                self.registry.operator_emails,
                f"{_births(total)} held from {trust}",
                document,
            )
        ]
        for h in held:
            authority = self.registry.authority(h.authority_gss_code) if h.authority_gss_code else None
            if h.reason is HeldReason.NO_AGREEMENT and authority is not None:
                lapsed = Document(f"{_births(h.count)} for {authority.name} held")
                lapsed.para(
                    f"{trust} sent records for babies living in your area (file reference "
                    f"{_reference(event)}), but no sharing agreement with you is in force, so they were "
                    "not forwarded. When a new agreement is in the registry, operators can release them."
                )
                lapsed.para(f"Contact {self.registry.operator_emails[0]} about renewing the agreement.")
                emails.append(
                    self.render(
                        EmailKind.HELD_ALERT,
                        f"{event.event_id}:{EmailKind.HELD_ALERT}:{authority.gss_code}",
                        authority.contact_emails,
                        "Birth notifications held: no sharing agreement in force",
                        lapsed,
                    )
                )
        return emails

    def mesh_quarantined(self, event: MeshQuarantinedEvent) -> Email:
        """Operators hear of a MESH message set aside, by its message id: never its file name, which a trust
        may have made from a patient's details."""
        trust = self.registry.trust(event.trust_ods_code) if event.trust_ods_code else None
        if not event.sender_mailbox:
            sender = "MESH itself (no sending mailbox)"
        else:
            sender = f"mailbox {event.sender_mailbox}" + (
                f" ({trust.name}, {trust.ods_code})" if trust else " (no registered trust)"
            )
        document = Document(f"MESH message {event.message_id} was quarantined")
        document.para(
            f"A MESH message from {sender}, workflow {event.workflow_id or '(none)'}, was not passed to "
            f"the pipeline: {QUARANTINE_REASON_TEXT[event.reason]} ({event.reason.value}). Nothing in it "
            "was read or forwarded."
        )
        document.para(
            f"It is kept, as received, at s3://{event.bucket}/{event.key} (it expires with raw uploads). "
            "It was acknowledged, so it no longer waits in the service's MESH inbox."
        )
        document.para(f"What to do: {QUARANTINE_HELP[event.reason]}")
        return self.render(
            EmailKind.MESH_QUARANTINED,
            f"{event.event_id}:{EmailKind.MESH_QUARANTINED}",
            self.registry.operator_emails,
            f"MESH message quarantined: {event.message_id}",
            document,
        )

    # -- reviewers' actions on held records ----------------------------------------------------------

    def for_held_action(self, event: HeldActionEvent) -> list[Email]:
        """The trust and operators hear what became of a file's held records; a per-file council that received
        some hears they are waiting (a digest council counts them in its digest instead)."""
        trust = self.registry.trust(event.trust_ods_code)
        emails = [self.held_update_for_trust(event, trust)] if trust else []
        emails.append(self.held_update_for_operators(event))
        for counts in event.released:
            authority = self.registry.authority(counts.gss_code)
            if authority is not None and authority.notification_mode == "per_file":
                emails.append(self.released_waiting(event, authority, counts))
        return emails

    def _held_update(self, event: HeldActionEvent, document: Document) -> None:
        document.bullets(
            [
                f"released to {c.name} under sharing agreement {c.agreement_id}: {c.total} ({c.new} new, "
                f"{c.amend} amended, {c.cancel} cancelled)"
                for c in event.released
            ]
        )
        if event.discarded:
            document.bullets([f"discarded by the service's operators: {event.discarded} (they will not be shared)"])
        document.para(
            f"{event.still_held} record{'s' if event.still_held != 1 else ''} of this file "
            f"{'are' if event.still_held != 1 else 'is'} still held for review."
            if event.still_held
            else "No record of this file is held any more."
        )

    def held_update_for_trust(self, event: HeldActionEvent, trust: Trust) -> Email:
        name = event.key.rsplit("/", 1)[-1]
        acted = event.released_total + event.discarded
        verb = "released" if event.action == "release" else "discarded"
        document = Document(f"{acted} held record{'s' if acted != 1 else ''} from your file {name} {verb}")
        document.para(
            f"When your file {name} was processed, some of its records were held for review. On "
            f"{event.acted_at:%d %B %Y} the service's operators acted on them:"
        )
        self._held_update(event, document)
        if event.report_key:
            document.para(f"The file's report (as processed): s3://{self.reports_bucket}/{event.report_key}")
        return self.render(
            EmailKind.HELD_UPDATE,
            f"{event.event_id}:{EmailKind.HELD_UPDATE}:trust",
            trust.contact_emails,
            f"Held records {verb}: {name}",
            document,
        )

    def held_update_for_operators(self, event: HeldActionEvent) -> Email:
        trust = self.trust_label(event)
        acted = event.released_total + event.discarded
        verb = "released" if event.action == "release" else "discarded"
        document = Document(f"{acted} held record{'s' if acted != 1 else ''} from {trust} {verb}")
        document.para(
            f"File reference {_reference(event)} from {trust} ({event.trust_ods_code}), action {event.action_id}:"
        )
        self._held_update(event, document)
        document.para("Who acted, when and why: `birthnotify held actions` (as the held reviewer role).")
        return self.render(
            EmailKind.HELD_UPDATE,
            f"{event.event_id}:{EmailKind.HELD_UPDATE}:operators",
            self.registry.operator_emails,
            f"{_births(acted)} {verb} from {trust}",
            document,
        )

    def released_waiting(self, event: HeldActionEvent, authority: Authority, counts: AuthorityCounts) -> Email:
        trust = self.trust_label(event)
        document = Document(f"{_births(counts.total)} released to {authority.name}")
        document.para(
            f"{trust} ({event.trust_ods_code}) sent these records earlier (file reference "
            f"{_reference(event)}); they were held until they could be shared with you, and the service's "
            f"operators have now released them under sharing agreement {counts.agreement_id}. On your "
            "queue now:"
        )
        document.bullets(
            [
                f"{counts.new} new",
                f"{counts.amend} amended (replace the notification they name)",
                f"{counts.cancel} cancelled (withdraw the notification they name)",
            ]
        )
        document.para(
            f"Collect them with `birthnotify consume` using your authority's consumer role; records "
            f"stay on the queue for 14 days. How to: {self.consumer_guide_url}"
        )
        return self.render(
            EmailKind.AUTHORITY_WAITING,
            f"{event.event_id}:{EmailKind.AUTHORITY_WAITING}:{authority.gss_code}",
            authority.contact_emails,
            f"{_births(counts.total)} released to you from {trust}",
            document,
        )

    def held_reminder(
        self, day: date, waiting: int, overdue: Counter[HeldReason], oldest: timedelta, max_age: timedelta
    ) -> Email:
        """The operators' daily reminder of held records waiting too long for a reviewer (counts only)."""
        total = sum(overdue.values())
        limit = _duration(max_age)
        document = Document(f"{total} held record{'s' if total != 1 else ''} waiting over {limit} for review")
        document.para(
            f"{waiting} record{'s' if waiting != 1 else ''} wait in the held store for a reviewer; "
            f"{total} of them for more than {limit}, the oldest for {_duration(oldest)}. By reason:"
        )
        document.bullets(
            [
                f"{count}: {HELD_REASON_TEXT[reason]}"
                for reason, count in sorted(overdue.items(), key=lambda item: (-item[1], item[0].value))
            ]
        )
        document.para(
            f"Review them as the held reviewer role: `birthnotify held list --stage {self.stage}`; then "
            "add the agreement or council to the registry, deploy it and `birthnotify held release`, or "
            "`birthnotify held discard --reason ...` what must not be shared. This reminder comes daily "
            "while any record waits longer."
        )
        return self.render(
            EmailKind.HELD_REMINDER,
            f"held-reminder:{day.isoformat()}",
            self.registry.operator_emails,
            f"Held records waiting: {total} for over {limit}",
            document,
        )

    # -- digests -------------------------------------------------------------------------------------

    def digest(
        self,
        authority: Authority,
        day: date,
        new: int,
        amend: int,
        cancel: int,
        files: int,
        trusts: list[str],
        agreements: list[str] | None = None,
    ) -> Email:
        total = new + amend + cancel
        document = Document(f"{_births(total)} for {authority.name}: digest for {day:%d %B %Y}")
        agreed = f" under sharing agreement {', '.join(sorted(agreements))}" if agreements else ""
        document.para(
            f"From {files} file{'s' if files != 1 else ''} sent by {', '.join(sorted(trusts))}{agreed}. "
            "On your queue now:"
        )
        document.bullets(
            [
                f"{new} new",
                f"{amend} amended (replace the notification they name)",
                f"{cancel} cancelled (withdraw the notification they name)",
            ]
        )
        document.para(
            f"Collect them with `birthnotify consume` using your authority's consumer role; records "
            f"stay on the queue for 14 days. How to: {self.consumer_guide_url}"
        )
        return self.render(
            EmailKind.AUTHORITY_DIGEST,
            f"digest:{authority.gss_code}:{day.isoformat()}",
            authority.contact_emails,
            f"Daily digest: {_births(total)} waiting",
            document,
        )

    def agreement_expiry(
        self, authority: Authority, agreement: SharingAgreement, days_left: int, threshold: int
    ) -> Email:
        """The warning, to the operators and the council, that an agreement ends with no successor."""
        assert agreement.valid_to is not None
        ends = f"{agreement.valid_to:%d %B %Y}"
        document = Document(f"Sharing agreement {agreement.id} with {authority.name} ends in {_days(days_left)}")
        document.para(
            f"Agreement {agreement.id} ({agreement.purpose}) is in force until {ends}, and the registry "
            f"holds no agreement with {authority.name} ({authority.gss_code}) that starts after it."
        )
        document.para(
            "From the day after, no birth notification will be forwarded to the council: each one will "
            "be held for review as NO_AGREEMENT, and the families it could support will not be offered "
            "it until an agreement is in force."
        )
        document.para(
            "To keep records flowing: agree the renewal, add it to the registry as a new agreement "
            "starting the day after this one ends, and deploy. If the sharing is to stop, nothing needs "
            "doing; this is the last warning but one or two (warnings go at 60, 30 and 7 days)."
        )
        return self.render(
            EmailKind.AGREEMENT_EXPIRY,
            f"{EmailKind.AGREEMENT_EXPIRY}:{agreement.id}:{agreement.valid_to}:{threshold}",
            [*self.registry.operator_emails, *authority.contact_emails],
            f"Sharing agreement {agreement.id} ends in {_days(days_left)} ({ends})",
            document,
        )


def _duration(age: timedelta) -> str:
    hours = int(age.total_seconds() // 3600)
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{hours // 24} days"


def _days(count: int) -> str:
    return f"{count} day{'s' if count != 1 else ''}"


def _births(count: int) -> str:
    return f"{count} birth notification{'s' if count != 1 else ''}"


def _reference(event: FileProcessedEvent | HeldActionEvent) -> str:
    """A short reference to a file's content (or, for a file refused before it was read, to its event)."""
    return (event.sha256 or event.event_id.rsplit(":", 1)[-1])[:12]
