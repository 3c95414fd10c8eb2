"""Fixtures for driving the notify function against moto (SES) or the local fake of GOV.UK Notify."""

from __future__ import annotations

import html
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from birthnotify.shared.names import SES_TEMPLATE_PARTS
from birthnotify.shared.settings import Env
from birthnotify_cli.fake_notify import API_KEY, FakeNotify
from birthnotify_cli.lambda_shim import LambdaContext, deliver_sqs_batch, load_handler_module
from birthnotify_cli.moto_mail import ses_sent_mail
from botocore.awsrequest import AWSResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber

ROOT = Path(__file__).resolve().parent.parent
SENDER = "birth-notifications@example.nhs.uk"
CONFIGURATION_SET = "test-email"
EMAIL_TEMPLATE = "test-email-template"
TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"
CONSUMER_GUIDE_URL = "https://example.nhs.uk/consumer-guide"
EXPIRY_SUBJECT = "Sharing agreement "


@dataclass
class SentEmail:
    to: list[str]
    subject: str
    text: str
    html: str

    @property
    def everything(self) -> str:
        """Subject, text and HTML (also unescaped, so an escaped value is still found)."""
        return "\n".join([self.subject, self.text, self.html, html.unescape(self.html)])


@dataclass
class SesThrottle:
    """Answers SES SendBulkTemplatedEmail with Throttling (what SES says when the sending rate is exceeded),
    after letting ``allow`` calls through; ``times`` throttled answers, or until ``lifted``.

    It stands in front of moto's request handler on the function's SES client: a throttled call never
    reaches moto (botocore calls every before-send handler, so a handler placed beside moto's would not
    stop moto from sending)."""

    allow: int = 0
    times: int | None = None
    calls: int = 0
    throttled: int = 0
    lifted: bool = False

    def install(self, client: Any) -> SesThrottle:
        client.meta.events.unregister("before-send", botocore_stubber)
        client.meta.events.register("before-send", self)
        return self

    def __call__(self, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        if event_name != "before-send.ses.SendBulkTemplatedEmail":
            return botocore_stubber(event_name, request, **kwargs)
        self.calls += 1
        if self.lifted or self.calls <= self.allow or (self.times is not None and self.throttled >= self.times):
            return botocore_stubber(event_name, request, **kwargs)
        self.throttled += 1
        body = (
            '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error><Type>Sender</Type>'
            "<Code>Throttling</Code><Message>Maximum sending rate exceeded.</Message></Error>"
            "<RequestId>6b2a4c1e-0f3d-4d8e-9a57-3c1e2b4d5f60</RequestId></ErrorResponse>"
        )
        return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, MockRawResponse(body))


@dataclass
class SesRefusal:
    """SES accepts a bulk request but answers one destination (``address``) with a refusal status, as it does
    per destination (moto never refuses one); until ``lifted``. moto has still recorded that destination's
    email: what the function asked for is read from ``NotifyStack.ses_requests``."""

    address: str
    status: str
    requests: list[dict]
    lifted: bool = False

    def __call__(self, parsed: dict, **_: Any) -> None:
        if self.lifted or not self.requests:
            return
        for index, destination in enumerate(self.requests[-1]["Destinations"]):
            if self.address in destination["Destination"]["ToAddresses"]:
                parsed["Status"][index] = {"Status": self.status, "Error": f"{self.status} (test)"}


