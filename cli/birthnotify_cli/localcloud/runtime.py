"""The part of Lambda that moto cannot play: the SQS event source mappings and the scheduled rules'
invocations, run in this process against the moto server.

Each function is the template's: its handler file from its code asset, the python/ directories of its
layers importable, its environment variables resolved against the deployed stack (``/opt/...`` paths
pointed at the layer asset that holds the file), its timeout in the context's remaining time, and every
AWS SDK client it creates pointed at the moto server (``AWS_ENDPOINT_URL``, fake credentials) while it
runs. Event source mappings honour BatchSize and ReportBatchItemFailures, delete only what succeeded, and
leave SQS's redrive policy to move a message that keeps failing to its dead-letter queue.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from birthnotify_cli.lambda_shim import LambdaContext, load_handler_module, sqs_event
from birthnotify_cli.localcloud.template import ACCOUNT, REGION

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
ASYNC_RETRIES = 2
"""Lambda retries a failed asynchronous invocation (a scheduled rule's) twice, then dead-letters it."""


class FunctionLog(io.TextIOBase):
    """A function's stdout (structured logs, EMF metrics), appended to its file as CloudWatch Logs would
    keep it. Never closed: a logger created during an invocation may keep a reference to it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text)
        return len(text)


@dataclass
class LocalFunction:
    """A Lambda function as the template defines it, run in this process."""

    logical_id: str
    name: str
    code_dir: Path
    handler: str
    """``module.function`` as in the template (``handler.handler``)."""
    environment: dict[str, str]
    timeout_seconds: float = 3
    memory_mb: int = 128
    python_paths: list[Path] = field(default_factory=list)
    """Layers' python/ directories, on sys.path while the function runs (Lambda's /opt/python)."""
    dead_letter_queue_url: str | None = None
    log: FunctionLog | None = None
    module: Any = None

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}"

    def handler_function(self) -> Callable[[Any, Any], Any]:
        module_path, _, function_name = self.handler.rpartition(".")
        if self.module is None:
            path = self.code_dir / f"{module_path.replace('.', '/')}.py"
            self.module = load_handler_module(path, f"localcloud_{self.name.replace('-', '_')}_{id(self):x}")
        return getattr(self.module, function_name)


@dataclass
class SqsMapping:
    """An SQS event source mapping: the runtime polls ``queue_url`` and invokes ``function``."""

    logical_id: str
    function: LocalFunction
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass
class Schedule:
    """A scheduled EventBridge rule's Lambda target: invoked on demand by ``fire_schedules``."""

    logical_id: str
    rule_name: str
    expression: str
    function: LocalFunction
    input: Any = None
    """The target's constant Input, sent instead of the scheduled event when the template sets one."""

    @property
    def rule_arn(self) -> str:
        return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self.rule_name}"


@dataclass
class ScheduleRun:
    rule: str
    function: str
    result: Any = None
    error: str | None = None
    attempts: int = 1
    dead_lettered: bool = False


@dataclass
class RunStats:
    invocations: int = 0
    messages: int = 0
    failed: int = 0
    """Messages returned to their queue (a reported item failure, or every message of a batch that raised)."""
    errors: int = 0
    """Invocations that raised."""
    seconds: float = 0.0
    by_function: dict[str, int] = field(default_factory=dict)


