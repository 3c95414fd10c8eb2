"""Checkpoints of a file in progress, so an interrupted run resumes without losing or repeating records."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any

CHECKPOINT_TTL_SECONDS = 35 * 24 * 3600


@dataclass(frozen=True)
class Progress:
    rows_done: int
    """Every row up to this one was sent or counted; the next run starts after it."""
    processing_day: date
    """The day agreements were judged on, kept so a resumed run decides exactly as the first did."""


class ProgressStore:
    """One DynamoDB item per file content (``progress#<trust>#<sha256>``) in the state table."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb  # the low-level client: the same one Powertools idempotency is given
        self._table_name = table_name

    @staticmethod
    def _id(trust: str, sha256: str) -> str:
        return f"progress#{trust}#{sha256}"

    def load(self, trust: str, sha256: str) -> Progress | None:
        item = self._dynamodb.get_item(TableName=self._table_name, Key={"id": {"S": self._id(trust, sha256)}},
                                       ConsistentRead=True).get("Item")
        if not item:
            return None
        return Progress(int(item["rows_done"]["N"]), date.fromisoformat(item["processing_day"]["S"]))

    def save(self, trust: str, sha256: str, progress: Progress) -> None:
        self._dynamodb.put_item(TableName=self._table_name, Item={
            "id": {"S": self._id(trust, sha256)},
            "rows_done": {"N": str(progress.rows_done)},
            "processing_day": {"S": progress.processing_day.isoformat()},
            "expiration": {"N": str(int(time.time()) + CHECKPOINT_TTL_SECONDS)},
        })
