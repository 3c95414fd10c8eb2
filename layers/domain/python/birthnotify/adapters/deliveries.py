"""Which recipients a run of emails has mailed, in one state-table item per run (``delivered#<key>``).

Two ways to use a run, with the same guarantee: one invocation at a time holds it (the claim's owner and
lease), a recipient marked is never mailed again, and the marks are hashes, so the item holds no address.

* Bulk (SES SendBulkTemplatedEmail): ``claim_all`` takes the run and reads who is still to be mailed in one
  conditional write; the bulk request goes; ``close`` marks every recipient SES accepted and releases the run
  in one more write. Two writes an event, whatever the number of recipients. The cost: if the invocation dies,
  or DynamoDB fails, between SES accepting the bulk and that last write, every recipient of that bulk (up to
  50) is mailed again once the lease (the invocation's remaining time) has passed, where one recipient at a
  time risked one. The emails carry counts and references only, never personal data, so a repeat tells a
  recipient nothing new.
* One at a time (GOV.UK Notify, which has no bulk API): a recipient is claimed before it is mailed and marked
  once it was, the mark of one travelling in the same conditional write as the claim of the next: n
  recipients cost n + 1 writes, and a run that dies between a send and the next write mails that one
  recipient again after the lease, as Powertools' in-progress expiry would.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from botocore.exceptions import ClientError

from birthnotify.application.ports import DeliveryInProgress

DELIVERED_TTL_SECONDS = 35 * 24 * 3600
"""How long what was mailed is remembered: longer than SQS keeps an event (14 days) and its DLQ redrive."""


def mark_id(mark: str) -> str:
    """A recipient's mark as stored: a hash, so the item holds no address."""
    return hashlib.sha256(mark.encode()).hexdigest()[:32]


class DynamoDeliveryRun:
    """One run's claims and marks; ``close`` writes what is still pending and releases the run."""

    def __init__(
        self, dynamodb: Any, table_name: str, key: str, lease_seconds: float, clock: Callable[[], float]
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._key = {"id": {"S": f"delivered#{key}"}}
        self._owner = uuid.uuid4().hex
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._pending: set[str] = set()
        self._holding = False

    def claim(self, mark: str) -> bool:
        """True: this run may mail the recipient now; False: it was mailed before. Raises
        DeliveryInProgress while another invocation holds the run (its lease not yet over)."""
        taken, done = self._take(unless_marked=mark)
        if taken:
            return True
        if mark_id(mark) in done:
            return False
        self._give_way()

    def claim_all(self, marks: Sequence[str]) -> list[str]:
        """Take the run for a bulk send in one conditional write; returns the marks not yet mailed. Raises
        DeliveryInProgress while another invocation holds the run and some recipient is still to be mailed."""
        taken, done = self._take()
        if not taken and not all(mark_id(mark) in done for mark in marks):
            self._give_way()
        return [mark for mark in marks if mark_id(mark) not in done]  # when not taken: everyone was mailed

    def _take(self, unless_marked: str | None = None) -> tuple[bool, set[str]]:
        """One conditional write that takes the run (owner and lease), writing the marks pending with it; with
        ``unless_marked``, only while that recipient is not marked. Returns whether it was taken, and the marks
        of the item as the write left it, or as it was when it refused the write."""
        now = self._clock()
        values: dict[str, Any] = {
            ":me": {"S": self._owner},
            ":now": {"N": str(int(now))},
            ":until": {"N": str(int(now + self._lease_seconds) + 1)},
            ":expiration": {"N": str(int(now) + DELIVERED_TTL_SECONDS)},
        }
        update = "SET #owner = :me, #until = :until, #expiration = :expiration"
        condition = "attribute_not_exists(#owner) OR #owner = :me OR #until < :now"
        names = {"#owner": "owner", "#until": "lease_until", "#expiration": "expiration"}
        if unless_marked is not None:
            values[":mark"] = {"S": mark_id(unless_marked)}
            condition = f"(attribute_not_exists(#done) OR NOT contains(#done, :mark)) AND ({condition})"
            names["#done"] = "done"
        if self._pending:
            values[":pending"] = {"SS": sorted(self._pending)}
            update += " ADD #done :pending"
            names["#done"] = "done"
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            item = old if isinstance(old, dict) else self._read()
            return False, set(item.get("done", {}).get("SS", []))
        self._pending.clear()
        self._holding = True
        return True, set(response.get("Attributes", {}).get("done", {}).get("SS", []))

    def _give_way(self) -> NoReturn:
        self.close()  # what this run mailed is remembered before it gives way
        raise DeliveryInProgress("another invocation is mailing this run's recipients; retried later")

    def sent(self, mark: str) -> None:
        """The recipient was mailed: written with the next claim, by ``remember``, or by ``close``."""
        self._pending.add(mark_id(mark))

    def remember(self) -> None:
        """Write the marks pending so far, keeping the run (nothing pending, no request)."""
        if not self._pending:
            return
        self._dynamodb.update_item(
            TableName=self._table,
            Key=self._key,
            UpdateExpression="ADD #done :pending",
            ExpressionAttributeNames={"#done": "done"},
            ExpressionAttributeValues={":pending": {"SS": sorted(self._pending)}},
        )
        self._pending.clear()

    def close(self) -> None:
        """Write the marks still pending and release the run (nothing to write, no request)."""
        if not self._pending and not self._holding:
            return
        values: dict[str, Any] = {":expiration": {"N": str(int(self._clock()) + DELIVERED_TTL_SECONDS)}}
        update = "SET #expiration = :expiration"
        if self._pending:
            values[":pending"] = {"SS": sorted(self._pending)}
            update += " ADD #done :pending"
        names = {"#done": "done", "#expiration": "expiration"} if self._pending else {"#expiration": "expiration"}
        if self._holding:  # the lease ends with this invocation's part: the next may start at once
            update += " REMOVE #owner, #until"
            names |= {"#owner": "owner", "#until": "lease_until"}
        self._dynamodb.update_item(
            TableName=self._table,
            Key=self._key,
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        self._pending.clear()
        self._holding = False

    def _read(self) -> dict[str, Any]:
        response = self._dynamodb.get_item(TableName=self._table, Key=self._key, ConsistentRead=True)
        return dict(response.get("Item", {}))


class DynamoDeliveries:
    """Runs of deliveries in the state table."""

    def __init__(self, dynamodb: Any, table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._clock = clock

    def run(self, key: str, lease_seconds: float) -> DynamoDeliveryRun:
        return DynamoDeliveryRun(self._dynamodb, self._table, key, lease_seconds, self._clock)
