"""Every AWS request the ingest and notify functions make for one file, counted on moto (in-process).

moto's SQS rescans a queue on every send, so files are kept small (1,000 and 2,000 rows by default); the
line through the two totals gives the fixed part and the part per record, from which larger files follow.

The functions' handlers run as Lambda would run them (an S3 notification through SQS to ingest, the
file-processed event to notify); every API call a client of theirs makes is counted at botocore's
``before-call`` event. What the event source mapping itself does (receive, delete) is Lambda's work, not
the function's, and is not counted. moto's speed says nothing about AWS's, so only counts are taken here.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
from birthnotify.domain.registry import load_registry
from birthnotify.shared.names import (
    HELD_AT_ATTRIBUTE,
    HELD_INDEX_PROJECTION,
    HELD_OPEN_ATTRIBUTE,
    HELD_OPEN_INDEX,
    authority_queue_name,
)
from birthnotify.shared.settings import Env
from birthnotify_cli.lambda_shim import LambdaContext, load_handler_module, sqs_event
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "config" / "registry.toml"
REGION = "eu-west-2"
PREFIX = "bench"
SENDER = "birth-notifications@example.nhs.uk"


class RequestCounter:
    """Counts API calls by ``service.Operation`` while ``counting`` is on."""

    def __init__(self) -> None:
        self.counting = False
        self.calls: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        if self.counting:
            _, service, operation = event_name.split(".", 2)
            self.calls[f"{service}.{operation}"] += 1


def count_requests(files: list[Path]) -> list[Counter[str]]:
    """For each file in turn (uploaded by trust RX1 on a fresh moto), the requests its ingest and notify
    made, by operation."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",  # noqa: S105
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_METRICS_NAMESPACE": "BirthNotificationsBench",
            "POWERTOOLS_SERVICE_NAME": "birthnotify-bench",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    results = []
    for path in files:
        with mock_aws():
            boto3.setup_default_session()
            counter = RequestCounter()
            boto3.DEFAULT_SESSION.events.register("before-call", counter)  # type: ignore[union-attr]
            setup = _resources()
            ingest = load_handler_module(ROOT / "functions" / "ingest" / "handler.py", "bench_ingest_handler")
            notify = load_handler_module(ROOT / "functions" / "notify" / "handler.py", "bench_notify_handler")
            s3, sqs = setup["s3"], setup["sqs"]
            s3.put_object(Bucket="bench-inbound", Key=f"inbound/RX1/{path.name}", Body=path.read_bytes())
            for function, queue in ((ingest, "ingest"), (notify, "events")):
                messages = sqs.receive_message(QueueUrl=setup[queue], MaxNumberOfMessages=10, AttributeNames=["All"])[
                    "Messages"
                ]
                messages = [m for m in messages if "s3:TestEvent" not in m["Body"]] or messages
                counter.counting = True
                response = function.handler(
                    sqs_event(messages, setup[queue + "_arn"]),
                    LambdaContext(function_name=queue, timeout_seconds=24 * 3600),
                )
                counter.counting = False
                assert not response["batchItemFailures"], response
            results.append(counter.calls)
    return results


def _resources() -> dict[str, Any]:
    s3, sqs, dynamodb, ses = (boto3.client(name) for name in ("s3", "sqs", "dynamodb", "sesv2"))
    for bucket in ("bench-inbound", "bench-reports"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    urls: dict[str, Any] = {"s3": s3, "sqs": sqs}
    for name in ("ingest", "events"):
        urls[name] = sqs.create_queue(QueueName=f"bench-{name}")["QueueUrl"]
        urls[name + "_arn"] = sqs.get_queue_attributes(QueueUrl=urls[name], AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    s3.put_bucket_notification_configuration(
        Bucket="bench-inbound",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": urls["ingest_arn"], "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    for authority in load_registry(REGISTRY).authorities:
        sqs.create_queue(QueueName=authority_queue_name(PREFIX, authority.gss_code), Attributes={"FifoQueue": "true"})
    dynamodb.create_table(
        TableName="bench-state",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(  # the held store, as infra/constructs/held.py makes it
        TableName="bench-held",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("id", HELD_OPEN_ATTRIBUTE, HELD_AT_ATTRIBUTE)
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
    s3.create_bucket(Bucket="bench-ledger", CreateBucketConfiguration={"LocationConstraint": REGION})
    secret = boto3.client("secretsmanager").create_secret(Name="bench-ledger-key", SecretString="k" * 64)["ARN"]
    ses.create_email_identity(EmailIdentity=SENDER)
    ses.create_configuration_set(ConfigurationSetName="bench-email")
    os.environ.update(
        {
            Env.STAGE: "dev",
            Env.REGISTRY_PATH: str(REGISTRY),
            Env.INBOUND_BUCKET: "bench-inbound",
            Env.REPORTS_BUCKET: "bench-reports",
            Env.AUTHORITY_QUEUE_PREFIX: PREFIX,
            Env.HELD_TABLE: "bench-held",
            Env.FILE_EVENTS_QUEUE_URL: urls["events"],
            Env.STATE_TABLE: "bench-state",
            Env.EMAIL_TRANSPORT: "ses",
            Env.EMAIL_SENDER: SENDER,
            Env.SES_CONFIGURATION_SET: "bench-email",
            Env.CONSUMER_GUIDE_URL: "https://example.nhs.uk/guide",
            Env.LEDGER_BUCKET: "bench-ledger",
            Env.LEDGER_KEY_SECRET_ID: secret,
        }
    )
    return urls


def per_file_figures(small: Path, small_rows: int, large: Path, large_rows: int) -> dict[str, Any]:
    """Requests for two files: per 1,000 records each, and the fixed part (the intercept of the line
    through the two totals)."""
    counts_small, counts_large = count_requests([small, large])
    total_small, total_large = sum(counts_small.values()), sum(counts_large.values())
    per_row = (total_large - total_small) / (large_rows - small_rows)
    return {
        "small": total_small,
        "large": total_large,
        "per_1000_small": total_small / small_rows * 1000,
        "per_1000_large": total_large / large_rows * 1000,
        "fixed": total_small - per_row * small_rows,
        "per_record": per_row,
        "breakdown_small": counts_small,
    }
