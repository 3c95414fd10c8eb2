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


def invoke_with_sqs_batch(handler: Any, messages: list[dict[str, Any]], queue_arn: str,
                          context: Any) -> dict[str, Any]:
    """Invoke a handler with a batch as the event source mapping does; returns its batchItemFailures.

    A handler that raises (Powertools does when every record failed) fails the whole batch, as in Lambda.
    """
    try:
        response = handler(sqs_event(messages, queue_arn), context)
    except Exception:  # noqa: BLE001 (an invocation error: every message returns to the queue)
        return {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages], "raised": True}
    return response or {"batchItemFailures": []}
