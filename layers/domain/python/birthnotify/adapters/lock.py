"""A lease in the state table that lets one run of a scheduled function work at a time.

The mesh function is started every minute; a run can last longer. Reserved concurrency of 1 would also
serialise runs, but it takes from the account's pool and fails outright in accounts on the default quota
(see NO_RESERVED_CONCURRENCY in infra), and a throttled schedule is retried by Lambda for hours. A lease
costs one conditional write per run: a run that finds it held ends at once. It expires on its own (a run
that crashed never holds it longer than the function can live) and its item is removed by the table's TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from birthnotify.shared.names import lease_item_id

LEASE_TTL_EXTRA_SECONDS = 3600
"""The item outlives its lease by this much before DynamoDB's TTL removes it (TTL deletion is lazy)."""


class DynamoRunLock:
    """The lease ``lock#<name>``: held by one owner until it releases it or ``until`` passes."""

    def __init__(self, dynamodb: Any, table_name: str, name: str, clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._key = {"id": {"S": lease_item_id(name)}}
        self._clock = clock

    def acquire(self, owner: str, seconds: int) -> bool:
        now = int(self._clock())
        try:
            self._dynamodb.put_item(
                TableName=self._table_name,
                Item={
                    **self._key,
                    "owner": {"S": owner},
                    "until": {"N": str(now + seconds)},
                    "expiration": {"N": str(now + seconds + LEASE_TTL_EXTRA_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(id) OR #until < :now",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release(self, owner: str) -> None:
        """Give the lease up, if this owner still holds it (an expired one may have been taken since)."""
        try:
            self._dynamodb.delete_item(
                TableName=self._table_name,
                Key=self._key,
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            pass
