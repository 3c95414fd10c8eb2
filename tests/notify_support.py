"""Fixtures for driving the notify function against moto (SES) or the local fake of GOV.UK Notify."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from birthnotify.settings import Env
from birthnotify_cli.fake_notify import API_KEY, FakeNotify
from birthnotify_cli.lambda_shim import LambdaContext, invoke_with_sqs_batch, load_handler_module
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

ROOT = Path(__file__).resolve().parent.parent
SENDER = "birth-notifications@example.nhs.uk"
TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"


@dataclass
class SentEmail:
    to: list[str]
    subject: str
    text: str
    html: str

    @property
    def everything(self) -> str:
        return "\n".join([self.subject, self.text, self.html])


@dataclass
class NotifyStack:
    ingest: Any  # the IngestStack the events come from
    handler: Any
    events_queue_arn: str
    fake_notify: FakeNotify | None = None

    def run(self, bodies: list[str] | None = None) -> list[dict]:
        """Invoke notify on every waiting file-processed event (or on the given bodies); returns responses."""
        sqs, url = self.ingest.sqs, self.ingest.events_queue_url
        responses = []
        if bodies is not None:
            for body in bodies:
                sqs.send_message(QueueUrl=url, MessageBody=body)
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                              AttributeNames=["All"]).get("Messages", []):
            response = invoke_with_sqs_batch(self.handler.handler, messages, self.events_queue_arn,
                                             LambdaContext(function_name="notify"))
            responses.append(response)
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if failed:
                break
        return responses

    def schedule(self) -> dict:
        return self.handler.handler({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
                                    LambdaContext(function_name="notify"))

    def sent(self) -> list[SentEmail]:
        if self.fake_notify is not None:
            return [SentEmail([e["email_address"]], e["personalisation"]["subject"], e["personalisation"]["body"],
                              "") for e in self.fake_notify.emails]
        sent = []
        for message in ses_backends[DEFAULT_ACCOUNT_ID]["eu-west-2"].sent_messages:
            parsed = email.message_from_string(message.raw_data, policy=email.policy.default)
            sent.append(SentEmail(
                to=[parsed["To"]], subject=str(parsed["Subject"]),
                text=parsed.get_body(("plain",)).get_content(), html=parsed.get_body(("html",)).get_content(),
            ))
        return sent


def _notify_stack(ingest_stack, monkeypatch: pytest.MonkeyPatch, transport: str) -> NotifyStack:
    ses = boto3.client("sesv2")
    ses.create_email_identity(EmailIdentity=SENDER)
    ses.create_configuration_set(ConfigurationSetName="test-email", DeliveryOptions={"TlsPolicy": "REQUIRE"})
    arn = ingest_stack.sqs.get_queue_attributes(QueueUrl=ingest_stack.events_queue_url,
                                                AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    fake = None
    env = {Env.EMAIL_TRANSPORT: transport, Env.EMAIL_SENDER: SENDER, Env.SES_CONFIGURATION_SET: "test-email",
           Env.CONSUMER_GUIDE_URL: "https://example.nhs.uk/consumer-guide"}
    if transport == "notify":
        fake = FakeNotify().start()
        secret = boto3.client("secretsmanager").create_secret(Name="test-notify-key", SecretString=API_KEY)
        env |= {Env.NOTIFY_API_KEY_SECRET_ID: secret["ARN"], Env.NOTIFY_BASE_URL: fake.base_url,
                Env.NOTIFY_TEMPLATE_ID: TEMPLATE_ID}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    handler = load_handler_module(ROOT / "functions" / "notify" / "handler.py")
    return NotifyStack(ingest_stack, handler, arn, fake)


@pytest.fixture
def notify_stack(ingest_stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyStack]:
    yield _notify_stack(ingest_stack, monkeypatch, "ses")


@pytest.fixture
def notify_via_govuk_notify(ingest_stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyStack]:
    stack = _notify_stack(ingest_stack, monkeypatch, "notify")
    yield stack
    stack.fake_notify.stop()

