"""Fixtures for driving the mesh function against a real MESH server (NHS England's mesh-sandbox, a child
process on loopback) and moto: trusts' mailboxes send, the scheduled function runs, the pipeline answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from birthnotify.shared.settings import Env
from birthnotify_cli.lambda_shim import LambdaContext, load_handler_module
from birthnotify_cli.mesh_sandbox import SERVICE_MAILBOX, MeshSandbox

ROOT = Path(__file__).resolve().parent.parent
FILES_WORKFLOW = "BIRTHNOTIFY_FILES_1"
NEMS_WORKFLOW = "BIRTHNOTIFICATION_1"
REPORTS_WORKFLOW = "BIRTHNOTIFY_REPORTS_1"
TRUST_MAILBOX = "X26ABC2"  # RX2's, in config/registry.toml
STRANGER_MAILBOX = "X26ABC3"  # no trust's
SCHEDULED_EVENT = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-25T07:01:00Z",
    "region": "eu-west-2",
    "resources": ["arn:aws:events:eu-west-2:123456789012:rule/mesh"],
    "detail": {},
}


@dataclass
class Received:
    """A message read from a mailbox (a trust's, reading its reports)."""

    message_id: str
    workflow_id: str
    file_name: str
    local_id: str | None
    subject: str | None
    body: bytes


@dataclass
class MeshStack:
    """The mesh function over moto and the sandbox, beside the ingest and notify stacks it feeds."""

    ingest: Any
    notify: Any
    sandbox: MeshSandbox
    handler: Any
    secret_id: str
    runs: list[dict] = field(default_factory=list)

    def send(
        self,
        data: bytes,
        *,
        sender: str = TRUST_MAILBOX,
        file_name: str | None = "births.csv",
        workflow_id: str = FILES_WORKFLOW,
        local_id: str | None = None,
        chunk_bytes: int | None = None,
    ) -> str:
        """A trust's MESH client sends ``data`` to the service's mailbox; returns MESH's message id."""
        headers = {
            "workflow_id": workflow_id,
            **({"filename": file_name} if file_name is not None else {}),
            **({"local_id": local_id} if local_id else {}),
        }
        with self.sandbox.client(sender) as client:
            return str(client.send_message(SERVICE_MAILBOX, data, max_chunk_size=chunk_bytes, **headers))

    def run(self, context: LambdaContext | None = None) -> dict:
        """One scheduled invocation of the mesh function."""
        result = self.handler.handler(SCHEDULED_EVENT, context or LambdaContext(function_name="mesh"))
        self.runs.append(result)
        return result

    def inbox(self, mailbox: str = SERVICE_MAILBOX, workflow_id: str | None = None) -> list[str]:
        with self.sandbox.client(mailbox) as client:
            return [str(m) for m in client.list_messages(workflow_filter=workflow_id)]

    def read(self, mailbox: str, workflow_id: str | None = None, acknowledge: bool = True) -> list[Received]:
        """Every message waiting in ``mailbox`` (of one workflow), read whole, acknowledged unless told not to."""
        received = []
        with self.sandbox.client(mailbox) as client:
            for message_id in client.list_messages(workflow_filter=workflow_id):
                message = client.retrieve_message(message_id)
                try:
                    received.append(
                        Received(
                            str(message_id),
                            message.workflow_id,
                            message.filename,
                            message.local_id,
                            message.subject,
                            message.read(),
                        )
                    )
                finally:
                    message.close()
                if acknowledge:
                    client.acknowledge_message(message_id)
        return received

    def objects(self, prefix: str = "") -> dict[str, dict]:
        """Every object version in the inbound bucket under ``prefix``: key -> head (metadata), versions."""
        s3, bucket = self.ingest.s3, self.bucket
        found: dict[str, dict] = {}
        for version in s3.list_object_versions(Bucket=bucket, Prefix=prefix).get("Versions", []):
            entry = found.setdefault(version["Key"], {"versions": 0})
            entry["versions"] += 1
            if version["IsLatest"]:
                entry["head"] = s3.head_object(Bucket=bucket, Key=version["Key"])
        return found

    def content(self, key: str) -> bytes:
        return self.ingest.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    @property
    def bucket(self) -> str:
        from ingest_support import INBOUND

        return INBOUND

    def undelivered(self, linked_message_id: str, mailbox: str = SERVICE_MAILBOX) -> None:
        """MESH's report that a message the service sent was not collected (the sandbox's admin endpoint)."""
        import urllib.request

        body = json.dumps(
            {
                "mailbox_id": mailbox,
                "code": "14",
                "workflow_id": REPORTS_WORKFLOW,
                "description": "Message not collected by recipient after 5 days",
                "linked_message_id": linked_message_id,
            }
        ).encode()
        request = urllib.request.Request(  # noqa: S310
            f"{self.sandbox.url}/messageexchange/admin/report",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=30).close()  # noqa: S310 (loopback)

    def point_at(self, url: str) -> None:
        """Change the MESH endpoint in the secret (as DevOps would), and let the next run read it afresh."""
        secrets = boto3.client("secretsmanager")
        value = json.loads(secrets.get_secret_value(SecretId=self.secret_id)["SecretString"])
        secrets.put_secret_value(SecretId=self.secret_id, SecretString=json.dumps({**value, "url": url}))
        parameters.clear_caches()


@pytest.fixture(scope="session")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshSandbox]:
    """One sandbox process per test worker, emptied before each test that uses it."""
    sandbox = MeshSandbox(log_path=tmp_path_factory.mktemp("mesh-sandbox") / "sandbox.log").start()
    yield sandbox
    sandbox.stop()


def mesh_environment(secret_id: str) -> dict[Env, str]:
    return {
        Env.MESH_SECRET_ID: secret_id,
        Env.MESH_FILE_WORKFLOW_ID: FILES_WORKFLOW,
        Env.MESH_NEMS_WORKFLOW_ID: NEMS_WORKFLOW,
        Env.MESH_REPORT_WORKFLOW_ID: REPORTS_WORKFLOW,
    }


@pytest.fixture
def mesh_stack(
    ingest_stack, notify_stack, mesh_sandbox: MeshSandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MeshStack]:
    """The mesh function, its secret set to the sandbox's values (the service's mailbox X26ABC1); the notify
    function sends reports back by MESH with the same secret."""
    mesh_sandbox.reset()
    parameters.clear_caches()
    name = f"test-mesh-{uuid.uuid4().hex[:8]}"
    secret = boto3.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps(mesh_sandbox.credentials())
    )
    for variable, value in mesh_environment(secret["ARN"]).items():
        monkeypatch.setenv(variable, value)
    handler = load_handler_module(ROOT / "functions" / "mesh" / "handler.py")
    yield MeshStack(ingest_stack, notify_stack, mesh_sandbox, handler, secret["ARN"])
    parameters.clear_caches()
