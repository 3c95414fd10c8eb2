"""Digest counts per authority and day, accumulated in the state table, each event counted once.

A day's item goes through three states: open (events are counted into it), closed (the scheduled run has
taken its counts: nothing more is added) and sent. Closing before sending means no count can arrive
between reading a day and marking it sent; an event that arrives for a day already closed (a late or
retried event) is counted into the next open day instead, so it is in some digest, once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from botocore.exceptions import ClientError

from birthnotify.application.ports import DigestDay

DIGEST_TTL_SECONDS = 35 * 24 * 3600
MAX_ROLL_FORWARD_DAYS = 60
"""An event is counted in the first open day from its own; more than this many closed days means a bug."""
_BATCH_GET_LIMIT = 100


def digest_day(item: dict[str, Any]) -> DigestDay:
    """A DynamoDB item as a DigestDay."""
    _, gss_code, day = item["id"]["S"].split("#")

    def number(name: str) -> int:
        return int(item.get(name, {"N": "0"})["N"])

    return DigestDay(
        gss_code=gss_code,
        day=date.fromisoformat(day),
        new=number("new"),
        amend=number("amend"),
        cancel=number("cancel"),
        files=number("files"),
        trusts=sorted(item.get("trusts", {"SS": []})["SS"]),
        agreements=sorted(item.get("agreements", {"SS": []})["SS"]),
        closed=item.get("closed", {"BOOL": False})["BOOL"],
        sent=item.get("sent", {"BOOL": False})["BOOL"],
    )


class DynamoDigestStore:
    """One item per authority and day: ``digest#<gss>#<YYYY-MM-DD>``."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    @staticmethod
    def _key(gss_code: str, day: date) -> dict[str, Any]:
        return {"id": {"S": f"digest#{gss_code}#{day.isoformat()}"}}

    def add(
        self, gss_code: str, day: date, event_id: str, trust: str, agreement_id: str, new: int, amend: int, cancel: int
    ) -> date | None:
        """Count a file's records in the first day from ``day`` that is still open; returns that day, or
        None when this event was already counted (a retry)."""
        period = day
        for _ in range(MAX_ROLL_FORWARD_DAYS):
            try:
                self._dynamodb.update_item(
                    TableName=self._table,
                    Key=self._key(gss_code, period),
                    UpdateExpression="ADD #new :new, amend :amend, #cancel :cancel, files :one, event_ids :event, "
                    "trusts :trust, agreements :agreement "
                    "SET expiration = if_not_exists(expiration, :ttl)",
                    ConditionExpression="attribute_not_exists(closed) AND "
                    "(attribute_not_exists(event_ids) OR NOT contains(event_ids, :event_id))",
                    ExpressionAttributeNames={"#new": "new", "#cancel": "cancel"},
                    ExpressionAttributeValues={
                        ":new": {"N": str(new)},
                        ":amend": {"N": str(amend)},
                        ":cancel": {"N": str(cancel)},
                        ":one": {"N": "1"},
                        ":event": {"SS": [event_id]},
                        ":event_id": {"S": event_id},
                        ":trust": {"SS": [trust]},
                        ":agreement": {"SS": [agreement_id]},
                        ":ttl": {"N": str(int(time.time()) + DIGEST_TTL_SECONDS)},
                    },
                )
                return period
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            item = self._dynamodb.get_item(
                TableName=self._table, Key=self._key(gss_code, period), ConsistentRead=True
            ).get("Item", {})
            if event_id in item.get("event_ids", {"SS": []})["SS"]:
                return None
            period += timedelta(days=1)  # closed before this event came: count it in the next day
        raise RuntimeError(f"no open digest day for {gss_code} within {MAX_ROLL_FORWARD_DAYS} days of {day}")

    def unsent(self, gss_codes: Iterable[str], days: Iterable[date]) -> list[DigestDay]:
        """Every digest of these authorities and days that has counts and was not sent, oldest first."""
        keys = [self._key(gss, day) for gss in gss_codes for day in days]
        found: list[DigestDay] = []
        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self._table: {"Keys": keys[start : start + _BATCH_GET_LIMIT], "ConsistentRead": True}
            }
            for attempt in range(10):
                response = self._dynamodb.batch_get_item(RequestItems=request)
                found += [digest_day(item) for item in response["Responses"].get(self._table, [])]
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(2.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError("DynamoDB left digest keys unprocessed after 10 attempts")
        return sorted((d for d in found if not d.sent), key=lambda d: (d.day, d.gss_code))

    def close(self, gss_code: str, day: date) -> DigestDay:
        """Stop counting into a day; returns its final counts."""
        response = self._dynamodb.update_item(
            TableName=self._table,
            Key=self._key(gss_code, day),
            UpdateExpression="SET closed = :true",
            ConditionExpression="attribute_exists(id)",
            ExpressionAttributeValues={":true": {"BOOL": True}},
            ReturnValues="ALL_NEW",
        )
        return digest_day(response["Attributes"])

    def mark_sent(self, gss_code: str, day: date) -> None:
        self._dynamodb.update_item(
            TableName=self._table,
            Key=self._key(gss_code, day),
            UpdateExpression="SET sent = :true",
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )


SENT_MARK_TTL_SECONDS = 2 * 366 * 24 * 3600
"""A warning's mark outlives any threshold window (the longest is 60 days) many times over."""


class DynamoSentMarks:
    """One item per warning sent: ``sent#<key>``."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    def was_sent(self, key: str) -> bool:
        item = self._dynamodb.get_item(
            TableName=self._table, Key={"id": {"S": f"sent#{key}"}}, ConsistentRead=True
        ).get("Item")
        return item is not None

    def mark_sent(self, key: str) -> None:
        self._dynamodb.put_item(
            TableName=self._table,
            Item={"id": {"S": f"sent#{key}"}, "expiration": {"N": str(int(time.time()) + SENT_MARK_TTL_SECONDS)}},
        )
