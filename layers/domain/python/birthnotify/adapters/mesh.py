"""MESH through NHS England's ``mesh-client``, and the inbound bucket as the mesh function writes to it.

The service's mailbox, its endpoint and its credentials are one JSON secret in Secrets Manager
(``MeshCredentials``): the mailbox id, password and shared key, and for a real MESH endpoint (HTTPS, mutual
TLS) the client certificate, its key and the CA bundle. A local endpoint (the mesh-sandbox on loopback)
takes plain HTTP and no certificates. Certificates are written to a private temporary directory for the
length of a session only, because mesh-client (through requests) reads them from files.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from birthnotify.application.mesh import MeshInbox, ReceivedMessage
from birthnotify.domain.mesh import META_MESSAGE_ID, MeshMessage

MESH_TIMEOUT_SECONDS = 60
"""How long one MESH request may wait for a response (mesh-client's default is ten minutes)."""
MESH_RETRIES = 3
"""mesh-client retries a request refused with 425/429/5xx or not answered this often (it never retries the
first chunk of a send, which could create a second message)."""
PART_BYTES = 8 * 1024 * 1024
"""Each part of the S3 multipart upload a message is streamed into: S3 wants 5 MiB at least (but the last),
and a run holds about one part in memory whatever the size of the message."""
SEND_CHUNK_BYTES = 20 * 1024 * 1024
"""Chunks of a report sent back by MESH: mesh-client holds a chunk in memory to retry it."""
CLIENT_NAME = "birth-notifications"


class MeshNotConfigured(RuntimeError):
    """The MESH secret holds no usable value: DevOps set it as the README says."""


class MeshCredentials(BaseModel):
    """The value of the MESH secret (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        description="MESH endpoint: https://mesh-sync.spineservices.nhs.uk (live), "
        "https://msg.intspineservices.nhs.uk (integration), or http://127.0.0.1:<port> (a sandbox)."
    )
    mailbox: str = Field(pattern=r"^[A-Za-z0-9]{4,20}$", description="The service's own mailbox id.")
    password: SecretStr
    shared_key: SecretStr = Field(description="The environment's MESH shared key (HMAC of the auth token).")
    client_cert: str = Field("", description="PEM client certificate (required for HTTPS endpoints).")
    client_key: SecretStr = Field(SecretStr(""), description="PEM private key of the client certificate.")
    ca_cert: str = Field("", description="PEM CA bundle of the endpoint; mesh-client's own for NHS endpoints.")

    @field_validator("url")
    @classmethod
    def _endpoint(cls, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme == "https" and parsed.hostname:
            return url.rstrip("/")
        if parsed.scheme == "http" and parsed.hostname and _is_loopback(parsed.hostname):
            return url.rstrip("/")
        raise ValueError("url must be https:// (or http:// on this machine's loopback, for a local sandbox)")

    @model_validator(mode="after")
    def _mutual_tls(self) -> MeshCredentials:
        if self.url.startswith("https://") and not (self.client_cert and self.client_key.get_secret_value()):
            raise ValueError("an https endpoint needs client_cert and client_key (MESH authenticates by mutual TLS)")
        return self

    @classmethod
    def from_secret(cls, secret_id: str, value: str) -> MeshCredentials:
        """Parse the secret's value; an unset (generated) or malformed value is refused by name, never shown."""
        try:
            return cls.model_validate(json.loads(value))
        except ValidationError as exc:
            # Field names and this model's own rules only: pydantic's messages could quote the value.
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            rules = [str(e["msg"]).removeprefix("Value error, ") for e in exc.errors() if not e["loc"]]
            why = "; ".join(([f"invalid fields {fields}"] if fields else []) + rules)
        except ValueError:
            why = "not a JSON object"
        raise MeshNotConfigured(
            f"the MESH secret {secret_id} holds no usable value ({why}): set it as README.md "
            "'MESH: setting the secret' says"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MeshMailbox:
    """One session with the service's MESH mailbox: receiving (``MeshInbox``) and sending reports
    (``MeshOutbox``)."""

    def __init__(self, client: Any, mailbox: str) -> None:
        self._client = client
        self.mailbox = mailbox

    def handshake(self) -> None:
        self._client.handshake()

    def list(self, workflow_id: str, limit: int) -> list[str]:
        return [
            str(message_id) for message_id in self._client.list_messages(max_results=limit, workflow_filter=workflow_id)
        ]

    @contextmanager
    def retrieve(self, message_id: str) -> Iterator[ReceivedMessage]:
        message = self._client.retrieve_message(message_id)
        try:
            headers = MeshMessage(
                message_id=str(message.message_id or message_id),
                sender=str(message.sender or ""),
                workflow_id=str(message.workflow_id or ""),
                message_type=str(message.message_type or "DATA"),
                local_id=str(message.local_id or ""),
                file_name=str(message.filename or ""),
            )
            yield ReceivedMessage(headers, message)
        finally:
            message.close()

    def acknowledge(self, message_id: str) -> None:
        self._client.acknowledge_message(message_id)

    def send(
        self,
        recipient: str,
        body: IO[bytes],
        size: int,
        *,
        workflow_id: str,
        file_name: str,
        local_id: str,
        subject: str,
        content_type: str,
    ) -> str:
        """Send ``size`` bytes of ``body`` (in chunks of ``SEND_CHUNK_BYTES``, each read whole by mesh-client);
        returns MESH's message id."""
        return str(
            self._client.send_message(
                recipient,
                {"Body": body, "ContentLength": size},
                max_chunk_size=SEND_CHUNK_BYTES,
                workflow_id=workflow_id,
                filename=file_name,
                local_id=local_id,
                subject=subject,
                content_type=content_type,
            )
        )


@contextmanager
def mesh_session(credentials: MeshCredentials) -> Iterator[MeshMailbox]:
    """A mesh-client session for the credentials, certificates in a private temporary directory removed after."""
    from mesh_client import MeshClient

    directory = tempfile.mkdtemp(prefix="mesh-")
    try:
        cert: tuple[str, str] | None = None
        verify: str | None = None
        if credentials.client_cert:
            cert = (
                _private_file(directory, "client.pem", credentials.client_cert),
                _private_file(directory, "client.key", credentials.client_key.get_secret_value()),
            )
        if credentials.ca_cert:
            verify = _private_file(directory, "ca.pem", credentials.ca_cert)
        client = MeshClient(
            credentials.url,
            credentials.mailbox,
            credentials.password.get_secret_value(),
            shared_key=credentials.shared_key.get_secret_value().encode(),
            cert=cert,
            verify=verify,
            max_retries=MESH_RETRIES,
            timeout=MESH_TIMEOUT_SECONDS,
            application_name=CLIENT_NAME,
        )
        with client:
            yield MeshMailbox(client, credentials.mailbox)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _private_file(directory: str, name: str, content: str) -> str:
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
    return path


def mesh_connector(secret_id: str, read_secret: Callable[[], str]) -> Callable[[], Any]:
    """Opens sessions with the credentials in the secret, read as each session opens (``read_secret`` may cache
    it briefly): DevOps rotate a password or certificate by putting the new value, without a deployment."""

    def connect() -> AbstractContextManager[MeshInbox]:
        return mesh_session(MeshCredentials.from_secret(secret_id, read_secret()))

    return connect


class S3InboundWriter:
    """Streams a MESH message into the inbound bucket: one PutObject when it fits in a part, else a multipart
    upload of ``part_bytes`` parts (aborted if anything fails, so no partial object ever appears)."""

    def __init__(self, s3: Any, bucket: str, part_bytes: int = PART_BYTES) -> None:
        if part_bytes < 5 * 1024 * 1024:
            raise ValueError("S3 multipart parts are 5 MiB at least")
        self.client = s3
        self.bucket = bucket
        self.part_bytes = part_bytes

    def holds(self, key: str, message_id: str) -> bool:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return bool(head.get("Metadata", {}).get(META_MESSAGE_ID) == message_id)

    def write(self, key: str, body: IO[bytes], metadata: dict[str, str]) -> int:
        first = _read_part(body, self.part_bytes)
        if len(first) < self.part_bytes:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=first, Metadata=metadata)
            return len(first)
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=metadata)["UploadId"]
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            part = first
            while part:
                number = len(parts) + 1
                etag = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=part
                )["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
                size += len(part)
                del part  # the next part replaces it: one part in memory at a time
                part = _read_part(body, self.part_bytes)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            raise
        return size


def _read_part(body: IO[bytes], size: int) -> bytes:
    """Exactly ``size`` bytes, fewer only at the end (a stream may return less than asked)."""
    data = body.read(size)
    if len(data) == size or not data:
        return data
    pieces = [data]
    got = len(data)
    while got < size and (more := body.read(size - got)):
        pieces.append(more)
        got += len(more)
    return b"".join(pieces)
