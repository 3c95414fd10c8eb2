"""The held store: a DynamoDB table (encrypted with the held key) with one item per held record, kept until a
person releases or discards it, whatever SQS's 14-day retention.

Items:

- ``held#<trust>#<sha256>#<row>``: one held record. ``body`` is the record itself (messages.HeldMessage);
  the other attributes name it without personal data. While it is open, ``open`` (its held reason) and
  ``held_at`` key it in the sparse ``open`` index, which projects no personal data: listing, counting and
  the age alarm's check read that index only. Releasing or discarding it removes ``body`` and ``open``.
- ``action#<id>`` and ``action#<id>#<n>``: an action and the records it touched (in parts of at most
  ``ACTION_PART_RECORDS``, to stay far below DynamoDB's 400 KB item limit).

An open record never expires: it stays until a person releases or discards it. The record and the action
that closed it then expire (TTL ``expiration``) the stage's held retention after that action.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from birthnotify.application.ports import HeldDetail, HeldEntry, HeldKey, HeldSummary, HeldWriterStats
from birthnotify.domain.held import OPEN_STATUSES, ActionRecord, HeldAction, HeldStatus
from birthnotify.domain.messages import HeldMessage, HeldReason
from birthnotify.domain.record import NotificationType
from birthnotify.shared.clock import utc_now
from birthnotify.shared.names import (
    HELD_AT_ATTRIBUTE,
    HELD_OPEN_ATTRIBUTE,
    HELD_OPEN_INDEX,
    HELD_RETENTION_ATTRIBUTE,
    HELD_TTL_ATTRIBUTE,
)
from birthnotify.shared.settings import DEFAULT_HELD_RETENTION_DAYS

OPEN_INDEX, OPEN_ATTRIBUTE, TTL_ATTRIBUTE = HELD_OPEN_INDEX, HELD_OPEN_ATTRIBUTE, HELD_TTL_ATTRIBUTE
MAX_BATCH_WRITE = 25
MAX_BATCH_GET = 100
ACTION_PART_RECORDS = 500
NOT_RETRYABLE = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ValidationException",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
    }
)


class HeldStoreFailed(Exception):
    """The store kept refusing some records after every retry; nothing it did not accept was counted."""

    def __init__(self, table: str, unstored: int, codes: list[str]) -> None:
        super().__init__(f"the held store {table} did not accept {unstored} record(s): {sorted(set(codes))}")
        self.unstored = unstored


def record_id(key: HeldKey) -> str:
    return f"held#{key.trust_ods_code}#{key.sha256}#{key.row}"


def _expires(action: HeldAction) -> str:
    """The TTL of a record closed by ``action``: the action's own, so the record and its audit go together."""
    expires_at = action.expires_at or action.at + timedelta(days=DEFAULT_HELD_RETENTION_DAYS)
    return str(int(expires_at.timestamp()))


def held_item(entry: HeldEntry, held_at: datetime, retention_days: int) -> dict[str, Any]:
    """The DynamoDB item of a newly held record."""
    item: dict[str, Any] = {
        "id": {"S": record_id(entry.key)},
        "kind": {"S": "record"},
        "trust": {"S": entry.key.trust_ods_code},
        "sha256": {"S": entry.key.sha256},
        "row": {"N": str(entry.key.row)},
        "file_key": {"S": entry.file_key},
        "report_key": {"S": entry.report_key},
        "reason": {"S": entry.reason.value},
        OPEN_ATTRIBUTE: {"S": entry.reason.value},
        "notification_id": {"S": entry.notification_id},
        "notification_type": {"S": entry.notification_type.value},
        "body": {"S": entry.body},
        "status": {"S": HeldStatus.HELD.value},
        HELD_AT_ATTRIBUTE: {"S": held_at.astimezone(UTC).isoformat()},
        HELD_RETENTION_ATTRIBUTE: {"N": str(retention_days)},
    }
    if entry.authority_gss_code:
        item["authority_gss_code"] = {"S": entry.authority_gss_code}
    if entry.authority_name:
        item["authority_name"] = {"S": entry.authority_name}
    return item


