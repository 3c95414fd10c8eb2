"""What Lambda's SQS event source mapping hands a function, built from received SQS messages.

Used by the local runtime (the part of Lambda that moto cannot play) and by the integration tests, so
both invoke handlers exactly as the event source mapping would.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The ``{"Records": [...]}`` event for messages from ``receive_message`` (with all attributes)."""
    region = queue_arn.split(":")[3]
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


@dataclass
class LambdaContext:
    """The attributes and method of Lambda's context object that handlers and Powertools use."""

    function_name: str = "local-function"
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = 900
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    account_id: str = "000000000000"
    region: str = "eu-west-2"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def load_handler_module(path: str | Path, name: str | None = None) -> ModuleType:
    """Import a function's handler file (functions/<name>/handler.py) as a fresh module."""
    path = Path(path)
    module_name = name or f"lambda_{path.parent.name}_handler"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Delivery:
    """What one delivery of a batch came to, as Lambda reads it."""

    response: Any
    failed: set[str]
    """Ids of the messages that go back to the queue."""
    raised: bool = False

    def as_response(self) -> dict[str, Any]:
        """The handler's response (batchItemFailures), or, when it raised, every message as failed."""
        if self.raised:
            return {"batchItemFailures": [{"itemIdentifier": i} for i in sorted(self.failed)], "raised": True}
        return self.response or {"batchItemFailures": []}


def deliver_sqs_batch(
    sqs: Any,
    *,
    queue_url: str,
    queue_arn: str,
    messages: list[dict[str, Any]],
    invoke: Callable[[dict[str, Any]], Any],
    report_batch_item_failures: bool = True,
) -> Delivery:
    """One delivery by an SQS event source mapping: invoke the function with the batch, read its response as
    Lambda does, delete the messages that succeeded and leave the failed ones to the queue (its visibility
    timeout, then its redrive policy). Used by the local runtime and the integration tests alike.

    An invocation that raises (Powertools does when every record failed) fails the whole batch. Without
    ReportBatchItemFailures the response is ignored; an identifier that is empty or not in the batch fails
    the whole batch."""
    ids = [message["MessageId"] for message in messages]
    try:
        response = invoke(sqs_event(messages, queue_arn))
        delivery = Delivery(response, _failed(ids, response, report_batch_item_failures))
    except Exception:  # noqa: BLE001 (an invocation error: every message returns to the queue)
        delivery = Delivery(None, set(ids), raised=True)
    succeeded = [message for message in messages if message["MessageId"] not in delivery.failed]
    for start in range(0, len(succeeded), 10):
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(succeeded[start : start + 10])
            ],
        )
    return delivery


def _failed(ids: list[str], response: Any, report_batch_item_failures: bool) -> set[str]:
    if not report_batch_item_failures or not isinstance(response, dict):
        return set()
    failures = response.get("batchItemFailures") or []
    identifiers = {f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures}
    return identifiers if identifiers <= set(ids) else set(ids)  # type: ignore[return-value]
