"""Who was mailed, on moto: each recipient of an event's emails at most once across retries and duplicate
deliveries, and no address stored; one at a time (GOV.UK Notify) at one conditional write per recipient plus
one, in bulk (SES) at two writes a run."""

from __future__ import annotations

import boto3
import pytest
from birthnotify.adapters.deliveries import DynamoDeliveries
from birthnotify.application.ports import DeliveryInProgress
from ingest_support import STATE_TABLE

LEASE = 900.0
RECIPIENTS = [f"event-1:{address}" for address in ("a@trust.example.nhs.uk", "b@council.example.gov.uk", "c@x.example")]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def deliveries(ingest_stack):
    """The state table's memory of deliveries, on a clock the test moves, counting its requests."""
    client = boto3.client("dynamodb")
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda event_name, **_: calls.append(event_name))
    clock = Clock()
    store = DynamoDeliveries(client, STATE_TABLE, clock=clock)
    store.calls, store.time = calls, clock  # type: ignore[attr-defined]
    return store


def stored_item() -> dict:
    items = boto3.client("dynamodb").scan(TableName=STATE_TABLE)["Items"]
    [item] = [i for i in items if i["id"]["S"].startswith("delivered#")]
    return item


def test_each_recipient_costs_one_write_plus_one_for_the_run_and_no_address_is_stored(deliveries):
    run = deliveries.run("event-1", LEASE)
    for mark in RECIPIENTS:
        assert run.claim(mark)
        run.sent(mark)
    run.close()
    assert deliveries.calls == ["before-call.dynamodb.UpdateItem"] * (len(RECIPIENTS) + 1)
    item = stored_item()
    assert len(item["done"]["SS"]) == len(RECIPIENTS) and "owner" not in item
    assert "@" not in str(item)

    again = deliveries.run("event-1", LEASE)  # a retry long after: nobody is mailed twice
    deliveries.time.now += 14 * 24 * 3600
    assert [again.claim(mark) for mark in RECIPIENTS] == [False, False, False]
    again.close()


def test_a_recipient_whose_send_failed_is_mailed_by_the_retry_and_no_other(deliveries):
    run = deliveries.run("event-1", LEASE)
    first, failed, third = RECIPIENTS
    assert run.claim(first)
    run.sent(first)
    assert run.claim(failed)  # SES refused: not reported sent
    assert run.claim(third)
    run.sent(third)
    run.close()

    deliveries.time.now += 3600  # after SQS's deduplication window: the memory is DynamoDB's
    retry = deliveries.run("event-1", LEASE)
    assert [retry.claim(mark) for mark in RECIPIENTS] == [False, True, False]


def test_an_invocation_that_dies_after_a_send_holds_its_recipient_until_its_lease_is_over(deliveries):
    died = deliveries.run("event-1", LEASE)
    first, second, third = RECIPIENTS
    assert died.claim(first)
    died.sent(first)
    assert died.claim(second)  # the first is marked by this write
    # ... SES takes the second email, and the function is killed before it writes again (no close).

    duplicate = deliveries.run("event-1", LEASE)  # SQS delivers the event again meanwhile
    assert duplicate.claim(first) is False
    with pytest.raises(DeliveryInProgress):
        duplicate.claim(second)
    with pytest.raises(DeliveryInProgress):
        duplicate.claim(third)

    deliveries.time.now += LEASE + 2  # the dead invocation's time is up: as Powertools' in-progress expiry
    retry = deliveries.run("event-1", LEASE)
    assert [retry.claim(mark) for mark in RECIPIENTS] == [False, True, True]


def test_a_duplicate_that_gives_way_still_records_what_it_mailed(deliveries):
    first, second, third = RECIPIENTS
    holder = deliveries.run("event-1", LEASE)
    other = deliveries.run("event-1", LEASE)
    assert other.claim(first)
    other.sent(first)
    other.close()  # mailed the first, and let go
    assert holder.claim(second)  # now holds the run
    late = deliveries.run("event-1", LEASE)
    assert late.claim(first) is False
    late.sent(third)  # (as if it had mailed the third before noticing; its mark must not be lost)
    with pytest.raises(DeliveryInProgress):
        late.claim(second)
    assert len(stored_item()["done"]["SS"]) == 2


