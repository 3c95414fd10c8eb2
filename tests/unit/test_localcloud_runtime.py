"""The local runtime's play of Lambda's SQS event source mapping and async invocations, against a bare moto
server and a tiny handler (no CDK synthesis: the e2e tests run the real functions)."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import time

import boto3
import pytest
import requests
from birthnotify_cli.localcloud.runtime import FunctionLog, LocalFunction, LocalRuntime, Schedule, SqsMapping

HANDLER = textwrap.dedent("""
    import json, os
    import boto3

    CALLS = []

    def handler(event, context):
        if event.get("source") == "aws.events":
            CALLS.append(("schedule", event["time"]))
            raise RuntimeError("digest failed")
        bodies = [json.loads(r["body"]) for r in event["Records"]]
        CALLS.append({
            "bodies": bodies,
            "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
            "table": os.environ.get("TABLE"),
            "remaining_ms": context.get_remaining_time_in_millis(),
            # a client made with defaults, as the real handlers make theirs, reaches the moto server
            "queues": len(boto3.client("sqs").list_queues().get("QueueUrls", [])),
        })
        print("handled", len(bodies))
        if any(b.get("raise") for b in bodies):
            raise ValueError("whole batch fails")
        failed = [r["messageId"] for r, b in zip(event["Records"], bodies) if b.get("bad")]
        if any(b.get("nonsense") for b in bodies):
            failed = ["not-a-message-id"]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
""")


@pytest.fixture(scope="module")
def server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    server.stop()


@pytest.fixture
def sqs(server):
    requests.post(f"{server}/moto-api/reset", timeout=10)  # moto's state is per process: start clean
    return boto3.client("sqs", endpoint_url=server, region_name="eu-west-2")  # tests/conftest.py's fake keys


@pytest.fixture
def function(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    return LocalFunction(
        "Fn",
        "unit-fn",
        code,
        "app.handler",
        {"TABLE": "t1"},
        timeout_seconds=30,
        log=FunctionLog(tmp_path / "logs" / "unit-fn.log"),
    )


def queue(sqs, name: str, max_receive: int | None = None) -> tuple[str, str]:
    attributes = {}
    if max_receive:
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive})
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def send(sqs, url: str, bodies: list[dict]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))


def runtime(server, function, mappings, schedules=()) -> LocalRuntime:
    return LocalRuntime(server, {"Fn": function}, list(mappings), list(schedules), retry_delay_seconds=0)


def calls(function) -> list:
    return function.module.CALLS


def test_batches_are_at_most_batch_size_even_above_ten(server, sqs, function):
    url, arn = queue(sqs, "big")
    send(sqs, url, [{"n": n} for n in range(27)])
    stats = runtime(server, function, [SqsMapping("M", function, url, arn, batch_size=12)]).run_until_idle(30)
    sizes = [len(call["bodies"]) for call in calls(function)]
    assert sum(sizes) == 27 and max(sizes) <= 12 and any(size > 10 for size in sizes)
    assert stats.invocations == len(sizes) and stats.failed == 0
    assert sorted(b["n"] for call in calls(function) for b in call["bodies"]) == list(range(27))


def test_the_function_runs_with_its_environment_and_the_moto_endpoint_then_it_is_restored(server, sqs, function):
    url, arn = queue(sqs, "env")
    send(sqs, url, [{"n": 1}])
    before = {name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL", "TABLE", "AWS_ACCESS_KEY_ID")}
    runtime(server, function, [SqsMapping("M", function, url, arn, batch_size=10)]).run_until_idle(30)
    [call] = calls(function)
    assert call["endpoint"] == server and call["table"] == "t1" and call["queues"] == 1
    assert 25_000 < call["remaining_ms"] <= 30_000  # the template's Timeout
    assert {name: os.environ.get(name) for name in before} == before
    assert "handled 1" in function.log.path.read_text()


def test_only_reported_failures_return_and_a_poison_message_reaches_the_dlq(server, sqs, function):
    url, arn = queue(sqs, "partial", max_receive=3)
    send(sqs, url, [{"n": 1}, {"n": 2, "bad": True}, {"n": 3}])
    stats = runtime(
        server, function, [SqsMapping("M", function, url, arn, 10, report_batch_item_failures=True)]
    ).run_until_idle(30)
    delivered = [b["n"] for call in calls(function) for b in call["bodies"]]
    assert sorted(delivered) == [1, 2, 2, 2, 3]  # the bad one three times (maxReceiveCount), the others once
    assert stats.failed == 3
    dlq = sqs.get_queue_url(QueueName="partial-dlq")["QueueUrl"]
    [dead] = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert json.loads(dead["Body"]) == {"n": 2, "bad": True}


def test_without_report_batch_item_failures_the_response_is_ignored(server, sqs, function):
    url, arn = queue(sqs, "ignored", max_receive=2)
    send(sqs, url, [{"n": 1, "bad": True}])
    stats = runtime(
        server, function, [SqsMapping("M", function, url, arn, 10, report_batch_item_failures=False)]
    ).run_until_idle(30)
    assert stats.invocations == 1 and stats.failed == 0


def test_an_unknown_item_identifier_or_an_exception_fails_the_whole_batch(server, sqs, function):
    url, arn = queue(sqs, "whole", max_receive=2)
    send(sqs, url, [{"n": 1, "nonsense": True}])
    send(sqs, url, [{"n": 2, "raise": True}])
    stats = runtime(
        server, function, [SqsMapping("M", function, url, arn, 1, report_batch_item_failures=True)]
    ).run_until_idle(30)
    assert stats.failed == 4 and stats.errors == 2  # each message twice; the raising one twice
    assert "ValueError: whole batch fails" in function.log.path.read_text()  # the traceback, in its log
    dlq = sqs.get_queue_url(QueueName="whole-dlq")["QueueUrl"]
    assert len(sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]) == 2


def test_a_scheduled_invocation_that_keeps_failing_is_retried_twice_then_dead_lettered(server, sqs, function):
    dlq, _ = queue(sqs, "async-dlq")
    function.dead_letter_queue_url = dlq
    [run] = runtime(server, function, [], [Schedule("Rule", "daily", "cron(0 7 * * ? *)", function)]).fire_schedules()
    assert (run.attempts, run.dead_lettered) == (3, True) and "digest failed" in run.error
    assert [c[0] for c in calls(function)] == ["schedule"] * 3
    [dead] = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(dead["Body"])["detail-type"] == "Scheduled Event"


def test_background_polling_handles_messages_until_stopped(server, sqs, function):
    url, arn = queue(sqs, "background")
    local = runtime(server, function, [SqsMapping("M", function, url, arn, 10)])
    local.start_polling(interval_seconds=0.05)
    try:
        send(sqs, url, [{"n": 1}])
        deadline = time.monotonic() + 300  # a hang guard, not a speed limit
        while local.background_stats.messages < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        local.stop_polling()
    assert local.background_stats.messages == 1 and not local.background_errors
    assert local.pending() == {}


LAMBDA_VARIABLES = (
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_EXECUTION_ENV",
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
)
ENVIRONMENT_HANDLER = textwrap.dedent(f"""
    import os
    import boto3

    def handler(event, context):
        seen = {{name: os.environ.get(name) for name in {LAMBDA_VARIABLES!r}}}
        seen["session_key"] = boto3.DEFAULT_SESSION.get_credentials().access_key  # what boto3.client() signs with
        return seen
