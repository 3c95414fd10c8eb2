"""A real botocore SQS client whose HTTP layer answers in-process: for CPU and latency figures.

Everything botocore does for a call still happens (parameter validation, JSON serialisation, SigV4
signing, response parsing); only the socket is replaced, at botocore's ``before-send`` event, by a
handler that accepts every entry (optionally after sleeping for a simulated round trip, which releases
the GIL as a socket wait would). The handler's own CPU time per request is measured apart (``cost_per_request``,
by replaying a request it answered), so the bench can subtract it: timing each call from inside would cost
more than the call (reading a thread's CPU clock is slow on some virtual machines).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

REGION = "eu-west-2"
ACCOUNT = "000000000000"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


@dataclass
class CannedSqs:
    """Answers SendMessageBatch, SendMessage and GetQueueUrl; counts requests and its own CPU time."""

    round_trip_seconds: float = 0.0
    requests: int = 0
    entries: int = 0
    last_batch_request: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        response, count = self.answer(request)
        with self._lock:
            self.requests += 1
            self.entries += count
        if self.round_trip_seconds:
            time.sleep(self.round_trip_seconds)
        return response

    def answer(self, request: Any) -> tuple[AWSResponse, int]:
        """The canned response to a request, and how many messages it carried."""
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        payload = json.loads(request.body) if request.body else {}
        if target.endswith("SendMessageBatch"):
            ids = [entry["Id"] for entry in payload["Entries"]]
            body = {"Successful": [{"Id": i, "MessageId": i, "MD5OfMessageBody": "0" * 32} for i in ids], "Failed": []}
            count = len(ids)
            self.last_batch_request = request
        elif target.endswith("GetQueueUrl"):
            body = {"QueueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{payload['QueueName']}"}
            count = 0
        else:
            body = {"MessageId": "m", "MD5OfMessageBody": "0" * 32}
            count = 1
        return AWSResponse(
            request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(json.dumps(body).encode())
        ), count

    def cost_per_request(self, repeats: int = 500) -> float:
        """CPU seconds this stub spends answering one SendMessageBatch (its last), measured by replaying it."""
        if self.last_batch_request is None:
            return 0.0
        started = time.process_time()
        for _ in range(repeats):
            self.answer(self.last_batch_request)
        return (time.process_time() - started) / repeats


def stubbed_sqs_client(canned: CannedSqs) -> Any:
    """A boto3 SQS client configured as the ingest function's (its own session, fake credentials), answered by
    ``canned``."""
    from birthnotify.adapters.aws.ingest import SQS_CLIENT_CONFIG

    session = boto3.session.Session(
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106
        region_name=REGION,
    )
    client = session.client("sqs", config=SQS_CLIENT_CONFIG)
    client.meta.events.register_first("before-send.sqs", canned)
    return client
