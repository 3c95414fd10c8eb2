"""The held store on moto: ingest stores each held record once, 25 to a request, counts it only once the
store accepted it, and a late retry never overwrites a record a reviewer has acted on since."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
from birthnotify.adapters.progress import SAVE_ATTEMPTS
from birthnotify.domain.held import ActionKind, HeldAction, HeldStatus
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import load_postcodes_by_district, to_bytes
from ingest_support import HELD_TABLE, REGISTRY_PATH
from test_retries_after_the_window import AN_HOUR, use_failing_progress

LEEDS, YORK = "E08000035", "E06000014"
YORK_POSTCODES = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")[YORK]


def today():
    return london_day(datetime.now(UTC))


def rows_with_york(rows_factory, count: int, york_every: int, seed: int) -> tuple[list[dict], set[int]]:
    """Leeds rows, every ``york_every``-th one moved to York (whose agreement has lapsed: held)."""
    rows = rows_factory(count, today(), districts={LEEDS: 1}, seed=seed)
    york = set()
    for index in range(0, count, york_every):
        rows[index]["postcode"], rows[index]["residence_la_code"] = YORK_POSTCODES[index % len(YORK_POSTCODES)], ""
        york.add(index + 1)
    return rows, york


class CountingDynamo:
    """The held store's client, counting BatchWriteItem requests; the first ``unprocess`` items of the first
    request come back unprocessed, as DynamoDB answers when a partition is busy."""

    def __init__(self, real, unprocess: int = 0) -> None:
        self._real = real
        self.unprocess = unprocess
        self.batches: list[int] = []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def batch_write_item(self, RequestItems):  # noqa: N803 (boto3's names)
        [(table, requests)] = RequestItems.items()
        self.batches.append(len(requests))
        if self.unprocess:
            left, self.unprocess = requests[: self.unprocess], 0
            self._real.batch_write_item(RequestItems={table: requests[len(left) :]})
            return {"UnprocessedItems": {table: left}}
        return self._real.batch_write_item(RequestItems=RequestItems)


def test_held_records_are_stored_25_to_a_request_and_only_unprocessed_ones_are_sent_again(ingest_stack, rows_factory):
    rows, york = rows_with_york(rows_factory, 120, york_every=2, seed=51)  # 60 held
    dynamo = CountingDynamo(boto3.client("dynamodb"), unprocess=3)
    ingest_stack.rewire(held_dynamodb=dynamo)
    ingest_stack.upload("RX1", "york.csv", to_bytes(rows, "york.csv"))
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    assert dynamo.batches == [25, 3, 25, 10]  # 25, the 3 left unprocessed again, 25, the last 10
    held = ingest_stack.held()
    assert sorted(h.key.row for h in held) == sorted(york)
    assert {(h.message.reason, h.message.authority_gss_code) for h in held} == {("NO_AGREEMENT", YORK)}
    assert ingest_stack.report("RX1", "york.csv")["outcome"]["held"] == 60


def test_a_late_retry_never_brings_back_a_held_record_a_reviewer_discarded_meanwhile(
    ingest_stack, rows_factory, sqs_clock
):
    rows, york = rows_with_york(rows_factory, 30, york_every=5, seed=52)
    # The end-of-file checkpoint fails at every attempt, and so does the save on the way out: the retry does
    # not know which records were stored.
    use_failing_progress(ingest_stack, failing=set(range(2, 3 + SAVE_ATTEMPTS)))
    ingest_stack.upload("RX1", "lost-progress.csv", to_bytes(rows, "lost-progress.csv"))
    [failed] = ingest_stack.run()
    assert len(failed["batchItemFailures"]) == 1
    stored = ingest_stack.held()
    assert sorted(h.key.row for h in stored) == sorted(york)

    # A reviewer discards one of them in the hour before the retry.
    store, discarded = ingest_stack.held_store, stored[0].key
    action = HeldAction(
        action_id="test-discard",
        kind=ActionKind.DISCARD,
        actor="arn:aws:iam::1:user/r",
        at=datetime.now(UTC),
        why="a duplicate of a record sent by phone",
    )
    assert store.discard(discarded, action)

    sqs_clock.advance(AN_HOUR)
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    assert sorted(h.key.row for h in ingest_stack.held()) == sorted(york - {discarded.row})
    item = boto3.client("dynamodb").get_item(
        TableName=HELD_TABLE, Key={"id": {"S": f"held#RX1#{discarded.sha256}#{discarded.row}"}}
    )["Item"]
    assert item["status"]["S"] == HeldStatus.DISCARDED and "body" not in item  # still discarded, no content
    # It was held by this file, and the report says so: the discard is a later action, told separately.
    assert ingest_stack.report("RX1", "lost-progress.csv")["outcome"]["held"] == len(york)
