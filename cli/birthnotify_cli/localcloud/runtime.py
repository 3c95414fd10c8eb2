"""The part of Lambda that moto cannot play: the SQS event source mappings and the scheduled rules'
invocations, run in this process against the moto server.

Each function is the template's: its handler file from its code asset, the python/ directories of its
layers importable (their packages imported anew for each function, in a module namespace of its own, as its
own container would), its environment variables resolved against the deployed stack (``/opt/...`` paths
pointed at the layer asset that holds the file) plus those Lambda sets (``AWS_LAMBDA_FUNCTION_NAME`` and
the others, the credentials of its execution role), its timeout in the context's remaining time, and every
AWS SDK client it creates pointed at the moto server (``AWS_ENDPOINT_URL``) while it runs.

Its log is a file, as its CloudWatch log group: what it prints and logs, with START, END and REPORT lines
around each invocation and an unhandled exception written as Lambda's runtime writes it.

Event source mappings poll, delete and change visibility with the function's credentials (Lambda uses its
execution role), honour BatchSize and ReportBatchItemFailures, delete only what succeeded, and leave SQS's
redrive policy to move a message that keeps failing to its dead-letter queue. A failed message stays in
flight until its queue's visibility timeout ends, as with Lambda, unless ``retry_delay_seconds`` shortens
that; ``run_until_idle`` does not wait for it, it moves SQS's clock forward (``behaviour.advance_sqs_clock``).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import re
import secrets
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.config import Config

from birthnotify_cli.lambda_shim import LambdaContext, deliver_sqs_batch, load_handler_module
from birthnotify_cli.localcloud.behaviour import advance_sqs_clock, seconds_until_visible
from birthnotify_cli.localcloud.template import ACCOUNT, REGION

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
ASYNC_RETRIES = 2
"""Lambda retries a failed asynchronous invocation (a scheduled rule's) twice, then dead-letters it."""
SESSION_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
"""Hidden while a function runs: in Lambda its credentials come from its environment alone."""
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})
PER_CONTAINER_PACKAGES = frozenset({"aws_lambda_powertools"})
"""Dependencies whose module state belongs to one function in Lambda (Powertools' cold-start flag, its
loggers and metrics): imported anew for each function, like its layers' packages. Others (boto3, pydantic,
requests) stay shared with this process and the moto server's threads."""
Sessions = Callable[["LocalFunction"], boto3.session.Session]
"""Gives a function's boto3 session: the credentials of its execution role."""


class FunctionLog(io.TextIOBase):
    """A function's stdout and stderr (structured logs, EMF metrics), appended to its file as CloudWatch Logs would
    keep it, each write at once (nothing waits in a buffer while ``make serve`` runs). Never closed: a
    logger created during an invocation may keep a reference to it."""

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
    role_arn: str | None = None
    """Its execution role: the runtime gives it this role's credentials when IAM is enforced."""
    runtime: str = "python3.13"
    modules: dict[str, ModuleType] = field(default_factory=dict, repr=False)
    """Its own imports of the packages in its code and layers, kept between invocations (a warm container)."""
    log_stream: str = field(default_factory=lambda: f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}")

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}"

    @functools.cached_property
    def own_packages(self) -> frozenset[str]:
        """Top-level packages and modules of its code and layers: imported anew for this function."""
        names = set(PER_CONTAINER_PACKAGES)
        for directory in (self.code_dir, *self.python_paths):
            for entry in directory.iterdir() if directory.is_dir() else ():
                if entry.is_dir() and (entry / "__init__.py").exists():
                    names.add(entry.name)
                elif entry.suffix == ".py":
                    names.add(entry.stem)
        return frozenset(names)

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
    """A scheduled EventBridge rule's Lambda target: invoked on demand by ``fire_schedules``, and by the
    background poller (``make serve``) every period of a ``rate(...)`` expression."""

    logical_id: str
    rule_name: str
    expression: str
    function: LocalFunction
    input: Any = None
    """The target's constant Input, sent instead of the scheduled event when the template sets one."""
    retries: int = ASYNC_RETRIES
    """Lambda's retries of a failed asynchronous invocation (the function's EventInvokeConfig, else two)."""
    last_fired: float | None = None

    @property
    def rule_arn(self) -> str:
        return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self.rule_name}"

    @property
    def period_seconds(self) -> float | None:
        """The period of a ``rate(n unit)`` expression; None for a cron expression."""
        match = _RATE.match(self.expression.strip())
        if not match:
            return None
        return int(match["count"]) * _RATE_UNITS[match["unit"].rstrip("s")]


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
    skipped_seconds: float = 0.0
    """SQS time skipped rather than waited for (visibility timeouts of failed messages, delays)."""
    by_function: dict[str, int] = field(default_factory=dict)


