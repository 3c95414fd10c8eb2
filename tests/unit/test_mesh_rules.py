"""The MESH rules: where a message goes, what travels with it, the secret's value, the notifier's events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from birthnotify.adapters.mesh import MeshCredentials, MeshNotConfigured
from birthnotify.domain.mesh import (
    MeshMessage,
    MeshProtocolError,
    MeshWorkflows,
    destination,
    mesh_origin,
    object_metadata,
)
from birthnotify.domain.messages import FileProcessedEvent, MeshQuarantinedEvent, notifier_event
from birthnotify.domain.registry import load_registry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry(ROOT / "config" / "registry.toml")
WORKFLOWS = MeshWorkflows(files="BIRTHNOTIFY_FILES_1", nems="BIRTHNOTIFICATION_1", reports="BIRTHNOTIFY_REPORTS_1")
ID = "20261125101813838554_1B8F53"


def message(**headers) -> MeshMessage:
    return MeshMessage(
        **{"message_id": ID, "sender": "X26ABC2", "workflow_id": WORKFLOWS.files, "file_name": "births.csv", **headers}
    )


@pytest.mark.parametrize(
    ("headers", "gzip", "key", "reason"),
    [
        ({}, False, f"inbound/RX2/mesh-{ID}.csv", None),
        ({"sender": "x26abc2"}, False, f"inbound/RX2/mesh-{ID}.csv", None),  # MESH's ids are case-insensitive
        ({"file_name": "Births 2026.JSONL.GZ"}, False, f"inbound/RX2/mesh-{ID}.jsonl.gz", None),
        ({}, True, f"inbound/RX2/mesh-{ID}.csv.gz", None),  # a client that compresses what it sends
        ({"file_name": "births.csv.gz"}, True, f"inbound/RX2/mesh-{ID}.csv.gz", None),
        ({"sender": "X26ABC3"}, False, f"quarantine/mesh-{ID}", "UNKNOWN_SENDER"),
        ({"file_name": "births.xlsx"}, False, f"quarantine/mesh-{ID}", "UNREADABLE_FILE_NAME"),
        ({"file_name": f"{ID}.dat"}, False, f"quarantine/mesh-{ID}", "UNREADABLE_FILE_NAME"),  # sent without a name
        ({"workflow_id": "SOMETHING_ELSE"}, False, f"quarantine/mesh-{ID}", "UNEXPECTED_WORKFLOW"),
        ({"message_type": "REPORT"}, False, f"quarantine/mesh-{ID}", "NOT_A_DATA_MESSAGE"),
        # NEMS bundles: stored for the pipeline whatever it can read today; .xml when MESH gave no name.
        ({"workflow_id": WORKFLOWS.nems, "file_name": f"{ID}.dat"}, False, f"inbound/RX2/mesh-{ID}.xml", None),
        ({"workflow_id": WORKFLOWS.nems, "file_name": "bundle.json"}, False, f"inbound/RX2/mesh-{ID}.json", None),
        ({"workflow_id": WORKFLOWS.nems, "file_name": "bundle.xml"}, True, f"inbound/RX2/mesh-{ID}.xml.gz", None),
        ({"workflow_id": WORKFLOWS.nems, "file_name": "no extension"}, False, f"inbound/RX2/mesh-{ID}.xml", None),
        (
            {"workflow_id": WORKFLOWS.nems, "file_name": "a.b/../weird ext.x y"},
            False,
            f"inbound/RX2/mesh-{ID}.xml",
            None,
        ),
    ],
)
def test_a_message_goes_to_its_trusts_folder_named_by_its_id_or_to_quarantine(headers, gzip, key, reason):
    where = destination(message(**headers), REGISTRY, WORKFLOWS, gzip_content=gzip)
    assert where.key == key
    assert (where.quarantined.value if where.quarantined else None) == reason


def test_a_message_id_that_could_leave_its_folder_is_refused():
    for bad in ("../../reports/RX1/x", "a/b", "", "x" * 101):
        with pytest.raises(MeshProtocolError):
            message(message_id=bad)


def test_the_metadata_names_the_message_and_a_report_goes_back_only_to_the_folders_own_mailbox():
    name = "naissances été/2026.csv"
    metadata = object_metadata(message(file_name=name, local_id="réf 1"), destination(message(), REGISTRY, WORKFLOWS))
    assert all(value.isascii() for value in metadata.values())  # S3 user metadata is ASCII
    origin = mesh_origin(metadata, REGISTRY.trust("RX2"))
    assert origin is not None and (origin.message_id, origin.mailbox, origin.local_id) == (ID, "X26ABC2", "réf 1")
    assert mesh_origin(metadata, REGISTRY.trust("RX1")) is None  # RX1 has no mailbox: an upload claiming RX2's
    assert mesh_origin({}, REGISTRY.trust("RX2")) is None  # an S3 upload


SANDBOX = {"url": "http://127.0.0.1:8700", "mailbox": "X26ABC1", "password": "password", "shared_key": "k"}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a generated password the stack put", "not a JSON object"),
        (json.dumps({**SANDBOX, "url": "http://mesh.example.net"}), "invalid fields ['url']"),  # plain HTTP leaving
        (json.dumps({**SANDBOX, "url": "https://mesh-sync.spineservices.nhs.uk"}), "client_cert"),  # no mutual TLS
        (json.dumps({k: v for k, v in SANDBOX.items() if k != "password"}), "invalid fields ['password']"),
    ],
)
def test_an_unset_or_unusable_mesh_secret_is_refused_by_name_without_showing_it(value, why):
    with pytest.raises(MeshNotConfigured) as refused:
        MeshCredentials.from_secret("birthnotify-prod/mesh", value)
    assert "birthnotify-prod/mesh" in str(refused.value) and "README" in str(refused.value)
    assert why in str(refused.value)
    for secret in ("password", "generated password"):
        assert secret not in str(refused.value).replace("'password'", "")


def test_a_live_endpoint_takes_certificates_and_a_sandbox_plain_http():
    live = MeshCredentials.from_secret(
        "s",
        json.dumps(
            {**SANDBOX, "url": "https://mesh-sync.spineservices.nhs.uk/", "client_cert": "PEM", "client_key": "KEY"}
        ),
    )
    assert live.url == "https://mesh-sync.spineservices.nhs.uk" and "KEY" not in repr(live)
    assert MeshCredentials.from_secret("s", json.dumps(SANDBOX)).url == "http://127.0.0.1:8700"


def test_the_notifier_tells_a_quarantine_notice_from_a_file_event():
    notice = MeshQuarantinedEvent(
        event_id=f"mesh-quarantined:{ID}",
        message_id=ID,
        sender_mailbox="X26ABC3",
        workflow_id=WORKFLOWS.files,
        reason="UNKNOWN_SENDER",
        bucket="b",
        key=f"quarantine/mesh-{ID}",
        received_at="2026-11-25T10:00:00Z",
    )
    assert notifier_event(notice.model_dump_json()) == notice
    with pytest.raises(ValueError):
        notifier_event('{"not": "a file-processed event"}')
    with pytest.raises(ValueError):
        notifier_event('{"kind": [1, 2]')
    assert FileProcessedEvent.model_fields["mesh"].default is None
