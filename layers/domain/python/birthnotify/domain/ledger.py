"""The sharing ledger: one entry for every outcome of a valid record (forwarded, withheld, held, released,
discarded, re-delivered), so an Information Governance lead can say which councils received a baby's
record, when, which fields, under which agreement and why, for as long as the retention allows.

An entry names the people only by keyed hashes (HMAC-SHA256) of the baby's and the mother's NHS numbers:
whoever holds the ledger without the key cannot tell whose record it is, and cannot confirm a guess by
hashing candidate NHS numbers (there are only 10^9 of them). It holds no name, address, postcode or date of
birth, and no file name (a trust may name a file after a patient): the file is named by its content's SHA-256.

Layout (S3, JSON Lines, Athena-ready): ``ledger/day=YYYY-MM-DD/<trust>-<sha256>-<first row>.jsonl``, one
object per checkpoint chunk of a file (at most ``CHECKPOINT_EVERY_ROWS`` rows), so a resumed or re-delivered
file writes the same object again rather than another one: one entry per outcome event.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from birthnotify.domain.record import NotificationType

LEDGER_PREFIX = "ledger/"
DESTINATIONS_PREFIX = "destinations/"
"""Beside the ledger: each trust's index of where its notification chains went (application.destinations)."""
RESUME_PREFIX = "resume/"
"""Beside the ledger: snapshots of files stopped part-way (application.resume), expiring with their checkpoint."""
RESUME_RETENTION_DAYS = 35
LEDGER_SCHEMA_VERSION = "1"
MIN_KEY_BYTES = 32
"""HMAC-SHA256's block is 64 bytes; a key of fewer than 32 random bytes would weaken the hashes."""


class LedgerOutcome(StrEnum):
    FORWARDED = "FORWARDED"
    """Accepted by the council's queue: the fields named were shared under the agreement named."""
    WITHHELD = "WITHHELD"
    """Never shared: a stillbirth, a restricted record or a parent's objection (the reason says which)."""
    HELD = "HELD"
    """Kept in the service for a person to review: nothing shared."""
    RELEASED = "RELEASED"
    """A held record released to a council after review: shared as FORWARDED is."""
    DISCARDED = "DISCARDED"
    """A held record discarded after review: never shared."""
    REDELIVERED = "REDELIVERED"
    """Sent to a council again (its queue lost it): shared again under the agreement it was first sent under."""
    MOVED_OUT = "MOVED_OUT"
    """A council that received the record was told the family moved out of its area (no new address)."""


SHARING_OUTCOMES = frozenset(
    {LedgerOutcome.FORWARDED, LedgerOutcome.RELEASED, LedgerOutcome.REDELIVERED, LedgerOutcome.MOVED_OUT}
)
"""Outcomes that disclosed something to a council: what a subject access request asks about."""


class LedgerEntry(BaseModel):
    """One outcome of one record (docs/schemas/ledger-entry.schema.json). No personal data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = LEDGER_SCHEMA_VERSION
    entry_id: str = Field(
        description="Stable for the outcome event: the same on every retry of the file, so a "
        "query can count each event once even if an object were ever written twice."
    )
    recorded_at: datetime
    outcome: LedgerOutcome
    reason: str | None = Field(
        None, description="Why withheld or held (the report's reason code), or the review action's reason code."
    )
    baby_nhs_hash: str = Field(description="HMAC-SHA256 of the baby's NHS number (hex), keyed by the ledger key.")
    mother_nhs_hash: str | None = Field(None, description="HMAC-SHA256 of the mother's NHS number, when given.")
    trust_ods_code: str
    file_sha256: str = Field(description="SHA-256 of the uploaded file: the report names the file by it.")
    row: int = Field(description="1-based data row of the file.")
    notification_id: str = Field(description="The trust's own id of the notification.")
    notification_type: NotificationType
    original_notification_id: str | None = None
    authority_gss_code: str | None = Field(None, description="The council the record went to, or was held for.")
    agreement_id: str | None = Field(None, description="The sharing agreement the fields were shared under.")
    fields_shared: list[str] = Field([], description="Names of the fields shared (never their values).")


def subject_hash(key: bytes, nhs_number: str) -> str:
    """The keyed hash that stands for an NHS number in the ledger (10 digits, no spaces)."""
    return hmac.new(key, nhs_number.encode("ascii"), hashlib.sha256).hexdigest()


def check_key(key: bytes) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the ledger key must be at least {MIN_KEY_BYTES} bytes, not {len(key)}")
    return key


def entry_id(
    trust_ods_code: str,
    file_sha256: str,
    row: int,
    outcome: LedgerOutcome,
    authority_gss_code: str | None,
    event: str | None = None,
) -> str:
    """The same for every retry of one outcome event; ``event`` tells apart review actions on one record."""
    suffix = f":{event}" if event else ""
    return hashlib.sha256(
        f"{trust_ods_code}:{file_sha256}:{row}:{outcome.value}:{authority_gss_code or ''}{suffix}".encode()
    ).hexdigest()[:32]


def chunk_key(day: date, trust_ods_code: str, file_sha256: str, first_row: int) -> str:
    """The object holding the entries of a file's rows from ``first_row`` up to the next checkpoint."""
    return f"{LEDGER_PREFIX}day={day.isoformat()}/{trust_ods_code}-{file_sha256}-{first_row:09d}.jsonl"


def action_key(day: date, action_id: str) -> str:
    """The object holding the entries of one review action (release, discard, re-delivery)."""
    return f"{LEDGER_PREFIX}day={day.isoformat()}/action-{action_id}.jsonl"