@dataclass
class NotifyStack:
    ingest: Any  # the IngestStack the events come from
    handler: Any
    events_queue_arn: str
    fake_notify: FakeNotify | None = None
    logs: list[str] = field(default_factory=list)
    """Every line the notify function logged (Powertools JSON), across invocations."""
    ses_requests: list[dict] = field(default_factory=list)
    """The parameters of every SES SendBulkTemplatedEmail call the function made."""
    backoffs: list[float] = field(default_factory=list)
    """botocore's back-off delays between retries of a throttled call (recorded, not slept)."""

    def run(self, bodies: list[str] | None = None) -> list[dict]:
        """Invoke notify on every waiting file-processed event (or on the given bodies), as the event source
        mapping would; a failed message stays on the queue. Returns each invocation's response."""
        sqs, url = self.ingest.sqs, self.ingest.events_queue_url
        responses = []
        if bodies is not None:
            for body in bodies:
                sqs.send_message(QueueUrl=url, MessageBody=body)
        while messages := sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        ).get("Messages", []):
            with self._capturing_logs():
                delivery = deliver_sqs_batch(
                    sqs,
                    queue_url=url,
                    queue_arn=self.events_queue_arn,
                    messages=messages,
                    invoke=lambda event: self.handler.handler(event, LambdaContext(function_name="notify")),
                )
            responses.append(delivery.as_response())
            if delivery.failed:
                break
        return responses

    def waiting_events(self) -> list[dict]:
        """The file-processed events on the queue, left there."""
        messages = self.ingest.sqs.receive_message(
            QueueUrl=self.ingest.events_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def schedule(self, now: datetime | None = None) -> dict:
        """The daily EventBridge schedule, as it invokes the function (``now``: the service's clock)."""
        if now is not None:
            self.handler.service()._clock = lambda: now
        event = {
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-25T07:00:00Z",
            "region": "eu-west-2",
            "resources": ["arn:aws:events:eu-west-2:123456789012:rule/digest"],
            "detail": {},
        }
        with self._capturing_logs():
            return self.handler.handler(event, LambdaContext(function_name="notify"))

    def reload(self) -> None:
        """A new container: the handler module (and its cached service and registry) loaded afresh."""
        self.handler = load_handler_module(ROOT / "functions" / "notify" / "handler.py")

    def throttle_ses(self, allow: int = 0, times: int | None = None) -> SesThrottle:
        """Make SES throttle this function's sends (botocore's back-off is recorded, not slept)."""
        return SesThrottle(allow=allow, times=times).install(self.handler.service().transport.client)

    def refuse_destination(self, address: str, status: str) -> SesRefusal:
        """Make SES refuse one destination of this function's bulk sends (the others are accepted)."""
        refusal = SesRefusal(address, status, self.ses_requests)
        self.handler.service().transport.client.meta.events.register("after-call.ses.SendBulkTemplatedEmail", refusal)
        return refusal

    def sent(self) -> list[SentEmail]:
        if self.fake_notify is not None:
            return [
                SentEmail([e["email_address"]], e["personalisation"]["subject"], e["personalisation"]["body"], "")
                for e in self.fake_notify.emails
            ]
        return [
            SentEmail(mail.to, mail.subject, mail.text, mail.html)
            for mail in ses_sent_mail(DEFAULT_ACCOUNT_ID, "eu-west-2")
        ]

    def to(self, address: str, *, expiry_warnings: bool = False) -> list[SentEmail]:
        """The emails sent to ``address``; agreement expiry warnings only when asked (whether one is due depends on
        today's date against the registry's agreements, not on what a test does)."""
        return [
            message
            for message in self.sent()
            if address in message.to and (expiry_warnings or not message.subject.startswith(EXPIRY_SUBJECT))
        ]

    def expiry_warnings(self) -> list[SentEmail]:
        return [message for message in self.sent() if message.subject.startswith(EXPIRY_SUBJECT)]

    @contextmanager
    def _capturing_logs(self) -> Iterator[None]:
        """Capture what the function's logger writes (the service logs through it too)."""
        target = self.handler.logger._logger
        formatter = next((h.formatter for h in target.handlers if h.formatter is not None), None)
        lines = self.logs

        class Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(self.format(record))

        capture = Capture()
        if formatter is not None:
            capture.setFormatter(formatter)
        target.addHandler(capture)
        try:
            yield
        finally:
            target.removeHandler(capture)


def _notify_stack(ingest_stack, monkeypatch: pytest.MonkeyPatch, transport: str) -> NotifyStack:
    ses = boto3.client("sesv2")
    ses.create_email_identity(EmailIdentity=SENDER)
    ses.create_configuration_set(ConfigurationSetName=CONFIGURATION_SET, DeliveryOptions={"TlsPolicy": "REQUIRE"})
    boto3.client("ses").create_template(Template={"TemplateName": EMAIL_TEMPLATE, **SES_TEMPLATE_PARTS})
    arn = ingest_stack.sqs.get_queue_attributes(QueueUrl=ingest_stack.events_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    fake = None
    env = {
        Env.EMAIL_TRANSPORT: transport,
        Env.EMAIL_SENDER: SENDER,
        Env.SES_CONFIGURATION_SET: CONFIGURATION_SET,
        Env.SES_TEMPLATE: EMAIL_TEMPLATE,
        Env.CONSUMER_GUIDE_URL: CONSUMER_GUIDE_URL,
    }
    if transport == "notify":
        fake = FakeNotify(templates={TEMPLATE_ID: {"subject", "body"}}).start()
        secret = boto3.client("secretsmanager").create_secret(Name="test-notify-key", SecretString=API_KEY)
        env |= {
            Env.NOTIFY_API_KEY_SECRET_ID: secret["ARN"],
            Env.NOTIFY_BASE_URL: fake.base_url,
            Env.NOTIFY_TEMPLATE_ID: TEMPLATE_ID,
        }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # botocore's back-off between retries of a throttled call: not slept in tests (the attempts still happen).
    import botocore.endpoint

    no_sleep = _NoSleepTime()
    monkeypatch.setattr(botocore.endpoint, "time", no_sleep)
    handler = load_handler_module(ROOT / "functions" / "notify" / "handler.py")
    stack = NotifyStack(ingest_stack, handler, arn, fake, backoffs=no_sleep.slept)
    # Clients the function creates later come from this session and carry the hook.
    boto3._get_default_session().events.register(
        "provide-client-params.ses.SendBulkTemplatedEmail", lambda params, **_: stack.ses_requests.append(dict(params))
    )
    return stack


class _NoSleepTime:
    """Stands in for the ``time`` module inside botocore.endpoint: records back-off sleeps instead."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)


@pytest.fixture
def notify_stack(ingest_stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyStack]:
    """The notify function with SES (moto). Its service is built on first use, so a test may still edit the
    registry (``edit_registry``) before its first upload or invocation."""
    stack = _notify_stack(ingest_stack, monkeypatch, "ses")
    yield stack


@pytest.fixture
def notify_via_govuk_notify(ingest_stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyStack]:
    stack = _notify_stack(ingest_stack, monkeypatch, "notify")
    yield stack
    stack.fake_notify.stop()


@pytest.fixture
def edit_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Point REGISTRY_PATH at a copy of config/registry.toml with the given regex substitutions (each must
    match). Call it before the ingest or notify service is first used (or reload the notify stack)."""
    versions = iter(range(1, 100))

    def edit(*substitutions: tuple[str, str]) -> Path:
        folder = tmp_path / f"registry-{next(versions)}"
        folder.mkdir()
        text = (ROOT / "config" / "registry.toml").read_text(encoding="utf-8")
        for pattern, replacement in substitutions:
            text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
            assert count, f"{pattern!r} matched nothing in the registry"
        (folder / "registry.toml").write_text(text, encoding="utf-8")
        shutil.copy(ROOT / "config" / "postcodes.csv", folder / "postcodes.csv")
        shutil.copy(ROOT / "config" / "authorities-england-wales.csv", folder)
        monkeypatch.setenv(Env.REGISTRY_PATH, str(folder / "registry.toml"))
        return folder / "registry.toml"

    return edit


# -- personal data ------------------------------------------------------------------------------------

PERSONAL_FIELDS = (
    "baby_nhs_number",
    "mother_nhs_number",
    "mother_given_name",
    "mother_family_name",
    "address_line_1",
    "address_line_2",
    "address_line_3",
    "address_line_4",
    "postcode",
    "baby_date_of_birth",
    "mother_date_of_birth",
    "notification_id",
    "original_notification_id",
)
"""Every field of a row that identifies a person (the notification ids are pseudonymous keys to them)."""


def personal_values(rows: list[dict[str, str]]) -> set[str]:
    """Every personal value in the rows, in the forms an email might show it."""
    values: set[str] = set()
    for row in rows:
        for name in PERSONAL_FIELDS:
            value = (row.get(name) or "").strip()
            if not value:
                continue
            values |= {value, " ".join(value.split()), value.replace(" ", "")}
            if name.endswith("nhs_number") and value.isdigit() and len(value) == 10:
                values |= {f"{value[:3]} {value[3:6]} {value[6:]}", f"{value[:3]}-{value[3:6]}-{value[6:]}"}
            if name.endswith("date_of_birth"):
                day = datetime.fromisoformat(value).date()
                values |= {
                    day.strftime(f)
                    for f in ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y%m%d", "%d %B %Y", "%d %b %Y", "%B %d, %Y")
                }
                values |= {f"{day.day} {day:%B %Y}", f"{day.day} {day:%b %Y}", f"{day.day}/{day.month}/{day.year}"}
    return values


def find_personal(text: str, values: set[str]) -> list[str]:
    """The personal values that occur in ``text`` as whole tokens, ignoring case."""
    if not values:
        return []
    pattern = re.compile(
        "|".join(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])" for v in sorted(values, key=len, reverse=True)),
        re.IGNORECASE,
    )
    return sorted({match.group(0) for match in pattern.finditer(text)})
