"""The local runtime's play of Lambda's SQS event source mapping and async invocations, against a bare moto
server and a tiny handler (no CDK synthesis: the e2e tests run the real functions)."""

from __future__ import annotations

import json
import os
import textwrap
import time

import boto3
import pytest
import requests
from birthnotify_cli.localcloud.runtime import FunctionLog, LocalFunction, LocalRuntime, Schedule, SqsMapping

HANDLER = textwrap.dedent('''
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
''')


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
    return LocalFunction("Fn", "unit-fn", code, "app.handler", {"TABLE": "t1"}, timeout_seconds=30,
                         log=FunctionLog(tmp_path / "logs" / "unit-fn.log"))


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
    stats = runtime(server, function, [SqsMapping("M", function, url, arn, 10, report_batch_item_failures=True)]
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
    stats = runtime(server, function, [SqsMapping("M", function, url, arn, 10, report_batch_item_failures=False)]
                    ).run_until_idle(30)
    assert stats.invocations == 1 and stats.failed == 0


def test_an_unknown_item_identifier_or_an_exception_fails_the_whole_batch(server, sqs, function):
    url, arn = queue(sqs, "whole", max_receive=2)
    send(sqs, url, [{"n": 1, "nonsense": True}])
    send(sqs, url, [{"n": 2, "raise": True}])
    stats = runtime(server, function, [SqsMapping("M", function, url, arn, 1, report_batch_item_failures=True)]
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
