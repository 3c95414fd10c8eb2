"""Retries come late: on AWS a failed file is redelivered after the ingest queue's visibility timeout (an
hour), long after SQS's 5-minute FIFO deduplication window has forgotten what was sent, and a reviewer may
have released or discarded a held record in between. Each test fails a file part-way, moves SQS's clock
past the window, retries, and counts what every queue and the held store hold: each record once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import boto3
from birthnotify.adapters.progress import SAVE_ATTEMPTS
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import load_postcodes_by_district, to_bytes
from ingest_support import REGISTRY_PATH, CrashesAfter, RunsOutOfTime

LEEDS, KENT, MAIDSTONE, YORK = "E08000035", "E10000016", "E07000110", "E06000014"
AN_HOUR = 3600  # the ingest queue's visibility timeout in the stack; far past the 300 s deduplication window


def today():
    return london_day(datetime.now(UTC))


def mixed_rows(rows_factory, count: int, seed: int) -> list[dict]:
    """Leeds and Kent records, with held ones (York's lapsed agreement) spread through the file."""
    rows = rows_factory(count, today(), districts={LEEDS: 1, MAIDSTONE: 1}, seed=seed)
    york = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")[YORK]
    for index in range(3, count, 7):
        rows[index]["postcode"], rows[index]["residence_la_code"] = york[0], ""
    return rows


def everything_sent(stack) -> tuple[Counter, Counter]:
    """(notification ids on the authority queues, rows in the held store), counted with repeats."""
    forwarded = Counter(
        body["notification_id"] for url in stack.authority_queue_urls.values() for body in stack.drain(url)
    )
    held = Counter(detail.message.source.row for detail in stack.held())
    return forwarded, held


def assert_each_record_once(stack, rows: list[dict], name: str) -> None:
    forwarded, held = everything_sent(stack)
    held_rows = {
        index + 1
        for index, row in enumerate(rows)
        if row["residence_la_code"] == "" and row["postcode"].startswith("YO")
    }
    assert held == Counter(held_rows)
    assert forwarded == Counter(row["notification_id"] for index, row in enumerate(rows) if index + 1 not in held_rows)
    outcome = stack.report("RX1", name)["outcome"]
    assert (outcome["rows_in"], outcome["forwarded"], outcome["held"]) == (
        len(rows),
        sum(forwarded.values()),
        len(held_rows),
    )


class FlakySqs:
    """The service's SQS client, except that Kent's queue refuses every entry while ``down``."""

    def __init__(self, real, kent_url: str, accept_first: int) -> None:
        self._real = real
        self._kent_url = kent_url
        self.accept_first = accept_first
        self.down = True
        self.kent_batches = 0

    def __getattr__(self, name):
        return getattr(self._real, name)

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        if QueueUrl == self._kent_url:
            self.kent_batches += 1
            if self.down and self.kent_batches > self.accept_first:
                return {
                    "Successful": [],
                    "Failed": [
                        {"Id": e["Id"], "SenderFault": False, "Code": "ServiceUnavailable", "Message": "try again"}
                        for e in Entries
                    ],
                }
        return self._real.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)


def test_an_sqs_outage_retried_after_the_window_sends_nothing_twice(ingest_stack, rows_factory, sqs_clock):
    rows = mixed_rows(rows_factory, 57, seed=41)
    flaky = FlakySqs(ingest_stack.sqs, ingest_stack.authority_queue_urls[KENT], accept_first=1)
    ingest_stack.rewire(sqs=flaky)
    ingest_stack.upload("RX1", "outage.csv", to_bytes(rows, "x.csv"))

    [failed] = ingest_stack.run()
    assert len(failed["batchItemFailures"]) == 1
    assert ingest_stack.reports("RX1", "outage.csv") == []

    flaky.down = False
    sqs_clock.advance(AN_HOUR)  # the message is visible again, and deduplication has forgotten the first sends
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    assert_each_record_once(ingest_stack, rows, "outage.csv")


