"""Requests to SQS overlap (across queues and message groups): each group still arrives in file order, and
a record is counted forwarded only when SQS accepted it, even when some batches fail for good while others
are in flight."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime

from birthnotify.adapters.sqs import DEFAULT_CONCURRENCY
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import to_bytes

LEEDS, KENT, MAIDSTONE = "E08000035", "E10000016", "E07000110"
AN_HOUR = 3600


def today():
    return london_day(datetime.now(UTC))


def chains(rows_factory, count: int) -> list[dict]:
    """``count`` NEW notifications in Leeds and Kent, then an AMEND of each, then a CANCEL of every other:
    each group's messages are far apart in the file, so they travel in different batches, many at once."""
    news = rows_factory(count, today(), districts={LEEDS: 1, MAIDSTONE: 1}, seed=17)
    amends = [
        new
        | {
            "notification_id": f"A-{n}",
            "notification_type": "AMEND",
            "original_notification_id": new["notification_id"],
            "birth_weight_grams": "3333",
        }
        for n, new in enumerate(news)
    ]
    cancels = [
        new
        | {
            "notification_id": f"C-{n}",
            "notification_type": "CANCEL",
            "original_notification_id": new["notification_id"],
        }
        for n, new in enumerate(news)
        if n % 2 == 0
    ]
    return [*news, *amends, *cancels]


class CountingSqs:
    """The moto client, recording the most requests it had in flight at once; refuses, while ``down``, every
    entry of the groups named in ``refused_groups`` (a content-keyed fault: the same whatever the order).

    With ``hold_first``, the first request waits (up to a minute) until a second is in flight: a sender that
    overlaps requests passes at once, one that does not is caught whatever the machine's speed."""

    def __init__(self, real, refused_groups: frozenset[str] = frozenset(), hold_first: bool = False) -> None:
        self._real = real
        self._lock = threading.Lock()
        self._in_flight = 0
        self._overlapped = threading.Event()
        self._hold_first = hold_first
        self.most_in_flight = 0
        self.refused_groups = refused_groups
        self.down = True

    def __getattr__(self, name):
        return getattr(self._real, name)

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
            first, self._hold_first = self._hold_first, False
            if self._in_flight > 1:
                self._overlapped.set()
        if first:
            self._overlapped.wait(timeout=60)
        try:
            refused = [e for e in Entries if self.down and e.get("MessageGroupId") in self.refused_groups]
            sent = [e for e in Entries if e not in refused]
            response = self._real.send_message_batch(QueueUrl=QueueUrl, Entries=sent) if sent else {}
            return {
                "Successful": response.get("Successful", []),
                "Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "ServiceUnavailable"} for e in refused],
            }
        finally:
            with self._lock:
                self._in_flight -= 1


def group_order(stack) -> dict[str, list[str]]:
    """Each message group's notification types, in the order its queue delivers them."""
    order: dict[str, list[str]] = defaultdict(list)
    for url in stack.authority_queue_urls.values():
        for body in stack.drain(url):
            order[body["_attributes"]["MessageGroupId"]].append(body["notification_type"])
    return order


def test_overlapping_requests_keep_each_group_in_file_order_and_count_what_sqs_accepted(ingest_stack, rows_factory):
    rows = chains(rows_factory, 120)
    counting = CountingSqs(ingest_stack.sqs, hold_first=True)
    ingest_stack.rewire(sqs=counting, send_concurrency=DEFAULT_CONCURRENCY)
    ingest_stack.upload("RX1", "chains.csv", to_bytes(rows, "chains.csv"))

    assert ingest_stack.run() == [{"batchItemFailures": []}]

    order = group_order(ingest_stack)
    assert len(order) == 120
    for types in order.values():
        assert types in (["NEW", "AMEND"], ["NEW", "AMEND", "CANCEL"]), types
    outcome = ingest_stack.report("RX1", "chains.csv")["outcome"]
    assert outcome["forwarded"] == sum(len(types) for types in order.values()) == len(rows)
    assert counting.most_in_flight > 1  # the first request was still in flight when others were sent


def test_a_group_sqs_refuses_fails_the_file_and_the_late_retry_sends_each_record_once(
    ingest_stack, rows_factory, sqs_clock
):
    rows = chains(rows_factory, 60)
    poisoned = frozenset(f"RX1:{rows[n]['notification_id']}" for n in (5, 33))
    flaky = CountingSqs(ingest_stack.sqs, refused_groups=poisoned)
    ingest_stack.rewire(sqs=flaky, send_concurrency=DEFAULT_CONCURRENCY)
    ingest_stack.upload("RX1", "poisoned.csv", to_bytes(rows, "x.csv"))

    [failed] = ingest_stack.run()
    assert len(failed["batchItemFailures"]) == 1
    assert ingest_stack.reports("RX1", "poisoned.csv") == []

    flaky.down = False
    sqs_clock.advance(AN_HOUR)  # past the deduplication window: only the saved progress prevents repeats
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    order = group_order(ingest_stack)
    sent = Counter(types for group_types in order.values() for types in group_types)
    assert sent == Counter(row["notification_type"] for row in rows)  # each record once, none lost
    for group in poisoned:
        assert order[group][:2] == ["NEW", "AMEND"]  # held back behind the refused NEW, then in order
    outcome = ingest_stack.report("RX1", "poisoned.csv")["outcome"]
    assert outcome["forwarded"] == len(rows)