class LocalRuntime:
    def __init__(self, endpoint_url: str, functions: dict[str, LocalFunction], mappings: list[SqsMapping],
                 schedules: list[Schedule], retry_delay_seconds: int = 1) -> None:
        self.endpoint_url = endpoint_url
        self.functions = functions
        self.mappings = mappings
        self.schedules = schedules
        self.retry_delay_seconds = retry_delay_seconds
        """A failed message is visible again after this; Lambda leaves it for the queue's visibility timeout."""
        self._lock = threading.RLock()
        self._session: boto3.session.Session | None = None
        self._sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=REGION,
                                 aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.background_stats = RunStats()
        self.background_errors: list[str] = []

    # -- invoking ----------------------------------------------------------------------------------------

    def function(self, name: str) -> LocalFunction:
        """A function by its logical id or its function name."""
        for logical, function in self.functions.items():
            if name in (logical, function.name):
                return function
        raise KeyError(f"no function {name!r}; the template has {sorted(f.name for f in self.functions.values())}")

    def invoke(self, function: LocalFunction | str, event: Any) -> Any:
        """Invoke a function synchronously (as ``lambda invoke`` would); its exception propagates."""
        function = self.function(function) if isinstance(function, str) else function
        with self._lock, self._as_lambda(function):
            handler = function.handler_function()
            context = LambdaContext(function_name=function.name, memory_limit_in_mb=function.memory_mb,
                                    timeout_seconds=function.timeout_seconds,
                                    log_group_name=f"/aws/lambda/{function.name}")
            try:
                return handler(event, context)
            except Exception:
                traceback.print_exc(file=sys.stdout)  # into the function's log, as Lambda logs it
                raise

    @contextmanager
    def _as_lambda(self, function: LocalFunction) -> Iterator[None]:
        # No AWS_LAMBDA_FUNCTION_NAME: with it, Powertools and the X-Ray SDK would look for Lambda's X-Ray
        # daemon; tracing is off (the deploy report says so).
        environment = {
            **FAKE_CREDENTIALS, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url, "LAMBDA_TASK_ROOT": str(function.code_dir),
            "POWERTOOLS_TRACE_DISABLED": "true", **function.environment,
        }
        # Anything that would send the SDK elsewhere: a profile, a per-service endpoint.
        hidden = [name for name in os.environ if name == "AWS_PROFILE" or name.startswith("AWS_ENDPOINT_URL_")]
        saved = {name: os.environ.get(name) for name in [*environment, *hidden]}
        paths = [str(p) for p in (function.code_dir, *function.python_paths) if str(p) not in sys.path]
        saved_session = boto3.DEFAULT_SESSION
        try:
            for name in hidden:
                os.environ.pop(name)
            os.environ.update(environment)
            sys.path[:0] = paths
            if self._session is None:
                self._session = boto3.session.Session()  # credentials and region from the environment above
            boto3.DEFAULT_SESSION = self._session  # the handlers' boto3.client(...) calls use it
            with redirect_stdout(function.log or sys.stdout):
                yield
        finally:
            boto3.DEFAULT_SESSION = saved_session
            for path in paths:
                if path in sys.path:
                    sys.path.remove(path)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    # -- event source mappings -----------------------------------------------------------------------------

    def poll_once(self, stats: RunStats | None = None, on_batch: Callable[[RunStats], None] | None = None) -> bool:
        """Drain every enabled mapping's queue once; True if any message was handled."""
        stats = stats if stats is not None else RunStats()
        busy = False
        for mapping in self.mappings:
            if not mapping.enabled:
                continue
            while batch := self._receive(mapping):
                busy = True
                self._deliver(mapping, batch, stats)
                if on_batch:
                    on_batch(stats)
        return busy

    def run_until_idle(self, timeout_seconds: float = 300,
                       on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
        """Poll and invoke until no mapped queue holds a message (visible, in flight or delayed)."""
        started = time.monotonic()
        deadline = started + timeout_seconds
        stats = RunStats()
        while True:
            busy = self.poll_once(stats, on_batch)
            if not busy and not self.pending():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"mapped queues still hold messages after {timeout_seconds} s: {self.pending()} "
                                   f"({stats.invocations} invocations so far)")
            if not busy:
                time.sleep(0.1)
        stats.seconds = time.monotonic() - started
        return stats

    def pending(self) -> dict[str, int]:
        """Messages still in each mapped queue (visible, in flight or delayed), by queue name."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        pending = {}
        for mapping in self.mappings:
            if not mapping.enabled:
                continue
            attributes = self._sqs.get_queue_attributes(QueueUrl=mapping.queue_url, AttributeNames=names)["Attributes"]
            count = sum(int(attributes.get(name, 0)) for name in names)
            if count:
                pending[mapping.queue_url.rsplit("/", 1)[-1]] = count
        return pending

    def _receive(self, mapping: SqsMapping) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while len(batch) < mapping.batch_size:
            received = self._sqs.receive_message(
                QueueUrl=mapping.queue_url, MaxNumberOfMessages=min(10, mapping.batch_size - len(batch)),
                AttributeNames=["All"], MessageAttributeNames=["All"], WaitTimeSeconds=0).get("Messages", [])
            if not received:
                break
            batch += received
        return batch

    def _deliver(self, mapping: SqsMapping, batch: list[dict[str, Any]], stats: RunStats) -> None:
        ids = [m["MessageId"] for m in batch]
        stats.invocations += 1
        stats.messages += len(batch)
        stats.by_function[mapping.function.name] = stats.by_function.get(mapping.function.name, 0) + 1
        try:
            response = self.invoke(mapping.function, sqs_event(batch, mapping.queue_arn))
            failed = self._failed(mapping, ids, response)
        except Exception:  # noqa: BLE001 (an invocation error: every message goes back to the queue)
            stats.errors += 1
            failed = set(ids)
        stats.failed += len(failed)
        for message in batch:
            if message["MessageId"] in failed:
                # Back to the queue; once it has been received maxReceiveCount times, SQS's redrive policy
                # moves it to the dead-letter queue on the next receive.
                self._sqs.change_message_visibility(QueueUrl=mapping.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                                    VisibilityTimeout=self.retry_delay_seconds)
            else:
                self._sqs.delete_message(QueueUrl=mapping.queue_url, ReceiptHandle=message["ReceiptHandle"])

    @staticmethod
    def _failed(mapping: SqsMapping, ids: list[str], response: Any) -> set[str]:
        """Lambda's reading of the response: without ReportBatchItemFailures it is ignored; an identifier
        that is empty or not in the batch fails the whole batch."""
        if not mapping.report_batch_item_failures or not isinstance(response, dict):
            return set()
        failures = response.get("batchItemFailures") or []
        identifiers = {f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures}
        if not identifiers <= set(ids):
            return set(ids)
        return identifiers

    # -- schedules -------------------------------------------------------------------------------------------

    def fire_schedules(self, at: datetime | None = None) -> list[ScheduleRun]:
        """Deliver each scheduled rule's event to its Lambda target now (as EventBridge would at ``at``),
        invoked asynchronously: retried twice on error, then sent to the function's dead-letter queue."""
        runs = []
        moment = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for schedule in self.schedules:
            event = schedule.input if schedule.input is not None else {
                "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                "account": ACCOUNT, "time": moment, "region": REGION, "resources": [schedule.rule_arn], "detail": {}}
            run = ScheduleRun(schedule.rule_name, schedule.function.name)
            for attempt in range(1, ASYNC_RETRIES + 2):
                run.attempts = attempt
                try:
                    run.result, run.error = self.invoke(schedule.function, event), None
                    break
                except Exception as exc:  # noqa: BLE001 (recorded, retried, then dead-lettered)
                    run.error = f"{type(exc).__name__}: {exc}"
            if run.error and schedule.function.dead_letter_queue_url:
                self._sqs.send_message(QueueUrl=schedule.function.dead_letter_queue_url, MessageBody=json.dumps(event),
                                       MessageAttributes={
                                           "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                                           "ErrorMessage": {"DataType": "String", "StringValue": run.error[:256]}})
                run.dead_lettered = True
            runs.append(run)
        return runs

    # -- in the background ---------------------------------------------------------------------------------

    def start_polling(self, interval_seconds: float = 0.5,
                      on_batch: Callable[[RunStats], None] | None = None) -> None:
        """Poll in a background thread (``make serve``) until ``stop_polling``."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    busy = self.poll_once(self.background_stats, on_batch)
                except Exception as exc:  # noqa: BLE001 (moto stopped, or a bug: keep serving, keep the reason)
                    self.background_errors.append(f"{type(exc).__name__}: {exc}")
                    busy = False
                if not busy:
                    self._stop.wait(interval_seconds)

        self._thread = threading.Thread(target=loop, name="localcloud-event-source-mappings", daemon=True)
        self._thread.start()

    def stop_polling(self, timeout_seconds: float = 60) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout_seconds)
        self._thread = None