""")


def test_a_function_sees_the_variables_lambda_sets_and_its_own_credentials(server, sqs, tmp_path):
    code = tmp_path / "env"
    code.mkdir()
    (code / "envapp.py").write_text(ENVIRONMENT_HANDLER)
    function = LocalFunction("Env", "unit-env", code, "envapp.handler", {}, memory_mb=512)
    sessions = []

    def session_of(fn):
        sessions.append(fn.name)
        return boto3.session.Session(
            aws_access_key_id="ASIAFUNCTION",
            aws_secret_access_key="s",  # noqa: S106
            aws_session_token="t",  # noqa: S106
            region_name="eu-west-2",
        )

    before = {name: os.environ.get(name) for name in LAMBDA_VARIABLES}
    seen = LocalRuntime(server, {"Env": function}, [], [], sessions=session_of).invoke(function, {})
    assert seen["AWS_LAMBDA_FUNCTION_NAME"] == "unit-env" and seen["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert seen["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST" and seen["_HANDLER"] == "envapp.handler"
    assert seen["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/unit-env"
    assert seen["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
    assert seen["_X_AMZN_TRACE_ID"].startswith("Root=1-") and seen["_X_AMZN_TRACE_ID"].endswith(";Sampled=0")
    assert (seen["AWS_ACCESS_KEY_ID"], seen["AWS_SESSION_TOKEN"], seen["session_key"]) == (
        "ASIAFUNCTION",
        "t",
        "ASIAFUNCTION",
    )
    assert sessions == ["unit-env"]
    assert {name: os.environ.get(name) for name in LAMBDA_VARIABLES} == before  # restored afterwards


def test_each_invocation_is_logged_as_cloudwatch_logs_it_and_an_exception_with_its_traceback(server, sqs, function):
    url, arn = queue(sqs, "logged", max_receive=1)
    send(sqs, url, [{"n": 1}])
    send(sqs, url, [{"n": 2, "raise": True}])
    runtime(server, function, [SqsMapping("M", function, url, arn, 1, report_batch_item_failures=True)]).run_until_idle(
        30
    )
    log = function.log.path.read_text()
    starts = re.findall(r"^START RequestId: (\S+) Version: \$LATEST$", log, re.MULTILINE)
    ends = re.findall(r"^END RequestId: (\S+)$", log, re.MULTILINE)
    reports = re.findall(
        r"^REPORT RequestId: (\S+)\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB",
        log,
        re.MULTILINE,
    )
    assert len(starts) == 2 and starts == ends == reports
    assert "Init Duration" in log.splitlines()[log.splitlines().index(f"END RequestId: {starts[0]}") + 1]
    error = log.index("[ERROR] ValueError: whole batch fails\nTraceback (most recent call last):\n")
    assert log.index(f"START RequestId: {starts[1]}") < error < log.index(f"END RequestId: {starts[1]}")
    assert 'raise ValueError("whole batch fails")' in log[error:]


LAYER_MODULE = textwrap.dedent("""
    import os
    SERVICE = os.environ["SERVICE"]  # read at import, as Powertools' loggers read theirs
    CALLS = []
