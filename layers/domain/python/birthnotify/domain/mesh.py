"""MESH, the NHS's message exchange: where a message from a trust's mailbox goes in the inbound bucket, what
it carries with it, and which messages are set aside for the operators instead. Rules only: the mesh
function's adapters talk to MESH and S3.

A message is a file for the pipeline when its sender is a registered trust's mailbox and its file name is
one the pipeline can read (``FileKind``). It is stored as ``inbound/<the trust's ODS code>/mesh-<message
id>.<extension>``: the object key is the message id, so storing a message again (after a run stopped between
writing it and acknowledging it) writes the same object, never a second file. Anything else is moved to
``quarantine/mesh-<message id>``, where no S3 event reaches the pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from birthnotify.domain.messages import MeshOrigin, QuarantineReason
from birthnotify.domain.reader import FileKind, FileRejected
from birthnotify.domain.registry import Registry, Trust
from birthnotify.shared.names import INBOUND_PREFIX, MESH_KEY_PREFIX, QUARANTINE_PREFIX

DATA_MESSAGE = "DATA"
"""MESH's type of a message a mailbox sent; MESH itself sends REPORT messages (a message not delivered)."""
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
GZIP_MAGIC = b"\x1f\x8b"
NEMS_DEFAULT_EXTENSION = ".xml"
"""A NEMS birth notification is a FHIR bundle, XML unless its file name says otherwise."""
UNNAMED_SUFFIX = ".dat"
"""MESH names a message sent without a file name ``<message id>.dat``."""
_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")
MAX_METADATA_FILE_NAME = 1024
"""S3 keeps at most 2 KB of user metadata: a longer (percent-encoded) file name is cut here."""

QUARANTINE_HELP: dict[QuarantineReason, str] = {
    QuarantineReason.UNKNOWN_SENDER: "The sending mailbox is no registered trust's mesh_mailbox. If a trust "
    "sent it, add its mailbox to the registry and ask it to send the file again; otherwise find out who sent it.",
    QuarantineReason.UNREADABLE_FILE_NAME: "The MESH file name does not end in a format the pipeline reads "
    "(.csv, .jsonl, .csv.gz or .jsonl.gz). Ask the trust to send it again named so.",
    QuarantineReason.UNEXPECTED_WORKFLOW: "MESH delivered it under a workflow id this service does not take. "
    "Check the workflow ids in the stage configuration and the sender's MESH set-up.",
    QuarantineReason.NOT_A_DATA_MESSAGE: "It is a MESH report, not a file: usually MESH saying that a message "
    "this service sent (a trust's report) was not collected. Tell the trust its report is waiting.",
}


class MeshProtocolError(ValueError):
    """MESH answered with something no MESH server sends (a malformed message id): nothing is stored."""


@dataclass(frozen=True)
class MeshWorkflows:
    """The service's workflow ids: one for notification files, one for NEMS birth notifications (FHIR
    bundles), one for the reports it sends back."""

    files: str
    nems: str
    reports: str

    @property
    def received(self) -> tuple[str, ...]:
        """The workflows whose messages the mesh function takes from the inbox (MESH's reports about
        messages the service sent come under the reports workflow)."""
        return tuple(dict.fromkeys((self.files, self.nems, self.reports)))


@dataclass(frozen=True)
class MeshMessage:
    """What MESH says about a received message (its headers): never its content."""

    message_id: str
    sender: str
    workflow_id: str = ""
    message_type: str = DATA_MESSAGE
    local_id: str = ""
    file_name: str = ""

    def __post_init__(self) -> None:
        if not MESSAGE_ID.match(self.message_id):
            raise MeshProtocolError("MESH gave a message id that is not one (letters, digits, _ and - only)")

    @property
    def given_file_name(self) -> str:
        """The file name the sender gave: MESH names a message sent without one ``<message id>.dat``."""
        return "" if self.file_name.lower() == f"{self.message_id.lower()}{UNNAMED_SUFFIX}" else self.file_name


@dataclass(frozen=True)
class Destination:
    """Where a message is stored: ``key`` in the inbound bucket, under the trust's folder, or in quarantine."""

    key: str
    trust: Trust | None = None
    quarantined: QuarantineReason | None = None


