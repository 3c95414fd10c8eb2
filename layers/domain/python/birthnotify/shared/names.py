"""Names the CDK stack and the functions both derive, so neither can drift from the other."""

from __future__ import annotations

from dataclasses import dataclass

INBOUND_PREFIX = "inbound/"
REPORTS_PREFIX = "reports/"
QUARANTINE_PREFIX = "quarantine/"
"""MESH messages the pipeline will not take, in the inbound bucket: outside inbound/, so no S3 event."""
MESH_KEY_PREFIX = "mesh-"
"""Objects the mesh function writes are named mesh-<MESH message id>."""
MESH_RUN_LEASE = "mesh-run"
"""The mesh function's run lease in the state table (one run at a time)."""


def lease_item_id(name: str) -> str:
    """The state table id of a run lease: the stack lets the mesh function write that item and no other."""
    return f"lock#{name}"


PROJECT = "birthnotify"


@dataclass(frozen=True)
class StageNames:
    """The names of a stage's resources that the operators' commands find by name (the stack names them so)."""

    stage: str

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.stage}"

    @property
    def stack_name(self) -> str:
        """The core stack, whose outputs name the generated resources (the buckets)."""
        return f"BirthNotifications-{self.stage}"

    @property
    def authority_queue_prefix(self) -> str:
        return f"{self.prefix}-authority"

    @property
    def held_table(self) -> str:
        return f"{self.prefix}-held"

    @property
    def state_table(self) -> str:
        return f"{self.prefix}-state"

    @property
    def file_events_queue(self) -> str:
        return f"{self.prefix}-file-events"

    @property
    def email_template(self) -> str:
        """The stored SES template the notifier's bulk sends fill in (letters, digits, - and _ only)."""
        return f"{self.prefix}-email"


SES_TEMPLATE_PARTS = {"SubjectPart": "{{{subject}}}", "TextPart": "{{{text}}}", "HtmlPart": "{{{html}}}"}
"""The stored SES template: every part is one field of the destination's template data, filled in whole.
Triple braces, because SES's Handlebars would HTML-escape a value in double braces: the HTML part comes
already escaped by the composer, and the subject and text part are plain text, not HTML."""


def authority_queue_name(prefix: str, gss_code: str) -> str:
    """Name of an authority's FIFO queue; the stack creates it and the ingest function derives it."""
    return f"{prefix}-{gss_code}.fifo"


HELD_OPEN_INDEX = "open"
"""The held store's sparse index of open records: partition key ``open`` (the held reason, present only while a
record is open), sort key ``held_at``."""
HELD_OPEN_ATTRIBUTE = "open"
HELD_AT_ATTRIBUTE = "held_at"
HELD_TTL_ATTRIBUTE = "expiration"
HELD_RETENTION_ATTRIBUTE = "retention_days"
"""Days an item is kept once a person has acted on it; an open record has no expiry at all."""
HELD_INDEX_PROJECTION = (
    "trust",
    "sha256",
    "row",
    "file_key",
    "report_key",
    "authority_gss_code",
    "authority_name",
    "notification_type",
    "status",
    HELD_RETENTION_ATTRIBUTE,
)
"""What the ``open`` index carries besides its keys: no personal data, so whoever may read only the index (the age
check) sees none."""
