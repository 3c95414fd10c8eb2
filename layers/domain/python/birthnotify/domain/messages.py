"""What leaves the ingest function: the message an authority receives for each record, and the
"file processed" event the notifier consumes. docs/schemas/ holds their generated JSON Schemas."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from birthnotify.domain.record import ErrorCode, NotificationType

MESSAGE_SCHEMA_VERSION: Literal["1"] = "1"


class SharedRecord(BaseModel):
    """The fields of a notification an agreement may allow; a message carries only the allowed ones."""

    model_config = ConfigDict(extra="forbid")

    baby_nhs_number: str | None = None
    baby_date_of_birth: date | None = None
    baby_time_of_birth: time | None = None
    baby_sex: Literal["1", "2", "9", "X"] | None = None
    birth_weight_grams: int | None = None
    gestation_weeks: int | None = None
    birth_order: int | None = None
    number_of_babies: int | None = None
    mother_nhs_number: str | None = None
    mother_given_name: str | None = None
    mother_family_name: str | None = None
    mother_date_of_birth: date | None = None
    address_line_1: str | None = None
    address_line_2: str | None = None
    address_line_3: str | None = None
    address_line_4: str | None = None
    postcode: str | None = None
    residence_la_code: str | None = None
    gp_practice_code: str | None = None


class SourceFile(BaseModel):
    """Where a record came from, so an authority can quote it back to the trust."""

    trust_ods_code: str
    key: str = Field(description="S3 key of the uploaded file.")
    sha256: str = Field(description="SHA-256 of the file's bytes as uploaded.")
    row: int = Field(description="1-based data row number (the header is not counted).")


class AuthorityMessage(BaseModel):
    """Body of one SQS message on an authority's queue: a single birth notification."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = MESSAGE_SCHEMA_VERSION
    agreement_id: str = Field(description="The sharing agreement under which the fields were shared.")
    authority_gss_code: str
    source: SourceFile
    notification_id: str
    notification_type: NotificationType
    original_notification_id: str | None = None
    notice: Literal["MOVED_OUT"] | None = Field(
        None,
        description="MOVED_OUT: the family of the notification you received has moved out of your area "
        "(an AMEND placed them in another council, which received it). The record is empty: no new address.",
    )
    record: SharedRecord = Field(description="Only the fields the agreement allows; others are absent.")


class HeldReason(StrEnum):
    """Why a valid record was kept in the held store for a person to review."""

    NO_AUTHORITY = "NO_AUTHORITY"
    """The council code (residence_la_code, or the postcode directory's) is not an English or Welsh council
    the councils data knows."""
    POSTCODE_NOT_FOUND = "POSTCODE_NOT_FOUND"
    """The postcode is not in the postcode directory and no residence_la_code was given."""
    PSEUDO_POSTCODE = "PSEUDO_POSTCODE"
    """A ZZ99 pseudo-postcode (no fixed abode, not known): a person must find the family's council."""
    NO_AGREEMENT = "NO_AGREEMENT"
    """The council that runs children's services there has no sharing agreement in force on the processing
    date, or no entry in the registry at all; the held count names the council."""
    RESIDENCE_CONFLICT = "RESIDENCE_CONFLICT"
    """residence_la_code and the postcode lead to different children's services councils: sending to either
    could be sending to the wrong one, so a person decides."""
    AMBIGUOUS_SUCCESSOR = "AMBIGUOUS_SUCCESSOR"
    """residence_la_code is a council that has ended and was split between several (Cumbria: Cumberland,
    Westmorland and Furness), and the postcode cannot say which; the held count names the ended council."""
    OUTSIDE_SERVICE = "OUTSIDE_SERVICE"
    """The family lives in Scotland, Northern Ireland, the Channel Islands or the Isle of Man (by the council
    code or the postcode): outside this service, which serves councils in England and Wales."""


HELD_HELP: dict[HeldReason, str] = {
    HeldReason.NO_AUTHORITY: "The council code is not an English or Welsh council: check residence_la_code (or "
    "the postcode directory's code for the postcode).",
    HeldReason.POSTCODE_NOT_FOUND: "The postcode is not in the postcode directory and no council code was given: "
    "check the postcode, or give residence_la_code.",
    HeldReason.PSEUDO_POSTCODE: "A ZZ99 pseudo-postcode (no fixed abode or not known): a person must find the "
    "family's council.",
    HeldReason.NO_AGREEMENT: "The council runs children's services but has no sharing agreement in force with "
    "this service (it may have lapsed, or never been made): the council is named so operators know whom to "
    "approach.",
    HeldReason.RESIDENCE_CONFLICT: "residence_la_code and the postcode lead to different councils: a person "
    "decides which is right.",
    HeldReason.AMBIGUOUS_SUCCESSOR: "residence_la_code is a council that has ended and was split between "
    "several, and the postcode does not say which: give the current council's code, or a postcode the "
    "directory knows.",
    HeldReason.OUTSIDE_SERVICE: "The address is in Scotland, Northern Ireland, the Channel Islands or the Isle "
    "of Man, outside this service (England and Wales): a person passes it on to the services there.",
}
"""What each held reason means and what to do: the upload contract and the operators' emails say this."""


