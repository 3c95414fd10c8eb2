"""Where uploads arrive and where their reports go: the rules of the buckets' key layout."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from birthnotify.domain.reader import FileRejected
from birthnotify.domain.record import ERROR_HELP, ErrorCode
from birthnotify.shared.names import INBOUND_PREFIX, REPORTS_PREFIX


@dataclass(frozen=True)
class InboundObject:
    """One upload, as its S3 event names it."""

    bucket: str
    key: str
    version_id: str | None = None
    sequencer: str | None = None
    event_time: datetime | None = None
    deliveries: int = 1
    """How often the event has been delivered (SQS's receive count): above 1, this may be a resumed file."""

    @property
    def upload_ref(self) -> str:
        """Tells this upload apart from another of the same key (S3's version id; else the event's
        sequencer, which S3 makes unique per key and upload), and is the same on a redelivered event."""
        return self.version_id or self.sequencer or ""

    @property
    def file_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def parse_inbound_key(key: str) -> tuple[str, str]:
    """``inbound/<ODS>/<file name>`` -> (ODS code, file name)."""
    parts = key.split("/")
    if len(parts) != 3 or f"{parts[0]}/" != INBOUND_PREFIX or not parts[1] or not parts[2]:
        raise FileRejected(ErrorCode.FILE_BAD_LOCATION, ERROR_HELP[ErrorCode.FILE_BAD_LOCATION])
    return parts[1].upper(), parts[2]


def is_folder_marker(key: str) -> bool:
    """A zero-byte ``inbound/RX1/`` object that consoles create for a "folder": not an upload."""
    return key.endswith("/")


def upload_id(uploaded_at: datetime, upload_ref: str) -> str:
    """Names one upload of a file: its time to the millisecond (S3's event time, so a folder lists uploads in
    order) and a short hash of S3's version id for it (a redelivered event gives the same id)."""
    moment = uploaded_at.astimezone(UTC)
    return (
        f"{moment:%Y-%m-%dT%H%M%S}.{moment.microsecond // 1000:03d}Z-"
        f"{hashlib.sha256(upload_ref.encode()).hexdigest()[:8]}"
    )


def report_keys(trust: str, file_name: str, upload: str) -> tuple[str, str]:
    """Keys of the JSON report and the rejected-rows CSV of one upload of a file:
    ``reports/<trust>/<file name>/<upload id>.json``. Every upload has its own, so a report is never
    overwritten by another upload's, nor mixed with it."""
    base = f"{REPORTS_PREFIX}{trust}/{file_name}/{upload}"
    return f"{base}.json", f"{base}.rejected.csv"


def report_folder(trust: str, file_name: str) -> str:
    """Where every upload's report of one file name lies."""
    return f"{REPORTS_PREFIX}{trust}/{file_name}/"
