"""DynamoDB tables made on moto as the stack makes them, for the tests and the bench (which run without the
local cloud's CloudFormation)."""

from __future__ import annotations

from typing import Any

from birthnotify.shared.names import HELD_AT_ATTRIBUTE, HELD_INDEX_PROJECTION, HELD_OPEN_ATTRIBUTE, HELD_OPEN_INDEX


def create_held_table(dynamodb: Any, name: str) -> None:
    """The held store's table as the stack makes it (infra/constructs/held.py): the sparse ``open`` index of
    open records, projecting no personal data. ``dynamodb`` is a low-level client."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": attribute, "AttributeType": "S"}
            for attribute in ("id", HELD_OPEN_ATTRIBUTE, HELD_AT_ATTRIBUTE)
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": HELD_OPEN_INDEX,
                "KeySchema": [
                    {"AttributeName": HELD_OPEN_ATTRIBUTE, "KeyType": "HASH"},
                    {"AttributeName": HELD_AT_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(HELD_INDEX_PROJECTION)},
            }
        ],
    )