class WithheldReason(StrEnum):
    """Why a valid record is never forwarded (counted, and not kept anywhere)."""

    STILLBIRTH = "STILLBIRTH"
    RESTRICTED = "RESTRICTED"
    SHARING_OBJECTION = "SHARING_OBJECTION"


class HeldMessage(BaseModel):
    """A held record as the held store keeps it: enough for a reviewer to act, the full record included,
    since the held store is readable only by the held reviewer role (and written only by ingest)."""

    schema_version: Literal["1"] = MESSAGE_SCHEMA_VERSION
    reason: HeldReason
    authority_gss_code: str | None = None
    source: SourceFile
    record: dict[str, object] = Field(description="The validated notification, every field.")


class RowError(BaseModel):
    """One problem with one row, without the offending value."""

    row: int
    notification_id: str | None = None
    field: str | None = None
    code: ErrorCode
    message: str


class RowWarning(RowError):
    """An optional field that was present but invalid: it was left out and the row accepted without it (the
    upload contract lists which fields this applies to). Like an error, it never holds the value."""


class AuthorityCounts(BaseModel):
    """Records forwarded to one authority from one file, by notification type."""

    gss_code: str
    name: str
    agreement_id: str
    new: int = 0
    amend: int = 0
    cancel: int = 0
    notices: int = Field(
        0,
        description="Beyond the records counted above: moved-out notices, and cancellations "
        "sent on to this council because it had received the record they cancel.",
    )

    @property
    def total(self) -> int:
        return self.new + self.amend + self.cancel


class HeldCount(BaseModel):
    """Records held for one reason (and, where the reason concerns one council, that council) from one file."""

    reason: HeldReason
    authority_gss_code: str | None = Field(
        None,
        description="The council the records are held for (NO_AGREEMENT: it runs children's services but "
        "has no agreement in force) or about (AMBIGUOUS_SUCCESSOR: the ended council).",
    )
    authority_name: str | None = None
    count: int


class FileStatus(StrEnum):
    PROCESSED = "PROCESSED"
    REJECTED = "REJECTED"
    DUPLICATE = "DUPLICATE"
    """The same content was already processed (uploaded again, under this name or another): nothing was
    forwarded again; ``duplicate_of`` points to the first upload and its report."""


class DuplicateOf(BaseModel):
    """The upload whose content was processed first."""

    key: str
    report_key: str | None = None


class FileOutcome(BaseModel):
    """The reconciliation of one file: rows_in = forwarded + rejected + withheld + held."""

    rows_in: int = 0
    forwarded: int = 0
    rejected: int = 0
    withheld: int = 0
    held: int = 0
    authorities: list[AuthorityCounts] = []
    held_by_reason: list[HeldCount] = []
    withheld_by_reason: dict[WithheldReason, int] = {}
    rejected_by_code: dict[ErrorCode, int] = {}
    rows_with_warnings: int = Field(0, description="Rows accepted with an invalid optional field left out.")
    warnings_by_code: dict[ErrorCode, int] = Field({}, description="Those left-out fields, by error code.")

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.forwarded + self.rejected + self.withheld + self.held


class FileError(BaseModel):
    code: ErrorCode
    message: str


class MeshOrigin(BaseModel):
    """The MESH message a file came in: its report goes back to ``mailbox`` by MESH."""

    message_id: str = Field(description="MESH's id of the message; the file's key is inbound/<ODS>/mesh-<message id>.")
    mailbox: str = Field(description="The trust's MESH mailbox that sent it (its registered mesh_mailbox).")
    workflow_id: str
    local_id: str | None = Field(None, description="The trust's own reference for the message (MESH local id).")