class DynamoHeldWriter:
    """Stores held records 25 to a BatchWriteItem request (retrying only what DynamoDB left unprocessed) or,
    on a retried run, one conditional PutItem each, so that a record an earlier attempt stored (and a
    reviewer may have released since) is never overwritten: finding it there counts it as stored."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        on_stored: Callable[[Any], None],
        *,
        conditional: bool,
        retention_days: int,
        clock: Callable[[], datetime] = utc_now,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._on_stored = on_stored
        self._conditional = conditional
        self._retention_days = retention_days
        self._clock = clock
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._sleep = sleep
        self._pending: list[tuple[dict[str, Any], Any]] = []
        self.stats = HeldWriterStats()

    def add(self, entry: HeldEntry, tag: Any) -> None:
        item = held_item(entry, self._clock(), self._retention_days)
        if self._conditional:
            self._put_once(item, tag)
            return
        self._pending.append((item, tag))
        if len(self._pending) == MAX_BATCH_WRITE:
            self.flush()

    def flush(self) -> None:
        pending = {item["id"]["S"]: (item, tag) for item, tag in self._pending}
        self._pending = []
        codes: list[str] = []
        for attempt in range(self._max_attempts):
            if not pending:
                return
            if attempt:
                self.stats.retried_items += len(pending)
                self._sleep(min(self._base_delay * 2 ** (attempt - 1), 5.0))
            self.stats.requests += 1
            try:
                response = self._dynamodb.batch_write_item(
                    RequestItems={self._table: [{"PutRequest": {"Item": item}} for item, _ in pending.values()]}
                )
            except (ClientError, BotoCoreError) as exc:  # botocore has already retried throttling and 5xx
                codes = [_code(exc)]
                if codes[0] in NOT_RETRYABLE:
                    break
                continue
            unprocessed = {
                request["PutRequest"]["Item"]["id"]["S"]
                for request in response.get("UnprocessedItems", {}).get(self._table, [])
            }
            for item_id in [i for i in pending if i not in unprocessed]:
                _, tag = pending.pop(item_id)
                self.stats.stored += 1
                self._on_stored(tag)
            codes = ["UnprocessedItems"]
        if pending:
            raise HeldStoreFailed(self._table, len(pending), codes)

    def _put_once(self, item: dict[str, Any], tag: Any) -> None:
        codes: list[str] = []
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(min(self._base_delay * 2 ** (attempt - 1), 5.0))
            self.stats.requests += 1
            try:
                self._dynamodb.put_item(
                    TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(id)"
                )
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    codes = [_code(exc)]
                    if codes[0] in NOT_RETRYABLE:
                        break
                    continue
            except BotoCoreError as exc:
                codes = [_code(exc)]
                continue
            # Stored now, or by the earlier attempt: either way it is held (and perhaps acted on since).
            self.stats.stored += 1
            self._on_stored(tag)
            return
        raise HeldStoreFailed(self._table, 1, codes)


def _code(exc: Exception) -> str:
    return str(exc.response["Error"]["Code"]) if isinstance(exc, ClientError) else type(exc).__name__


def _summary(item: dict[str, Any]) -> HeldSummary:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    held_at = datetime.fromisoformat(item[HELD_AT_ATTRIBUTE]["S"])
    expiration = item.get(TTL_ATTRIBUTE)
    retention = item.get(HELD_RETENTION_ATTRIBUTE)
    reason = text(OPEN_ATTRIBUTE) or text("reason")
    assert reason is not None
    return HeldSummary(
        key=HeldKey(item["trust"]["S"], item["sha256"]["S"], int(item["row"]["N"])),
        file_key=item["file_key"]["S"],
        report_key=text("report_key") or "",
        reason=HeldReason(reason),
        authority_gss_code=text("authority_gss_code"),
        authority_name=text("authority_name"),
        notification_type=NotificationType(item["notification_type"]["S"]),
        held_at=held_at,
        expires_at=datetime.fromtimestamp(int(expiration["N"]), UTC) if expiration else None,
        retention_days=int(retention["N"]) if retention else None,
        status=HeldStatus(item["status"]["S"]),
    )


class DynamoHeldStore:
    """The held store for the reviewers' commands (and the age check, which reads the ``open`` index only)."""

    def __init__(self, dynamodb: Any, table: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._sleep = sleep

    @property
    def table(self) -> str:
        return self._table

    def writer(
        self,
        on_stored: Callable[[Any], None],
        conditional: bool,
        *,
        retention_days: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> DynamoHeldWriter:
        return DynamoHeldWriter(
            self._dynamodb,
            self._table,
            on_stored,
            conditional=conditional,
            retention_days=retention_days,
            clock=clock,
            sleep=self._sleep,
        )

    # -- reading -----------------------------------------------------------------------------------------

    def open_records(self, reasons: Iterable[HeldReason] | None = None) -> list[HeldSummary]:
        found: list[HeldSummary] = []
        for reason in reasons if reasons is not None else list(HeldReason):
            paginator = self._dynamodb.get_paginator("query")
            for page in paginator.paginate(
                TableName=self._table,
                IndexName=OPEN_INDEX,
                KeyConditionExpression="#open = :reason",
                ExpressionAttributeNames={"#open": OPEN_ATTRIBUTE},
                ExpressionAttributeValues={":reason": {"S": reason.value}},
            ):
                found += [_summary(item) for item in page.get("Items", [])]
        return sorted(found, key=lambda s: (s.held_at, s.key.trust_ods_code, s.key.sha256, s.key.row))

    def details(self, keys: Iterable[HeldKey]) -> list[HeldDetail]:
        ids = list(dict.fromkeys(record_id(key) for key in keys))
        details: list[HeldDetail] = []
        for start in range(0, len(ids), MAX_BATCH_GET):
            batch = [{"id": {"S": i}} for i in ids[start : start + MAX_BATCH_GET]]
            request: dict[str, Any] = {self._table: {"Keys": batch, "ConsistentRead": True}}
            for attempt in range(10):
                response = self._dynamodb.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self._table, []):
                    if HeldStatus(item["status"]["S"]) in OPEN_STATUSES and "body" in item:
                        details.append(HeldDetail(_summary(item), HeldMessage.model_validate_json(item["body"]["S"])))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                self._sleep(min(2.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError("DynamoDB left held keys unprocessed after 10 attempts")
        return sorted(details, key=lambda d: (d.summary.held_at, d.key.trust_ods_code, d.key.sha256, d.key.row))

    # -- changing state: each a conditional write, so two reviewers never act on one record twice ---------

    def _update(
        self, key: HeldKey, update: str, condition: str, values: dict[str, Any], names: dict[str, str] | None = None
    ) -> bool:
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"id": {"S": record_id(key)}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ExpressionAttributeNames={"#status": "status", **(names or {})},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def claim(self, key: HeldKey, action: HeldAction, stale_before: datetime) -> bool:
        return self._update(
            key,
            "SET #status = :releasing, action_id = :action, claimed_at = :now, actor = :actor",
            "#status = :held OR (#status = :releasing AND claimed_at < :stale)",
            {
                ":releasing": {"S": HeldStatus.RELEASING.value},
                ":held": {"S": HeldStatus.HELD.value},
                ":action": {"S": action.action_id},
                ":now": {"S": action.at.astimezone(UTC).isoformat()},
                ":actor": {"S": action.actor},
                ":stale": {"S": stale_before.astimezone(UTC).isoformat()},
            },
        )

    def unclaim(self, key: HeldKey, action: HeldAction) -> None:
        self._update(
            key,
            "SET #status = :held REMOVE action_id, claimed_at, actor",
            "#status = :releasing AND action_id = :action",
            {
                ":held": {"S": HeldStatus.HELD.value},
                ":releasing": {"S": HeldStatus.RELEASING.value},
                ":action": {"S": action.action_id},
            },
        )

    def mark_released(self, key: HeldKey, action: HeldAction, gss_code: str, agreement_id: str) -> bool:
        return self._update(
            key,
            "SET #status = :released, released_to = :gss, agreement_id = :agreement, acted_at = :now, "
            "#expiration = :expiration REMOVE body, #open, claimed_at",
            "#status = :releasing AND action_id = :action",
            {
                ":released": {"S": HeldStatus.RELEASED.value},
                ":releasing": {"S": HeldStatus.RELEASING.value},
                ":gss": {"S": gss_code},
                ":agreement": {"S": agreement_id},
                ":now": {"S": action.at.astimezone(UTC).isoformat()},
                ":action": {"S": action.action_id},
                ":expiration": {"N": _expires(action)},
            },
            {"#open": OPEN_ATTRIBUTE, "#expiration": TTL_ATTRIBUTE},
        )

    def discard(self, key: HeldKey, action: HeldAction) -> bool:
        return self._update(
            key,
            "SET #status = :discarded, action_id = :action, actor = :actor, acted_at = :now, "
            "#expiration = :expiration REMOVE body, #open",
            "#status = :held",
            {
                ":discarded": {"S": HeldStatus.DISCARDED.value},
                ":held": {"S": HeldStatus.HELD.value},
                ":action": {"S": action.action_id},
                ":actor": {"S": action.actor},
                ":now": {"S": action.at.astimezone(UTC).isoformat()},
                ":expiration": {"N": _expires(action)},
            },
            {"#open": OPEN_ATTRIBUTE, "#expiration": TTL_ATTRIBUTE},
        )

    # -- the action log ------------------------------------------------------------------------------------

    def save_action(self, action: HeldAction) -> None:
        head = action.model_dump(mode="json", exclude={"records"})
        parts = [
            action.records[i : i + ACTION_PART_RECORDS] for i in range(0, len(action.records), ACTION_PART_RECORDS)
        ]
        expiration = {TTL_ATTRIBUTE: {"N": str(int(action.expires_at.timestamp()))}} if action.expires_at else {}
        # The parts first: an action item never names a part that is not there.
        for number, records in enumerate(parts):
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    "id": {"S": f"action#{action.action_id}#{number}"},
                    "kind": {"S": "action-part"},
                    "records": {"S": json.dumps([r.model_dump(mode="json", exclude_none=True) for r in records])},
                    **expiration,
                },
            )
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "id": {"S": f"action#{action.action_id}"},
                "kind": {"S": "action"},
                "at": {"S": head["at"]},
                "action": {"S": json.dumps(head)},
                "parts": {"N": str(len(parts))},
                **expiration,
            },
        )

    def actions(self, since: datetime) -> list[HeldAction]:
        found = []
        paginator = self._dynamodb.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self._table,
            FilterExpression="kind = :action AND #at >= :since",
            ExpressionAttributeNames={"#at": "at"},
            ExpressionAttributeValues={":action": {"S": "action"}, ":since": {"S": since.astimezone(UTC).isoformat()}},
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                action = HeldAction.model_validate_json(item["action"]["S"])
                records: list[ActionRecord] = []
                for number in range(int(item["parts"]["N"])):
                    part = self._dynamodb.get_item(
                        TableName=self._table,
                        ConsistentRead=True,
                        Key={"id": {"S": f"action#{action.action_id}#{number}"}},
                    )
                    if "Item" in part:
                        records += [ActionRecord.model_validate(r) for r in json.loads(part["Item"]["records"]["S"])]
                found.append(action.model_copy(update={"records": records}))
        return sorted(found, key=lambda a: a.at)