""")
LAYER_HANDLER = textwrap.dedent("""
    import layerpkg

    def handler(event, context):
        layerpkg.CALLS.append(event)
        return {"service": layerpkg.SERVICE, "calls": len(layerpkg.CALLS), "module": id(layerpkg)}
""")


def test_each_function_imports_its_layers_packages_for_itself(server, sqs, tmp_path):
    layer = tmp_path / "layer" / "python"
    (layer / "layerpkg").mkdir(parents=True)
    (layer / "layerpkg" / "__init__.py").write_text(LAYER_MODULE)
    functions = {}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(LAYER_HANDLER)
        functions[name] = LocalFunction(
            name, f"fn-{name}", tmp_path / name, "app.handler", {"SERVICE": name}, python_paths=[layer]
        )
    local = LocalRuntime(server, functions, [], [])
    first, second, again = (
        local.invoke(functions["one"], {}),
        local.invoke(functions["two"], {}),
        local.invoke(functions["one"], {}),
    )
    assert (first["service"], second["service"]) == ("one", "two")  # imported in each one's environment
    assert first["module"] != second["module"] and again["module"] == first["module"]  # warm: kept
    assert (first["calls"], second["calls"], again["calls"]) == (1, 1, 2)
    assert "layerpkg" not in sys.modules  # nothing left behind in this process


SLOW_RETRY_HANDLER = textwrap.dedent("""
    def handler(event, context):
        raise RuntimeError("always fails")
""")


def test_a_failed_message_returns_after_its_visibility_timeout_which_run_until_idle_does_not_wait_for(
    server, sqs, tmp_path
):
    from birthnotify_cli.localcloud import behaviour

    code = tmp_path / "slow"
    code.mkdir()
    (code / "slowapp.py").write_text(SLOW_RETRY_HANDLER)
    function = LocalFunction("Slow", "unit-slow", code, "slowapp.handler", {})
    dlq = sqs.create_queue(QueueName="slow-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="slow",
        Attributes={
            "VisibilityTimeout": "600",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    send(sqs, url, [{"n": 1}])
    mapping = SqsMapping("M", function, url, arn, 1)
    with behaviour.active():
        local = LocalRuntime(server, {"Slow": function}, [mapping], [])  # Lambda's timing: no retry_delay_seconds
        received = time.monotonic()  # before the receive: poll_once's own time is then counted as waited
        assert local.poll_once()
        with pytest.raises(TimeoutError):  # really in flight for 600 s, unless time is skipped
            local.run_until_idle(timeout_seconds=0.5, skip_waits=False)
        stats = local.run_until_idle(timeout_seconds=300)  # a hang guard: waiting would take 1,200 s
        waited = time.monotonic() - received  # the machine's time that passed meanwhile, however slow it is
        assert len(sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]) == 1
    # The second and third receives fail; when the third's visibility timeout ends, the redrive policy moves it.
    assert stats.invocations == 2 and stats.errors == 2
    # Three visibility timeouts passed in SQS's eyes, partly skipped, partly waited; none skipped twice.
    assert 3 * 600 - 0.1 <= stats.skipped_seconds + waited and stats.skipped_seconds <= 3 * 600 + 0.1
    assert behaviour.skipped_seconds() == 0  # back to the machine's time once no local cloud is on


LOGGING_HANDLER = textwrap.dedent("""
    from aws_lambda_powertools import Logger

    logger = Logger()  # its service from POWERTOOLS_SERVICE_NAME, its handler on this container's stdout

    def handler(event, context):
        logger.info("handled", extra={"n": event["n"]})
""")


def test_a_later_local_cloud_s_function_logs_into_its_own_log_not_an_earlier_ones(server, sqs, tmp_path):
    code = tmp_path / "logging"
    code.mkdir()
    (code / "logapp.py").write_text(LOGGING_HANDLER)
    logs = []
    for n in (1, 2):  # two local clouds in one process, one after the other (as pytest runs them)
        log = FunctionLog(tmp_path / f"cloud{n}" / "fn.log")
        function = LocalFunction(
            "Log", "unit-log", code, "logapp.handler", {"POWERTOOLS_SERVICE_NAME": "unit-log"}, log=log
        )
        LocalRuntime(server, {"Log": function}, [], []).invoke(function, {"n": n})
        logs.append(log.path.read_text())
    assert ['"n":1' in text for text in logs] == [True, False]
    assert ['"n":2' in text for text in logs] == [False, True]
