"""Fixtures for driving the ingest function against moto: the resources the stack would create, the
S3 -> SQS notification, and a poller that invokes the handler as Lambda's event source mapping does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from birthnotify.adapters.aws.ingest import ingest_ports
from birthnotify.adapters.held import DynamoHeldStore
from birthnotify.adapters.progress import DynamoProgressStore
from birthnotify.application.ports import HeldDetail
from birthnotify.domain.messages import AuthorityMessage, notifier_event
from birthnotify.domain.record import BirthNotification
from birthnotify.domain.registry import load_registry
from birthnotify.shared.names import (
    StageNames,
    authority_queue_name,
)
from birthnotify.shared.settings import Env
from birthnotify_cli import moto_fidelity
from birthnotify_cli.lambda_shim import LambdaContext, deliver_sqs_batch, load_handler_module
from birthnotify_cli.moto_fidelity import SqsClock
from birthnotify_cli.moto_tables import create_held_table
from birthnotify_cli.synthetic import SyntheticRows, load_postcodes_by_district, synthetic_nhs_number, to_bytes
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_PATH = ROOT / "config" / "registry.toml"
STAGE = StageNames("test")
"""The resources are named as the stack names a stage's, so the operators' commands find them by --stage test."""
QUEUE_PREFIX = STAGE.authority_queue_prefix
INBOUND, REPORTS, LEDGER = "test-inbound", "test-reports", "test-ledger"
LEDGER_SECRET = "test-ledger-key"  # noqa: S105 (a secret's name)
HELD_TABLE, STATE_TABLE = STAGE.held_table, STAGE.state_table
SQS_RETENTION_SECONDS = 14 * 24 * 3600
"""Every queue keeps a message 14 days, as the stack's do (moto's default is 4)."""


@dataclass
class IngestStack:
    """The moto resources and the handler, with helpers to upload as a trust and run the pipeline."""

    s3: Any
    sqs: Any
    dynamodb: Any
    handler: Any
    ingest_queue_url: str
    ingest_queue_arn: str
    held_table: str
    events_queue_url: str
    authority_queue_urls: dict[str, str]
    invocations: list[dict] = field(default_factory=list)

    def rewire(
        self, *, sqs: Any = None, progress_dynamodb: Any = None, held_dynamodb: Any = None, send_concurrency: int = 1
    ) -> None:
        """Rebuild the ingest function's adapters around substitute clients (to inject a fault); back-off
        waits are not slept. Batches are sent one at a time unless ``send_concurrency`` says otherwise, so a
        fault chosen by the order of calls (the third batch to Kent) falls on the same batch in every run."""
        service = self.handler.service()
        no_wait = lambda seconds: None  # noqa: E731
        ports = ingest_ports(
            service.settings,
            s3=self.s3,
            sqs=sqs or self.sqs,
            dynamodb=boto3.client("dynamodb"),
            secrets=boto3.client("secretsmanager"),
            sleep=no_wait,
            send_concurrency=send_concurrency,
        )
        if progress_dynamodb is not None:
            ports = replace(
                ports, progress=DynamoProgressStore(progress_dynamodb, service.settings.state_table, sleep=no_wait)
            )
        if held_dynamodb is not None:
            store = DynamoHeldStore(held_dynamodb, service.settings.held_table, sleep=no_wait)
            ports = replace(
                ports, held=lambda on_stored, conditional: store.writer(on_stored, conditional, retention_days=400)
            )
        service.ports = ports

    @property
    def held_store(self) -> DynamoHeldStore:
        return DynamoHeldStore(boto3.client("dynamodb"), self.held_table)

    def held(self) -> list[HeldDetail]:
        """Every open held record in the store, with its content, oldest first; each is held to the published
        model and is still a valid record."""
        store = self.held_store
        details = store.details(summary.key for summary in store.open_records())
        for detail in details:
            BirthNotification.model_validate(detail.message.record)
        return details

    def upload(self, trust: str, name: str, body: bytes) -> str:
        key = f"inbound/{trust}/{name}"
        self.s3.put_object(Bucket=INBOUND, Key=key, Body=body)
        return key

    def run(
        self,
        batch_size: int = 5,
        context: LambdaContext | None = None,
        max_polls: int = 20,
        visibility_timeout: int = 30,
    ) -> list[dict]:
        """Poll the ingest queue and invoke the handler until it is empty; returns each response.
        A failed message stays invisible for ``visibility_timeout`` seconds, as SQS would keep it."""
        responses = []
        for _ in range(max_polls):
            messages = self.sqs.receive_message(
                QueueUrl=self.ingest_queue_url,
                MaxNumberOfMessages=batch_size,
                AttributeNames=["All"],
                VisibilityTimeout=visibility_timeout,
            ).get("Messages", [])
            if not messages:
                break
            invoke = partial(self._invoke, context or LambdaContext(function_name="ingest"))
            delivery = deliver_sqs_batch(
                self.sqs,
                queue_url=self.ingest_queue_url,
                queue_arn=self.ingest_queue_arn,
                messages=messages,
                invoke=invoke,
            )
            responses.append(delivery.as_response())
        return responses

    def _invoke(self, context: LambdaContext, event: dict) -> Any:
        return self.handler.handler(event, context)

    def drain(self, queue_url: str) -> list[dict]:
        """Receive and delete every message on a queue; returns the parsed bodies in order. Each body is held
        to the published model of its queue."""
        bodies = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
                "Messages", []
            )
            if not messages:
                return bodies
            for message in messages:
                self._check_contract(queue_url, message["Body"])
                bodies.append(json.loads(message["Body"]) | {"_attributes": message.get("Attributes", {})})
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _check_contract(self, queue_url: str, body: str) -> None:
        if queue_url in self.authority_queue_urls.values():
            AuthorityMessage.model_validate_json(body)
        elif queue_url == self.events_queue_url:
            notifier_event(body)  # a file processed, a MESH message quarantined, or reviewers acting on held records

    def reports(self, trust: str, name: str) -> list[dict]:
        """Every report of uploads of this file name, oldest first; each is held to the reconciliation
        identity."""
        listed = self.s3.list_objects_v2(Bucket=REPORTS, Prefix=f"reports/{trust}/{name}/").get("Contents", [])
        reports = [
            self._checked(json.loads(self.s3.get_object(Bucket=REPORTS, Key=item["Key"])["Body"].read()))
            for item in listed
            if item["Key"].endswith(".json")
        ]
        return sorted(reports, key=lambda report: report["processed_at"])

    def report(self, trust: str, name: str) -> dict:
        """The report of the latest upload of this file name."""
        reports = self.reports(trust, name)
        assert reports, f"no report for reports/{trust}/{name}/"
        return reports[-1]

    @staticmethod
    def _checked(report: dict) -> dict:
        """Every report read in a test is held to the reconciliation identity."""
        outcome = report["outcome"]
        assert outcome["rows_in"] == outcome["forwarded"] + outcome["rejected"] + outcome["withheld"] + outcome["held"]
        assert outcome["forwarded"] == sum(a["new"] + a["amend"] + a["cancel"] for a in outcome["authorities"])
        assert outcome["held"] == sum(h["count"] for h in outcome["held_by_reason"])
        assert outcome["withheld"] == sum(outcome["withheld_by_reason"].values())
        assert len({error["row"] for error in report["errors"]}) == outcome["rejected"]
        return report

    def rejected_csv(self, trust: str, name: str) -> str:
        """The rejected-rows CSV of the latest upload of this file name."""
        key = self.report(trust, name)["rejected_rows_key"]
        return self.s3.get_object(Bucket=REPORTS, Key=key)["Body"].read().decode()


class RunsOutOfTime(LambdaContext):
    """A context whose remaining time falls below the stop margin after a number of checks."""

    def __init__(self, checks_before_timeout: int) -> None:
        super().__init__(function_name="ingest")
        self.checks_left = checks_before_timeout

    def get_remaining_time_in_millis(self) -> int:
        self.checks_left -= 1
        return 900_000 if self.checks_left >= 0 else 30_000


class CrashesAfter(LambdaContext):
    """A context whose time check fails after a number of checks: a run failing part-way, between checkpoints,
    for a reason other than SQS (while batches may be in flight)."""

    def __init__(self, checks: int) -> None:
        super().__init__(function_name="ingest")
        self.checks_left = checks

    def get_remaining_time_in_millis(self) -> int:
        self.checks_left -= 1
        if self.checks_left < 0:
            raise RuntimeError("the run fails here")
        return 900_000


@pytest.fixture
def sqs_clock() -> Iterator[SqsClock]:
    """SQS's clock, which a test moves forward (past visibility timeouts and the deduplication window)."""
    clock = SqsClock().install()
    yield clock
    clock.uninstall()


