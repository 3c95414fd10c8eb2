"""Daily digest counts per authority, accumulated in the state table, each event counted once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

DIGEST_TTL_SECONDS = 35 * 24 * 3600


@dataclass(frozen=True)
class DigestDay:
    gss_code: str
    day: date
    new: int
    amend: int
    cancel: int
    files: int
    trusts: list[str]
    sent: bool


class DigestStore:
    """One item per authority and day: ``digest#<gss>#<YYYY-MM-DD>``."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    @staticmethod
    def _key(gss_code: str, day: date) -> dict[str, Any]:
        return {"id": {"S": f"digest#{gss_code}#{day.isoformat()}"}}

    def add(self, gss_code: str, day: date, event_id: str, trust: str, new: int, amend: int, cancel: int) -> bool:
        """Count a file's records; False when this event was already counted (a retry)."""
        try:
            self._dynamodb.update_item(
                TableName=self._table, Key=self._key(gss_code, day),
                UpdateExpression="ADD #new :new, amend :amend, #cancel :cancel, files :one, event_ids :event, "
                                 "trusts :trust SET expiration = if_not_exists(expiration, :ttl)",
                ConditionExpression="attribute_not_exists(event_ids) OR NOT contains(event_ids, :event_id)",
                ExpressionAttributeNames={"#new": "new", "#cancel": "cancel"},
                ExpressionAttributeValues={
                    ":new": {"N": str(new)}, ":amend": {"N": str(amend)}, ":cancel": {"N": str(cancel)},
                    ":one": {"N": "1"}, ":event": {"SS": [event_id]}, ":event_id": {"S": event_id},
                    ":trust": {"SS": [trust]}, ":ttl": {"N": str(int(time.time()) + DIGEST_TTL_SECONDS)},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, gss_code: str, day: date) -> DigestDay | None:
        item = self._dynamodb.get_item(TableName=self._table, Key=self._key(gss_code, day),
                                       ConsistentRead=True).get("Item")
        if not item:
            return None
        return DigestDay(
            gss_code=gss_code, day=day, new=int(item.get("new", {"N": "0"})["N"]),
            amend=int(item.get("amend", {"N": "0"})["N"]), cancel=int(item.get("cancel", {"N": "0"})["N"]),
            files=int(item.get("files", {"N": "0"})["N"]), trusts=sorted(item.get("trusts", {"SS": []})["SS"]),
            sent=item.get("sent", {"BOOL": False})["BOOL"],
        )

    def mark_sent(self, gss_code: str, day: date) -> None:
        self._dynamodb.update_item(TableName=self._table, Key=self._key(gss_code, day),
                                   UpdateExpression="SET sent = :true",
                                   ExpressionAttributeValues={":true": {"BOOL": True}})
