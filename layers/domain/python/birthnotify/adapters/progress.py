"""Checkpoints of a file in progress, so an interrupted run resumes without losing or repeating records.

A checkpoint says which rows are settled; when a run gives up between checkpoints (SQS refusing, a
DynamoDB error, the function's time running out), it also records which later rows SQS had accepted.
A retry can come long after SQS's 5-minute deduplication window, so it must know, not hope.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from birthnotify.application.ports import Progress

CHECKPOINT_TTL_SECONDS = 35 * 24 * 3600
SAVE_ATTEMPTS = 4
"""A checkpoint write is tried this often (botocore retries each attempt too) before the run gives up."""


def encode_rows(rows: Iterable[int]) -> str:
    """``{1, 2, 3, 7, 9, 10}`` -> ``"1-3,7,9-10"``: compact for the consecutive runs a batch produces."""
    parts: list[str] = []
    ordered = sorted(rows)
    index = 0
    while index < len(ordered):
        start = end = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == end + 1:
            index += 1
            end = ordered[index]
        parts.append(str(start) if start == end else f"{start}-{end}")
        index += 1
    return ",".join(parts)


def decode_rows(text: str) -> frozenset[int]:
    rows: set[int] = set()
    for part in filter(None, text.split(",")):
        start, _, end = part.partition("-")
        rows.update(range(int(start), int(end or start) + 1))
    return frozenset(rows)


class DynamoProgressStore:
    """One DynamoDB item per file content (``progress#<trust>#<sha256>``) in the state table."""

    def __init__(self, dynamodb: Any, table_name: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._dynamodb = dynamodb  # the low-level client: the same one Powertools idempotency is given
        self._table_name = table_name
        self._sleep = sleep

    @staticmethod
    def _id(trust: str, sha256: str) -> str:
        return f"progress#{trust}#{sha256}"

    def begin(self, trust: str, sha256: str, fresh: Progress) -> Progress | None:
        """Write ``fresh`` as the file's first checkpoint unless one exists, which is then returned (None: this
        is the first attempt). One conditional write instead of a read and a write."""
        item = self._item(trust, sha256, fresh)
        try:
            self._put(
                item,
                ConditionExpression="attribute_not_exists(id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            # An attempt that wrote the item and then timed out finds it here too: a retry, from row 0.
            return self._progress(old) if isinstance(old, dict) and old else self.load(trust, sha256)
        return None

    def load(self, trust: str, sha256: str) -> Progress | None:
        item = self._dynamodb.get_item(
            TableName=self._table_name, Key={"id": {"S": self._id(trust, sha256)}}, ConsistentRead=True
        ).get("Item")
        return self._progress(item) if item else None

    def save(self, trust: str, sha256: str, progress: Progress) -> None:
        """Write the checkpoint, trying again on a failure: a lost checkpoint means records sent twice."""
        self._put(self._item(trust, sha256, progress))

    def _item(self, trust: str, sha256: str, progress: Progress) -> dict[str, Any]:
        item = {
            "id": {"S": self._id(trust, sha256)},
            "rows_done": {"N": str(progress.rows_done)},
            "processing_day": {"S": progress.processing_day.isoformat()},
            "expiration": {"N": str(int(time.time()) + CHECKPOINT_TTL_SECONDS)},
        }
        if progress.accepted_rows:
            item["accepted_rows"] = {"S": encode_rows(progress.accepted_rows)}
        return item

    @staticmethod
    def _progress(item: dict[str, Any]) -> Progress:
        return Progress(
            int(item["rows_done"]["N"]),
            date.fromisoformat(item["processing_day"]["S"]),
            decode_rows(item.get("accepted_rows", {"S": ""})["S"]),
        )

    def _put(self, item: dict[str, Any], **condition: str) -> None:
        for attempt in range(SAVE_ATTEMPTS):
            try:
                self._dynamodb.put_item(TableName=self._table_name, Item=item, **condition)
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    raise  # an answer, not a failure
                if attempt == SAVE_ATTEMPTS - 1:
                    raise
            except Exception:
                if attempt == SAVE_ATTEMPTS - 1:
                    raise
            self._sleep(0.2 * 2**attempt)