# -- bulk sends (SES): the run claimed once, its recipients marked once ---------------------------------


def test_a_bulk_run_costs_two_writes_whatever_its_size_and_no_address_is_stored(deliveries):
    run = deliveries.run("event-1", LEASE)
    assert run.claim_all(RECIPIENTS) == RECIPIENTS
    for mark in RECIPIENTS:
        run.sent(mark)
    run.close()
    assert deliveries.calls == ["before-call.dynamodb.UpdateItem"] * 2
    item = stored_item()
    assert len(item["done"]["SS"]) == len(RECIPIENTS) and "owner" not in item
    assert "@" not in str(item)

    deliveries.time.now += 14 * 24 * 3600  # a retry long after: nobody is mailed twice
    again = deliveries.run("event-1", LEASE)
    assert again.claim_all(RECIPIENTS) == []
    again.close()


def test_a_destination_refused_in_a_bulk_is_the_only_one_the_retry_mails(deliveries):
    first, refused, third = RECIPIENTS
    run = deliveries.run("event-1", LEASE)
    assert run.claim_all(RECIPIENTS) == RECIPIENTS
    run.sent(first)
    run.sent(third)
    run.close()

    deliveries.time.now += 3600  # after SQS's deduplication window: the memory is DynamoDB's
    assert deliveries.run("event-1", LEASE).claim_all(RECIPIENTS) == [refused]


def test_a_bulk_that_failed_whole_leaves_everyone_to_the_retry(deliveries):
    run = deliveries.run("event-1", LEASE)
    assert run.claim_all(RECIPIENTS) == RECIPIENTS
    run.close()  # SES refused the request: nothing reported sent, the run released at once
    assert deliveries.run("event-1", LEASE).claim_all(RECIPIENTS) == RECIPIENTS


def test_an_invocation_that_dies_after_its_bulk_was_accepted_holds_the_run_then_all_are_mailed_again(deliveries):
    """The one thing bulk marks change: SES took the bulk, and the invocation died (or DynamoDB failed)
    before the write that marks it; after the lease, the whole bulk is mailed again (one recipient a time
    risked one)."""
    died = deliveries.run("event-1", LEASE)
    assert died.claim_all(RECIPIENTS) == RECIPIENTS
    for mark in RECIPIENTS:
        died.sent(mark)  # ... and no close: the function was killed

    duplicate = deliveries.run("event-1", LEASE)  # SQS delivers the event again meanwhile
    with pytest.raises(DeliveryInProgress):
        duplicate.claim_all(RECIPIENTS)

    deliveries.time.now += LEASE + 2
    assert deliveries.run("event-1", LEASE).claim_all(RECIPIENTS) == RECIPIENTS


def test_a_run_of_several_bulks_remembers_each_before_the_next_goes(deliveries):
    run = deliveries.run("event-1", LEASE)
    first, second, third = RECIPIENTS
    assert run.claim_all(RECIPIENTS) == RECIPIENTS
    run.sent(first)
    run.remember()  # the first bulk's marks, the run still held
    run.sent(second)
    # ... killed before the second bulk's marks were written
    deliveries.time.now += LEASE + 2
    assert deliveries.run("event-1", LEASE).claim_all(RECIPIENTS) == [second, third]


def test_a_duplicate_finds_a_finished_bulk_run_with_nothing_to_do_even_while_it_is_held(deliveries):
    holder = deliveries.run("event-1", LEASE)
    assert holder.claim_all(RECIPIENTS[:1]) == RECIPIENTS[:1]
    holder.sent(RECIPIENTS[0])
    holder.remember()
    assert deliveries.run("event-1", LEASE).claim_all(RECIPIENTS[:1]) == []