_RATE = re.compile(r"^rate\((?P<count>[0-9]+) (?P<unit>minutes?|hours?|days?)\)$")
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


class LocalRuntime:
    def __init__(
        self,
        endpoint_url: str,
        functions: dict[str, LocalFunction],
        mappings: list[SqsMapping],
        schedules: list[Schedule],
        retry_delay_seconds: float | None = None,
        sessions: Sessions | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.functions = functions
        self.mappings = mappings
        self.schedules = schedules
        self.retry_delay_seconds = retry_delay_seconds
        """None: a failed message is visible again when its queue's visibility timeout ends (Lambda's
        behaviour); a number: after that many seconds instead (shortened, and announced)."""
        self._session_factory = sessions
        self._sessions: dict[str, boto3.session.Session] = {}
        self._sqs_clients: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.background_stats = RunStats()
        self.background_errors: list[str] = []

    # -- identities --------------------------------------------------------------------------------------

    def session(self, function: LocalFunction) -> boto3.session.Session:
        """The function's boto3 session: its execution role's credentials (or fake ones when IAM is not
        enforced)."""
        with self._lock:
            session = self._sessions.get(function.name)
            if session is None:
                session = self._sessions[function.name] = (
                    self._session_factory(function)
                    if self._session_factory
                    else boto3.session.Session(
                        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
                        region_name=REGION,
                    )
                )
            return session

    def _sqs(self, function: LocalFunction) -> Any:
        """The SQS client the event source mapping uses: the function's credentials, as Lambda's poller."""
        with self._lock:
            client = self._sqs_clients.get(function.name)
            if client is None:
                client = self._sqs_clients[function.name] = self.session(function).client(
                    "sqs", endpoint_url=self.endpoint_url, region_name=REGION, config=CLIENT_CONFIG
                )
            return client

    # -- invoking ----------------------------------------------------------------------------------------

    def function(self, name: str) -> LocalFunction:
        """A function by its logical id or its function name."""
        for logical, function in self.functions.items():
            if name in (logical, function.name):
                return function
        raise KeyError(f"no function {name!r}; the template has {sorted(f.name for f in self.functions.values())}")

    def invoke(self, function: LocalFunction | str, event: Any) -> Any:
        """Invoke a function synchronously (as ``lambda invoke`` would); its exception propagates, after
        being logged as Lambda's runtime logs it."""
        function = self.function(function) if isinstance(function, str) else function
        with self._lock, self._as_lambda(function):
            log = function.log or sys.stdout
            request_id = str(uuid.uuid4())
            started = time.monotonic()
            init_ms = None
            try:
                if function.module is None:  # a cold start: Lambda's init phase imports the handler
                    _forget_loggers(function.environment.get("POWERTOOLS_SERVICE_NAME", "service_undefined"))
                    function.handler_function()
                    init_ms = (time.monotonic() - started) * 1000
                    started = time.monotonic()
                log.write(f"START RequestId: {request_id} Version: $LATEST\n")
                context = LambdaContext(
                    function_name=function.name,
                    memory_limit_in_mb=function.memory_mb,
                    timeout_seconds=function.timeout_seconds,
                    aws_request_id=request_id,
                    log_group_name=f"/aws/lambda/{function.name}",
                    log_stream_name=function.log_stream,
                    account_id=ACCOUNT,
                    region=REGION,
                )
                return function.handler_function()(event, context)
            except Exception as exc:
                log.write(lambda_error(exc))
                raise
            finally:
                elapsed = (time.monotonic() - started) * 1000
                log.write(f"END RequestId: {request_id}\n")
                log.write(
                    f"REPORT RequestId: {request_id}\tDuration: {elapsed:.2f} ms\tBilled Duration: "
                    f"{math.ceil(elapsed)} ms\tMemory Size: {function.memory_mb} MB"
                    + (f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else "")
                    + "\n"
                )

    @contextmanager
    def _as_lambda(self, function: LocalFunction) -> Iterator[None]:
        session = self.session(function)
        frozen = session.get_credentials().get_frozen_credentials()
        # What Lambda sets (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html), less
        # what would point at Lambda's own machinery here: AWS_LAMBDA_RUNTIME_API, LAMBDA_RUNTIME_DIR and
        # AWS_XRAY_DAEMON_ADDRESS. The trace header says "not sampled" and Powertools' tracer is off, so
        # nothing looks for an X-Ray daemon.
        environment = {
            "AWS_ACCESS_KEY_ID": frozen.access_key,
            "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
            "AWS_SESSION_TOKEN": frozen.token or "",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": function.log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
            "_HANDLER": function.handler,
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "_X_AMZN_TRACE_ID": f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
            f"Parent={secrets.token_hex(8)};Sampled=0",
            "POWERTOOLS_TRACE_DISABLED": "true",
            **function.environment,
        }
        if not environment["AWS_SESSION_TOKEN"]:
            environment.pop("AWS_SESSION_TOKEN")
        # Anything that would send the SDK elsewhere or to other credentials: a profile, a per-service endpoint.
        hidden = [
            name
            for name in os.environ
            if name in SESSION_VARIABLES
            or name.startswith("AWS_ENDPOINT_URL_")
            or (name == "AWS_SESSION_TOKEN" and name not in environment)
        ]
        saved = {name: os.environ.get(name) for name in [*environment, *hidden]}
        paths = [str(p) for p in (function.code_dir, *function.python_paths) if str(p) not in sys.path]
        saved_session = boto3.DEFAULT_SESSION
        try:
            for name in hidden:
                os.environ.pop(name)
            os.environ.update(environment)
            sys.path[:0] = paths
            boto3.DEFAULT_SESSION = session  # the handlers' boto3.client(...) calls use it
            output = function.log or sys.stdout
            with redirect_stdout(output), redirect_stderr(output), _own_modules(function):  # as Lambda, both
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

    def run_until_idle(
        self, timeout_seconds: float = 300, on_batch: Callable[[RunStats], None] | None = None, skip_waits: bool = True
    ) -> RunStats:
        """Poll and invoke until no mapped queue holds a message (visible, in flight or delayed). With
        ``skip_waits``, when every message left is waiting (a failed one for its visibility timeout, a
        delayed one), SQS's clock moves forward to when the first can be received, instead of waiting."""
        if self._thread is not None:
            raise RuntimeError("the runtime is polling in the background: stop_polling() first")
        started = time.monotonic()
        deadline = started + timeout_seconds
        stats = RunStats()
        names = [mapping.queue_url.rsplit("/", 1)[-1] for mapping in self.mappings if mapping.enabled]
        while True:
            busy = self.poll_once(stats, on_batch)
            if not busy and not self.pending():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"mapped queues still hold messages after {timeout_seconds} s: {self.pending()} "
                    f"({stats.invocations} invocations so far)"
                )
            if busy:
                continue
            wait = seconds_until_visible(names, ACCOUNT, REGION) if skip_waits else None
            if wait:
                advance_sqs_clock(wait + 0.001)
                stats.skipped_seconds += wait + 0.001
            else:
                time.sleep(0.1)
        stats.seconds = time.monotonic() - started
        return stats

    def pending(self) -> dict[str, int]:
        """Messages still in each mapped queue (visible, in flight or delayed), by queue name."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        pending = {}
        for mapping in self.mappings:
            if not mapping.enabled:
                continue
            attributes = self._sqs(mapping.function).get_queue_attributes(
                QueueUrl=mapping.queue_url, AttributeNames=names
            )["Attributes"]
            count = sum(int(attributes.get(name, 0)) for name in names)
            if count:
                pending[mapping.queue_url.rsplit("/", 1)[-1]] = count
        return pending

    def _receive(self, mapping: SqsMapping) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        sqs = self._sqs(mapping.function)
        while len(batch) < mapping.batch_size:
            received = sqs.receive_message(
                QueueUrl=mapping.queue_url,
                MaxNumberOfMessages=min(10, mapping.batch_size - len(batch)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not received:
                break
            batch += received
        return batch

    def _deliver(self, mapping: SqsMapping, batch: list[dict[str, Any]], stats: RunStats) -> None:
        stats.invocations += 1
        stats.messages += len(batch)
        stats.by_function[mapping.function.name] = stats.by_function.get(mapping.function.name, 0) + 1
        sqs = self._sqs(mapping.function)
        delivery = deliver_sqs_batch(
            sqs,
            queue_url=mapping.queue_url,
            queue_arn=mapping.queue_arn,
            messages=batch,
            invoke=lambda event: self.invoke(mapping.function, event),
            report_batch_item_failures=mapping.report_batch_item_failures,
        )
        failed = delivery.failed
        stats.errors += delivery.raised
        stats.failed += len(failed)
        if self.retry_delay_seconds is None:
            return  # a failed message stays in flight until its visibility timeout ends; SQS's redrive policy
            # moves it to the dead-letter queue once it has been received maxReceiveCount times
        for message in batch:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=mapping.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=int(self.retry_delay_seconds),
                )

    # -- schedules -------------------------------------------------------------------------------------------

    def fire_schedules(self, at: datetime | None = None, function: str | None = None) -> list[ScheduleRun]:
        """Deliver each scheduled rule's event (only those targeting ``function``, by name or logical id, if
        given) to its Lambda target now (as EventBridge would at ``at``), invoked asynchronously: retried as
        its EventInvokeConfig says (twice by default) on error, then sent to the function's dead-letter queue."""
        runs = []
        moment = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for schedule in self.schedules:
            if function is not None and function not in (schedule.function.name, schedule.function.logical_id):
                continue
            schedule.last_fired = time.monotonic()
            event = (
                schedule.input
                if schedule.input is not None
                else {
                    "version": "0",
                    "id": str(uuid.uuid4()),
                    "detail-type": "Scheduled Event",
                    "source": "aws.events",
                    "account": ACCOUNT,
                    "time": moment,
                    "region": REGION,
                    "resources": [schedule.rule_arn],
                    "detail": {},
                }
            )
            run = ScheduleRun(schedule.rule_name, schedule.function.name)
            for attempt in range(1, schedule.retries + 2):
                run.attempts = attempt
                try:
                    run.result, run.error = self.invoke(schedule.function, event), None
                    break
                except Exception as exc:  # noqa: BLE001 (recorded, retried, then dead-lettered)
                    run.error = f"{type(exc).__name__}: {exc}"
            if run.error and schedule.function.dead_letter_queue_url:
                # Lambda sends to the dead-letter queue with the function's execution role.
                self._sqs(schedule.function).send_message(
                    QueueUrl=schedule.function.dead_letter_queue_url,
                    MessageBody=json.dumps(event),
                    MessageAttributes={
                        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                        "ErrorMessage": {"DataType": "String", "StringValue": run.error[:256]},
                    },
                )
                run.dead_lettered = True
            runs.append(run)
        return runs

    # -- in the background ---------------------------------------------------------------------------------

    def start_polling(self, interval_seconds: float = 0.5, on_batch: Callable[[RunStats], None] | None = None) -> None:
        """Poll in a background thread (``make serve``) until ``stop_polling``; SQS keeps the machine's time."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self._fire_due_rates()
                    busy = self.poll_once(self.background_stats, on_batch)
                except Exception as exc:  # noqa: BLE001 (moto stopped, or a bug: keep serving, keep the reason)
                    self.background_errors.append(f"{type(exc).__name__}: {exc}")
                    busy = False
                if not busy:
                    self._stop.wait(interval_seconds)

        self._thread = threading.Thread(target=loop, name="localcloud-event-source-mappings", daemon=True)
        self._thread.start()

    def _fire_due_rates(self) -> None:
        """In the background, a ``rate(...)`` schedule fires every period, the first time at once (the mesh
        function every minute); a cron one (the daily digest) only through ``fire_schedules``."""
        for schedule in self.schedules:
            period = schedule.period_seconds
            if period is not None and (schedule.last_fired is None or time.monotonic() - schedule.last_fired >= period):
                for run in self.fire_schedules(function=schedule.function.name):
                    if run.error:
                        self.background_errors.append(f"{run.rule} -> {run.function}: {run.error}")

    def stop_polling(self, timeout_seconds: float = 60) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout_seconds)
        self._thread = None


def lambda_error(exc: BaseException) -> str:
    """An unhandled exception as Lambda's Python runtime logs it: ``[ERROR] Type: message`` and the
    traceback, one log event."""
    return f"[ERROR] {type(exc).__name__}: {exc}\nTraceback (most recent call last):\n" + "".join(
        traceback.format_tb(exc.__traceback__)
    )


def _forget_loggers(service: str) -> None:
    """A new container has no logger configured yet: forget this process's loggers of the function's
    service (an earlier local cloud's function configured them, with handlers writing to its own log; the
    standard library keeps loggers for the life of the process, and Powertools reuses a configured one)."""
    registry = logging.Logger.manager.loggerDict
    for name in [name for name in list(registry) if name == service or name.startswith(f"{service}.")]:
        registry.pop(name, None)


@contextmanager
def _own_modules(function: LocalFunction) -> Iterator[None]:
    """Let the function import its code's and layers' packages itself, kept apart from other functions'
    and this process's imports of the same packages (in Lambda each function has a process of its own:
    a module-level logger or client belongs to one function, made in its environment)."""
    names = function.own_packages

    def own(name: str) -> bool:
        return name.split(".", 1)[0] in names

    others = {name: module for name, module in list(sys.modules.items()) if own(name)}
    for name in others:
        del sys.modules[name]
    sys.modules.update(function.modules)
    try:
        yield
    finally:
        function.modules = {name: module for name, module in list(sys.modules.items()) if own(name)}
        for name in function.modules:
            sys.modules.pop(name, None)
        sys.modules.update(others)
