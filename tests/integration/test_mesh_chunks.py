"""A MESH message of several chunks arrives whole, streamed into an S3 multipart upload, and the mesh
function's memory stays flat however large the message.

Memory is what the mesh function allocates (tracemalloc over its run, in this process), so S3 here is moto
in a process of its own (``moto.server``): moto in this process would count S3's own copies of the object as
the function's. MESH is the sandbox, in its own process too."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from math import ceil

import boto3
import pytest
from birthnotify.adapters.aws.mesh import mesh_ports
from birthnotify.adapters.mesh import PART_BYTES
from birthnotify.application.mesh import MeshReceiver
from birthnotify.domain.mesh import MeshWorkflows
from birthnotify.domain.registry import load_registry
from birthnotify.shared.settings import MeshSettings
from birthnotify_cli.mesh_sandbox import SERVICE_MAILBOX
from mesh_support import FILES_WORKFLOW, NEMS_WORKFLOW, REPORTS_WORKFLOW, TRUST_MAILBOX

MIB = 1024 * 1024
CHUNK_BYTES = 7 * MIB
"""What the trust's MESH client sends each chunk as (MESH chunks are up to 100 MB; smaller here to have many)."""
START_GUARD_SECONDS = 120
BUCKET = "chunks-inbound"


@pytest.fixture(scope="module")
def moto_elsewhere() -> Iterator[str]:
    """moto's server in a child process; its endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_GUARD_SECONDS
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=5).close()  # noqa: S310 (loopback)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(30)


@pytest.fixture
def receiver(moto_elsewhere, mesh_sandbox, root):
    """The mesh function's service, wired as its handler wires it, over moto (elsewhere) and the sandbox."""
    mesh_sandbox.reset()
    aws = {"endpoint_url": moto_elsewhere, "region_name": "eu-west-2"}
    s3, sqs, dynamodb = boto3.client("s3", **aws), boto3.client("sqs", **aws), boto3.client("dynamodb", **aws)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        dynamodb.create_table(
            TableName="chunks-state",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    queue = sqs.create_queue(QueueName="chunks-file-events")["QueueUrl"]
    settings = MeshSettings.model_validate(
        {
            "REGISTRY_PATH": str(root / "config" / "registry.toml"),
            "INBOUND_BUCKET": BUCKET,
            "FILE_EVENTS_QUEUE_URL": queue,
            "STATE_TABLE": "chunks-state",
            "MESH_SECRET_ID": "in-this-test",
            "MESH_FILE_WORKFLOW_ID": FILES_WORKFLOW,
            "MESH_NEMS_WORKFLOW_ID": NEMS_WORKFLOW,
            "MESH_REPORT_WORKFLOW_ID": REPORTS_WORKFLOW,
        }
    )
    secret = json.dumps(mesh_sandbox.credentials())
    ports = mesh_ports(settings, s3=s3, sqs=sqs, dynamodb=dynamodb, read_secret=lambda: secret)
    service = MeshReceiver(
        registry=load_registry(settings.registry_path),
        workflows=MeshWorkflows(FILES_WORKFLOW, NEMS_WORKFLOW, REPORTS_WORKFLOW),
        inbound_bucket=BUCKET,
        ports=ports,
        max_messages=10,
    )
    return service, s3


def a_csv_of(size: int, seed: int) -> bytes:
    """``size`` bytes of CSV-looking text, different for each seed."""
    block = b"".join(b"%d,BN%08d,2026-11-20,LS1 4AP\r\n" % (seed, row) for row in range(50_000))
    return (block * (size // len(block) + 1))[:size]


def sent_in_chunks(sandbox, data: bytes) -> tuple[str, int]:
    with sandbox.client(TRUST_MAILBOX) as client:
        message_id = str(
            client.send_message(
                SERVICE_MAILBOX, data, max_chunk_size=CHUNK_BYTES, workflow_id=FILES_WORKFLOW, filename="births.csv"
            )
        )
    with sandbox.client(SERVICE_MAILBOX) as client:
        message = client.retrieve_message(message_id)
        chunks = int(message.mex_header("total-chunks"))
        message.close()
    return message_id, chunks


def received_with_peak(service: MeshReceiver) -> tuple[list[str], int]:
    """Run once; the highest memory the run allocated (tracemalloc, this process)."""
    tracemalloc.start()
    try:
        run = service.run("chunk-test", 600)
        return run.stored, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_message_of_many_chunks_arrives_whole_and_memory_does_not_grow_with_it(receiver, mesh_sandbox):
    service, s3 = receiver
    peaks = {}
    for size in (16 * MIB, 64 * MIB):
        data = a_csv_of(size, seed=size)
        digest = hashlib.sha256(data).hexdigest()
        message_id, chunks = sent_in_chunks(mesh_sandbox, data)
        del data  # only the digest is kept: the run must not find the message in this process's memory
        assert chunks == ceil(size / CHUNK_BYTES) >= 3  # MESH holds it as several chunks

        stored, peaks[size] = received_with_peak(service)

        assert stored == [message_id]
        key = f"inbound/RX2/mesh-{message_id}.csv"
        head = s3.head_object(Bucket=BUCKET, Key=key, PartNumber=1)
        assert head["PartsCount"] == ceil(size / PART_BYTES)  # streamed in parts, not one buffer
        whole = hashlib.sha256()
        for piece in s3.get_object(Bucket=BUCKET, Key=key)["Body"].iter_chunks(MIB):
            whole.update(piece)
        assert whole.hexdigest() == digest  # every chunk, in order, nothing more
        with mesh_sandbox.client(SERVICE_MAILBOX) as client:
            assert client.list_messages() == []  # acknowledged once S3 had it whole

    # Four times the message, the same memory (within one part): flat. And below the large message's size.
    assert peaks[64 * MIB] < peaks[16 * MIB] + PART_BYTES, peaks
    assert peaks[64 * MIB] < 64 * MIB, peaks