class FailingProgressWrites:
    """The progress store's DynamoDB client, failing the chosen put_item calls (1-based) with a 500."""

    def __init__(self, real, failing: set[int]) -> None:
        self._real = real
        self.failing = failing
        self.puts = 0

    def __getattr__(self, name):
        return getattr(self._real, name)

    def put_item(self, **kwargs):
        self.puts += 1
        if self.puts in self.failing:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "PutItem")
        return self._real.put_item(**kwargs)


def use_failing_progress(stack, failing: set[int]) -> FailingProgressWrites:
    flaky = FailingProgressWrites(boto3.client("dynamodb"), failing)
    stack.rewire(progress_dynamodb=flaky)
    return flaky


def test_one_failed_checkpoint_write_is_tried_again_and_costs_nothing(ingest_stack, rows_factory):
    rows = mixed_rows(rows_factory, 60, seed=42)
    writes = use_failing_progress(ingest_stack, failing={2})  # the end-of-file checkpoint, once
    ingest_stack.upload("RX1", "blip.csv", to_bytes(rows, "x.csv"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    assert writes.puts == 3
    assert_each_record_once(ingest_stack, rows, "blip.csv")


def test_a_checkpoint_that_cannot_be_written_fails_the_file_and_the_late_retry_resends_nothing(
    ingest_stack, rows_factory, sqs_clock
):
    rows = mixed_rows(rows_factory, 60, seed=43)
    # Every attempt at the end-of-file checkpoint fails; the write on the way out succeeds.
    writes = use_failing_progress(ingest_stack, failing=set(range(2, 2 + SAVE_ATTEMPTS)))
    ingest_stack.upload("RX1", "dynamo.csv", to_bytes(rows, "x.csv"))

    [failed] = ingest_stack.run()
    assert len(failed["batchItemFailures"]) == 1
    assert writes.puts == 2 + SAVE_ATTEMPTS

    sqs_clock.advance(AN_HOUR)
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    assert_each_record_once(ingest_stack, rows, "dynamo.csv")


def test_a_file_stopped_by_the_timeout_and_resumed_late_sends_nothing_twice(ingest_stack, rows_factory, sqs_clock):
    rows = mixed_rows(rows_factory, 450, seed=44)
    ingest_stack.upload("RX1", "late.csv", to_bytes(rows, "x.csv"))

    [stopped] = ingest_stack.run(context=RunsOutOfTime(checks_before_timeout=2), max_polls=1)
    assert len(stopped["batchItemFailures"]) == 1

    sqs_clock.advance(AN_HOUR)
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    assert_each_record_once(ingest_stack, rows, "late.csv")


def test_a_file_failing_elsewhere_while_batches_are_in_flight_resends_none_of_them_late(
    ingest_stack, rows_factory, sqs_clock
):
    # The failure is not SQS's: the batches in flight when it comes may yet be accepted, and must be counted
    # (and recorded as accepted) before the run records its progress, or the late retry sends them again.
    rows = mixed_rows(rows_factory, 450, seed=45)
    ingest_stack.upload("RX1", "crash.csv", to_bytes(rows, "x.csv"))

    [failed] = ingest_stack.run(context=CrashesAfter(checks=1), max_polls=1)
    assert len(failed["batchItemFailures"]) == 1

    sqs_clock.advance(AN_HOUR)
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    assert_each_record_once(ingest_stack, rows, "crash.csv")


def test_without_the_clock_moved_the_window_would_have_hidden_duplicates(ingest_stack, sqs_clock):
    # The emulation itself: inside the window SQS drops a repeated deduplication id; after it, it does not.
    url = ingest_stack.authority_queue_urls[LEEDS]
    message = {"QueueUrl": url, "MessageBody": "{}", "MessageGroupId": "g", "MessageDeduplicationId": "d"}
    ingest_stack.sqs.send_message(**message)
    ingest_stack.sqs.send_message(**message)
    sqs_clock.advance(301)
    ingest_stack.sqs.send_message(**message)
    received = ingest_stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 2