@pytest.fixture
def ingest_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[IngestStack]:
    with fresh_ingest_stack(monkeypatch) as stack:
        yield stack


@contextmanager
def fresh_ingest_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[IngestStack]:
    """A new moto world with the stack's resources (a test comparing two runs of one file makes two)."""
    undo = [moto_fidelity.s3_event_versions(), moto_fidelity.sqs_character_rule()]
    with mock_aws():
        s3 = boto3.client("s3")
        sqs = boto3.client("sqs")
        dynamodb = boto3.resource("dynamodb")
        for bucket in (INBOUND, REPORTS, LEDGER):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})  # as deployed
        ingest_url = sqs.create_queue(QueueName="test-ingest")["QueueUrl"]
        ingest_arn = sqs.get_queue_attributes(QueueUrl=ingest_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        s3.put_bucket_notification_configuration(
            Bucket=INBOUND,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": ingest_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "inbound/"}]}},
                    }
                ]
            },
        )
        retention = {"MessageRetentionPeriod": str(SQS_RETENTION_SECONDS)}
        events_url = sqs.create_queue(QueueName=STAGE.file_events_queue, Attributes=retention)["QueueUrl"]
        authority_urls = {
            authority.gss_code: sqs.create_queue(
                QueueName=authority_queue_name(QUEUE_PREFIX, authority.gss_code),
                Attributes={"FifoQueue": "true", **retention},
            )["QueueUrl"]
            for authority in load_registry(REGISTRY_PATH).authorities
        }
        boto3.client("secretsmanager").create_secret(
            Name=LEDGER_SECRET,
            SecretString=boto3.client("secretsmanager").get_random_password(PasswordLength=64, ExcludePunctuation=True)[
                "RandomPassword"
            ],
        )
        dynamodb.create_table(
            TableName=STATE_TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        create_held_table(boto3.client("dynamodb"), HELD_TABLE)
        for name, value in {
            Env.REGISTRY_PATH: str(REGISTRY_PATH),
            Env.INBOUND_BUCKET: INBOUND,
            Env.REPORTS_BUCKET: REPORTS,
            Env.AUTHORITY_QUEUE_PREFIX: QUEUE_PREFIX,
            Env.QUEUE_URL_BASE: events_url.rsplit("/", 1)[0] + "/",  # moto's, as the stack's tokens resolve
            Env.HELD_TABLE: HELD_TABLE,
            Env.FILE_EVENTS_QUEUE_URL: events_url,
            Env.STATE_TABLE: STATE_TABLE,
            Env.STAGE: STAGE.stage,
            Env.LEDGER_BUCKET: LEDGER,
            Env.LEDGER_KEY_SECRET_ID: LEDGER_SECRET,
            "BIRTHNOTIFY_LEDGER_BUCKET": LEDGER,
            "BIRTHNOTIFY_LEDGER_KEY_SECRET_ID": LEDGER_SECRET,  # the CLI's
        }.items():
            monkeypatch.setenv(name, value)
        handler = load_handler_module(ROOT / "functions" / "ingest" / "handler.py")
        stack = IngestStack(s3, sqs, dynamodb, handler, ingest_url, ingest_arn, HELD_TABLE, events_url, authority_urls)
        stack.drain(ingest_url)  # the s3:TestEvent moto sends when notifications are configured
        yield stack
    for step in undo:
        step()


@pytest.fixture
def rows_factory() -> Any:
    """Synthetic valid rows for a given upload day, in chosen councils."""
    postcodes = load_postcodes_by_district(ROOT / "config" / "postcodes.csv")

    def make(count: int, upload_day: date, districts: dict[str, float] | None = None, seed: int = 7) -> list[dict]:
        from birthnotify_cli.synthetic import Mix

        generator = SyntheticRows(
            postcodes, upload_day, seed=seed, mix=Mix(districts=districts or {}), held_districts=("E08000003",)
        )
        return list(generator.rows(count))

    return make


__all__ = ["IngestStack", "synthetic_nhs_number", "to_bytes"]