def destination(
    message: MeshMessage, registry: Registry, workflows: MeshWorkflows, gzip_content: bool = False
) -> Destination:
    """Where ``message`` goes. ``gzip_content``: its bytes start as gzip does (a MESH client that compresses
    what it sends, as NHS England's Java client can): ``.gz`` is added to a name that lacks it, so ingest
    inflates it."""
    trust = registry.trust_with_mailbox(message.sender) if message.sender else None
    if message.message_type.upper() != DATA_MESSAGE:
        return quarantine(message, QuarantineReason.NOT_A_DATA_MESSAGE, trust)
    if trust is None:
        return quarantine(message, QuarantineReason.UNKNOWN_SENDER)
    if message.workflow_id == workflows.files:
        try:
            extension = FileKind.from_name(message.file_name).suffix
        except FileRejected:
            return quarantine(message, QuarantineReason.UNREADABLE_FILE_NAME, trust)
    elif message.workflow_id == workflows.nems:
        # The workflow says what it is: ingest answers for its format (a report back by MESH), so it is never
        # set aside for its name.
        extension = _nems_extension(message.given_file_name)
    else:
        return quarantine(message, QuarantineReason.UNEXPECTED_WORKFLOW, trust)
    if gzip_content and not extension.endswith(".gz"):
        extension += ".gz"
    return Destination(f"{INBOUND_PREFIX}{trust.ods_code}/{MESH_KEY_PREFIX}{message.message_id}{extension}", trust)


def quarantine(message: MeshMessage, reason: QuarantineReason, trust: Trust | None = None) -> Destination:
    return Destination(f"{QUARANTINE_PREFIX}{MESH_KEY_PREFIX}{message.message_id}", trust, reason)


def _nems_extension(file_name: str) -> str:
    try:
        return FileKind.from_name(file_name).suffix
    except FileRejected:
        pass
    parts = file_name.lower().rsplit("/", 1)[-1].split(".")[1:]
    wanted = parts[-2:] if parts[-1:] == ["gz"] else parts[-1:]
    if wanted and all(_EXTENSION.match(part) for part in wanted):
        return "." + ".".join(wanted)
    return NEMS_DEFAULT_EXTENSION


# -- what travels with the object ------------------------------------------------------------------------

META_MESSAGE_ID = "mesh-message-id"
META_SENDER = "mesh-sender"
META_WORKFLOW_ID = "mesh-workflow-id"
META_LOCAL_ID = "mesh-local-id"
META_FILE_NAME = "mesh-file-name"
META_QUARANTINE_REASON = "mesh-quarantine-reason"


def object_metadata(message: MeshMessage, where: Destination) -> dict[str, str]:
    """The MESH metadata stored with the object (S3 user metadata is ASCII: the trust's own local id and
    file name are percent-encoded)."""
    metadata = {
        META_MESSAGE_ID: message.message_id,
        META_SENDER: message.sender.upper(),
        META_WORKFLOW_ID: quote(message.workflow_id, safe=""),
        META_LOCAL_ID: quote(message.local_id, safe="")[:MAX_METADATA_FILE_NAME],
        META_FILE_NAME: quote(message.file_name, safe="")[:MAX_METADATA_FILE_NAME],
    }
    if where.quarantined is not None:
        metadata[META_QUARANTINE_REASON] = where.quarantined.value
    return metadata


def mesh_origin(metadata: Mapping[str, str], trust: Trust | None) -> MeshOrigin | None:
    """The MESH message an inbound object came in, from its metadata, when ``trust`` (the folder's) owns
    the sending mailbox. Anyone who can upload to the folder can set metadata: a report only ever goes back
    to the folder's own trust's mailbox, never to one an upload names."""
    message_id = metadata.get(META_MESSAGE_ID, "")
    sender = metadata.get(META_SENDER, "").upper()
    if trust is None or not trust.mesh_mailbox or sender != trust.mesh_mailbox or not MESSAGE_ID.match(message_id):
        return None
    return MeshOrigin(
        message_id=message_id,
        mailbox=sender,
        workflow_id=unquote(metadata.get(META_WORKFLOW_ID, "")),
        local_id=unquote(metadata.get(META_LOCAL_ID, "")) or None,
    )
