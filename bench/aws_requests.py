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
    SES_TEMPLATE_PARTS,
    authority_queue_name,
)
from birthnotify.shared.settings import Env
from birthnotify_cli.lambda_shim import LambdaContext, load_handler_module, sqs_event
from birthnotify_cli.moto_tables import create_held_table
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "config" / "registry.toml"
REGION = "eu-west-2"
PREFIX = "bench"
TRUST, WARM_UP_TRUST = "RX1", "RX2"
SENDER = "birth-notifications@example.nhs.uk"


class RequestCounter:
    """Counts API calls by ``service.Operation``, separately for each function, while ``function`` is set."""

    def __init__(self) -> None:
        self.function: str | None = None
        self.calls: dict[str, Counter[str]] = {}

    def __call__(self, event_name: str, **_: Any) -> None:
        if self.function is not None:
            _, service, operation = event_name.split(".", 2)
            self.calls.setdefault(self.function, Counter())[f"{service}.{operation}"] += 1


FileCalls = dict[str, Counter[str]]
"""One file's requests: by function (``ingest``, ``notify``), then by ``service.Operation``."""


def total(calls: FileCalls) -> Counter[str]:
    """Every request of a file, by operation, whichever function made it."""
    return sum(calls.values(), Counter())


def count_requests(files: list[tuple[str, Path]]) -> list[FileCalls]:
    """Upload ``files`` (trust ODS code, file) one after another on a fresh moto, to the same two functions
    (one container each, as Lambda reuses one); for each file, the requests its ingest and notify made."""
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
    results: list[FileCalls] = []
    with mock_aws():
        boto3.setup_default_session()
        counter = RequestCounter()
        boto3.DEFAULT_SESSION.events.register("before-call", counter)  # type: ignore[union-attr]
        setup = _resources()
        # A fresh import is a fresh container: clients, settings and caches start empty.
        ingest = load_handler_module(ROOT / "functions" / "ingest" / "handler.py", "bench_ingest_handler")
        notify = load_handler_module(ROOT / "functions" / "notify" / "handler.py", "bench_notify_handler")
        s3, sqs = setup["s3"], setup["sqs"]
        for trust, path in files:
            s3.put_object(Bucket="bench-inbound", Key=f"inbound/{trust}/{path.name}", Body=path.read_bytes())
            for function, queue in ((ingest, "ingest"), (notify, "events")):
                messages = sqs.receive_message(QueueUrl=setup[queue], MaxNumberOfMessages=10, AttributeNames=["All"])[
                    "Messages"
                ]
                messages = [m for m in messages if "s3:TestEvent" not in m["Body"]] or messages
                counter.function = queue if queue == "ingest" else "notify"
                response = function.handler(
                    sqs_event(messages, setup[queue + "_arn"]),
                    LambdaContext(function_name=queue, timeout_seconds=24 * 3600),
                )
                counter.function = None
                assert not response["batchItemFailures"], response
                sqs.delete_message_batch(
                    QueueUrl=setup[queue],
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                )
            results.append(counter.calls)
            counter.calls = {}
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
    create_held_table(dynamodb, "bench-held")  # the held store, as infra/constructs/held.py makes it
    s3.create_bucket(Bucket="bench-ledger", CreateBucketConfiguration={"LocationConstraint": REGION})
    secret = boto3.client("secretsmanager").create_secret(Name="bench-ledger-key", SecretString="k" * 64)["ARN"]
    ses.create_email_identity(EmailIdentity=SENDER)
    ses.create_configuration_set(ConfigurationSetName="bench-email")
    boto3.client("ses").create_template(Template={"TemplateName": "bench-email", **SES_TEMPLATE_PARTS})
    os.environ.update(
        {
            Env.STAGE: "dev",
            Env.REGISTRY_PATH: str(REGISTRY),
            Env.INBOUND_BUCKET: "bench-inbound",
            Env.REPORTS_BUCKET: "bench-reports",
            Env.AUTHORITY_QUEUE_PREFIX: PREFIX,
            Env.QUEUE_URL_BASE: urls["events"].rsplit("/", 1)[0] + "/",
            Env.HELD_TABLE: "bench-held",
            Env.FILE_EVENTS_QUEUE_URL: urls["events"],
            Env.STATE_TABLE: "bench-state",
            Env.EMAIL_TRANSPORT: "ses",
            Env.EMAIL_SENDER: SENDER,
            Env.SES_CONFIGURATION_SET: "bench-email",
            Env.SES_TEMPLATE: "bench-email",
            Env.CONSUMER_GUIDE_URL: "https://example.nhs.uk/guide",
            Env.LEDGER_BUCKET: "bench-ledger",
            Env.LEDGER_KEY_SECRET_ID: secret,
        }
    )
    return urls


def per_file_figures(small: Path, small_rows: int, large: Path, large_rows: int, warm_up: Path) -> dict[str, Any]:
    """Requests for two files in warm containers: per 1,000 records each, and the fixed part a file costs
    (the intercept of the line through the two totals); and, apart, what a cold container adds once.

    Two moto accounts of the same small file are compared: one in a cold container (its first file), one in
    a warm container (after ``warm_up``, another file). The difference, by operation, is what a container
    asks for once (secrets, lookups it caches); every call is counted in one figure or the other."""
    (cold_small,) = count_requests([(TRUST, small)])
    # The warm-up file comes from another trust: it leaves TRUST's destination index as the cold run found it.
    _, warm_small, warm_large = count_requests([(WARM_UP_TRUST, warm_up), (TRUST, small), (TRUST, large)])
    total_small, total_large = sum(total(warm_small).values()), sum(total(warm_large).values())
    per_row = (total_large - total_small) / (large_rows - small_rows)
    container = total(cold_small)
    container.subtract(total(warm_small))
    return {
        "small": total_small,
        "large": total_large,
        "per_1000_small": total_small / small_rows * 1000,
        "per_1000_large": total_large / large_rows * 1000,
        "fixed": total_small - per_row * small_rows,
        "per_record": per_row,
        "breakdown_small": warm_small,
        "cold_small": sum(total(cold_small).values()),
        "container": Counter({name: count for name, count in container.items() if count}),
    }