class QuarantineReason(StrEnum):
    """Why a MESH message was set aside in quarantine instead of going to the pipeline."""

    UNKNOWN_SENDER = "UNKNOWN_SENDER"
    """No registered trust has the sending mailbox."""
    UNREADABLE_FILE_NAME = "UNREADABLE_FILE_NAME"
    """Its MESH file name ends in no format the pipeline reads (or it has none)."""
    UNEXPECTED_WORKFLOW = "UNEXPECTED_WORKFLOW"
    """MESH delivered it under a workflow id the service does not take."""
    NOT_A_DATA_MESSAGE = "NOT_A_DATA_MESSAGE"
    """A MESH report (a message the service sent was not delivered), not a file."""


class MeshQuarantinedEvent(BaseModel):
    """Sent on the file-events queue for the notifier when a MESH message is quarantined: the operators are
    told. No content and no file name (a trust might name a file after a patient): the message id finds it."""

    model_config = ConfigDict(defer_build=True)  # built by the notifier on first use, never by ingest

    schema_version: Literal["1"] = MESSAGE_SCHEMA_VERSION
    kind: Literal["mesh_quarantined"] = "mesh_quarantined"
    event_id: str = Field(description="mesh-quarantined:<message id>: the same for a retry.")
    message_id: str
    sender_mailbox: str
    trust_ods_code: str | None = Field(None, description="The trust whose mailbox sent it, if any.")
    workflow_id: str
    message_type: str = "DATA"
    reason: QuarantineReason
    bucket: str
    key: str = Field(description="Where it is kept: quarantine/mesh-<message id> in the inbound bucket.")
    received_at: datetime


class FileProcessedEvent(BaseModel):
    """Emitted once per processed (or rejected) file on the file-events queue, for the notifier.
    Holds counts and references only: never personal data."""

    schema_version: Literal["1"] = MESSAGE_SCHEMA_VERSION
    event_id: str = Field(description="Stable per file content: a retry emits the same id.")
    status: FileStatus
    trust_ods_code: str | None
    trust_name: str | None = None
    bucket: str
    key: str
    sha256: str | None = None
    processed_at: datetime
    file_error: FileError | None = None
    duplicate_of: DuplicateOf | None = None
    outcome: FileOutcome
    report_key: str | None = None
    rejected_rows_key: str | None = None
    mesh: MeshOrigin | None = Field(None, description="Set when the file came by MESH: its report goes back there.")


def notifier_event(body: str) -> FileProcessedEvent | MeshQuarantinedEvent | HeldActionEvent:
    """A message of the file-events queue, as the model its ``kind`` names (a file-processed event has none):
    a MESH message quarantined, or reviewers' action on a file's held records."""
    if '"kind"' in body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("kind") == "mesh_quarantined":
            return MeshQuarantinedEvent.model_validate(data)
        if isinstance(data, dict) and data.get("kind") == HELD_ACTION_EVENT:
            return HeldActionEvent.model_validate(data)
    return FileProcessedEvent.model_validate_json(body)


HELD_ACTION_EVENT = "held_action"


class HeldActionEvent(BaseModel):
    """Emitted on the file-events queue when reviewers release or discard held records, once per action and
    file: the trust and operators hear what became of the file's held records, and a council that received
    some hears they are waiting. Counts and references only: never personal data."""

    model_config = ConfigDict(defer_build=True)  # built by the notifier on first use, never by ingest

    schema_version: Literal["1"] = MESSAGE_SCHEMA_VERSION
    kind: Literal["held_action"] = "held_action"
    event_id: str = Field(description="Stable per action and file: ``<action id>:<trust>:<sha256>``.")
    action_id: str
    action: Literal["release", "discard"]
    acted_at: datetime
    trust_ods_code: str
    trust_name: str | None = None
    key: str = Field(description="S3 key of the uploaded file the records came from.")
    sha256: str
    report_key: str | None = Field(None, description="The report of the upload that held them.")
    released: list[AuthorityCounts] = Field([], description="Records released, per council and agreement.")
    discarded: int = 0
    still_held: int = Field(0, description="Records of this file still held after the action.")

    @property
    def released_total(self) -> int:
        return sum(counts.total for counts in self.released)


class FileReport(FileProcessedEvent):
    """reports/<trust>/<file>.json: the event plus every row error and the columns that were ignored."""

    ignored_columns: list[str] = Field(
        [], description="Columns (or JSON keys) outside the contract that look like column names; ignored."
    )
    ignored_names_not_listed: int = Field(
        0, description="Other unknown names, counted but not listed: a key that is not a column name may be data."
    )
    errors: list[RowError] = []
    warnings: list[RowWarning] = Field([], description="Optional fields left out of accepted rows, one per field.")
