"""Held records under review: their states, the actions people take on them, and how a reviewer names a
file. Pure rules; the store is an adapter (adapters.held) behind application.ports.HeldStore."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class HeldStatus(StrEnum):
    HELD = "HELD"
    """Waiting for a person: to be released (once it has a council and an agreement) or discarded."""
    RELEASING = "RELEASING"
    """Claimed by one release, which is sending it; a release that stopped half-way leaves it here, and the
    next release takes it over (the council's consumer keeps a record it already has once)."""
    RELEASED = "RELEASED"
    """Forwarded to a council; the record itself is no longer kept, only who released it, when and where."""
    DISCARDED = "DISCARDED"
    """Not to be shared; the record itself is deleted, only who discarded it, when and why remain."""


OPEN_STATUSES = frozenset({HeldStatus.HELD, HeldStatus.RELEASING})


class ActionKind(StrEnum):
    RELEASE = "release"
    DISCARD = "discard"
    REDELIVER = "redeliver"


class RecordOutcome(StrEnum):
    RELEASED = "released"
    DISCARDED = "discarded"
    STILL_HELD = "still-held"
    """Re-routed and still without a council and an agreement in force (or not selected by --authority)."""
    TAKEN = "taken"
    """Another action took it first (two reviewers at once)."""
    NOT_SENT = "not-sent"
    """SQS did not accept it: still held, the release can be run again."""
    REDELIVERED = "redelivered"


class ActionRecord(BaseModel):
    """One record an action touched, by the trust's ids: never its content."""

    model_config = ConfigDict(defer_build=True)  # built on first use (held review, re-delivery), never by ingest

    trust_ods_code: str
    sha256: str
    row: int
    notification_id: str | None = None
    outcome: RecordOutcome
    authority_gss_code: str | None = None
    agreement_id: str | None = None
    reason: str | None = Field(None, description="The held reason it still has (still-held records).")


class HeldAction(BaseModel):
    """What a person did to held records (or a council's queue): who, when, what, why, and which records.
    Recorded before the first record changes and again when the action ends (``complete``)."""

    model_config = ConfigDict(defer_build=True)  # built on first use (held review, re-delivery), never by ingest

    action_id: str
    kind: ActionKind
    actor: str = Field(description="The caller's identity as AWS STS reports it (an ARN).")
    at: datetime
    why: str
    selection: dict[str, str] = Field({}, description="The command's filters (reason, authority, file, rows).")
    records: list[ActionRecord] = []
    complete: bool = False
    expires_at: datetime | None = None

    def counts(self) -> dict[RecordOutcome, int]:
        found: dict[RecordOutcome, int] = {}
        for record in self.records:
            found[record.outcome] = found.get(record.outcome, 0) + 1
        return found


def new_action_id(at: datetime) -> str:
    """Sorts by time; unique across reviewers acting in the same second."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


_HEX = re.compile(r"^[0-9a-f]{8,64}$")


def names_file(reference: str, file_key: str, sha256: str) -> bool:
    """Whether a reviewer's ``--file`` names this file: its key (``inbound/RX1/births.csv``), its name
    (``births.csv``), or its content reference (the first 8 or more hex digits of its SHA-256, as the emails
    quote it)."""
    reference = reference.strip()
    if not reference:
        return False
    if reference in (file_key, file_key.rsplit("/", 1)[-1]):
        return True
    return bool(_HEX.match(reference.lower())) and sha256.startswith(reference.lower())


AGE_BANDS: tuple[tuple[str, timedelta], ...] = (
    ("under 1 day", timedelta(days=1)),
    ("1-3 days", timedelta(days=3)),
    ("3-7 days", timedelta(days=7)),
    ("7-14 days", timedelta(days=14)),
    ("14-30 days", timedelta(days=30)),
)
OLDEST_BAND = "30 days or more"


def age_band(age: timedelta) -> str:
    """How long a record has waited, in the bands ``birthnotify held list`` counts by."""
    for name, below in AGE_BANDS:
        if age < below:
            return name
    return OLDEST_BAND
