"""A send that fails is retried by SQS (and would end in the DLQ), never lost; a retry never mails twice."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.fake_notify import SERVICE_ID
from birthnotify_cli.synthetic import to_bytes
from ingest_support import REGISTRY_PATH
from notify_support import SENDER

REGISTRY = load_registry(REGISTRY_PATH)
KENT, MAIDSTONE = "E10000016", "E07000110"
EXPECTED = sorted([*REGISTRY.trust("RX2").contact_emails, *REGISTRY.authority(KENT).contact_emails])
"""A Kent file from RX2: a receipt to the trust and one email to each of Kent's two addresses."""


@pytest.fixture
def kent_file(ingest_stack, rows_factory):
    rows = rows_factory(6, london_day(datetime.now(UTC)), districts={MAIDSTONE: 1}, seed=3)
    ingest_stack.upload("RX2", "kent.csv", to_bytes(rows, "kent.csv"))
    ingest_stack.run()


def recipients(stack) -> list[str]:
    return sorted(to for message in stack.sent() for to in message.to)


def test_brief_ses_throttling_is_absorbed_by_backing_off(notify_stack, kent_file):
    throttle = notify_stack.throttle_ses(times=2)
    assert notify_stack.run() == [{"batchItemFailures": []}]
    assert throttle.throttled == 2 and len(notify_stack.backoffs) == 2
    assert recipients(notify_stack) == EXPECTED


def test_lasting_ses_throttling_fails_the_event_and_the_retry_mails_everyone_once(notify_stack, kent_file):
    throttle = notify_stack.throttle_ses()  # SES refuses the whole bulk request, attempt after attempt
    [first] = notify_stack.run()
    assert len(first["batchItemFailures"]) == 1
    assert len(notify_stack.waiting_events()) == 1  # still on the queue: SQS retries it, then the DLQ
    assert notify_stack.sent() == []
    attempts = notify_stack.handler.SES_ATTEMPTS
    assert throttle.throttled == attempts  # one request for all three emails: tried, then retried with back-off
    assert len(notify_stack.backoffs) == attempts - 1
    logs = "\n".join(notify_stack.logs)
    assert '"emails not sent"' in logs and "Throttling" in logs

    throttle.lifted = True
    assert notify_stack.run() == [{"batchItemFailures": []}]
    assert recipients(notify_stack) == EXPECTED  # everyone, once
    assert [len(request["Destinations"]) for request in notify_stack.ses_requests] == [3, 3]
    assert notify_stack.waiting_events() == []


def test_a_destination_ses_refused_is_mailed_by_the_retry_and_no_other(notify_stack, kent_file):
    refused = REGISTRY.authority(KENT).contact_emails[0]
    refusal = notify_stack.refuse_destination(refused, status="MessageRejected")
    [first] = notify_stack.run()
    assert len(first["batchItemFailures"]) == 1  # the event stays on the queue for a retry
    [bulk] = notify_stack.ses_requests
    assert sorted(d["Destination"]["ToAddresses"][0] for d in bulk["Destinations"]) == EXPECTED
    logs = "\n".join(notify_stack.logs)
    assert "MessageRejected" in logs and refused not in logs  # the status code, never the address

    refusal.lifted = True
    assert notify_stack.run() == [{"batchItemFailures": []}]
    [_, retry] = notify_stack.ses_requests
    assert [d["Destination"]["ToAddresses"] for d in retry["Destinations"]] == [[refused]]
    kent_mail = [mail for mail in notify_stack.sent() if mail.to == [refused]]
    assert kent_mail[-1].subject == kent_mail[0].subject and kent_mail[-1].text == kent_mail[0].text


def test_a_refused_sender_fails_the_event_instead_of_dropping_it(notify_stack, kent_file):
    ses = boto3.client("sesv2")
    ses.delete_email_identity(EmailIdentity=SENDER)  # SES refuses: MessageRejected
    [first] = notify_stack.run()
    assert len(first["batchItemFailures"]) == 1 and notify_stack.sent() == []

    ses.create_email_identity(EmailIdentity=SENDER)
    assert notify_stack.run() == [{"batchItemFailures": []}]
    assert recipients(notify_stack) == EXPECTED


def test_an_unreadable_event_is_a_failure_not_a_silent_skip(notify_stack, ingest_stack):
    [response] = notify_stack.run(['{"event_id": "x"}'])
    assert len(response["batchItemFailures"]) == 1 and notify_stack.sent() == []


@pytest.mark.parametrize("status", [500, 429])
def test_govuk_notify_errors_are_retried_and_nobody_is_mailed_twice(notify_via_govuk_notify, kent_file, status):
    stack = notify_via_govuk_notify
    stack.fake_notify.fail_next, stack.fake_notify.fail_status = 1, status  # the first email fails

    [first] = stack.run()
    assert len(first["batchItemFailures"]) == 1  # the event stays on the queue for a retry
    assert len(stack.sent()) == len(EXPECTED) - 1
    [retry] = stack.run()
    assert retry == {"batchItemFailures": []}
    assert recipients(stack) == EXPECTED  # everyone exactly once, despite the failure and the retry
    assert [status for status, _ in stack.fake_notify.refused] == [status]


def test_a_rotated_govuk_notify_key_is_picked_up_without_a_restart(notify_via_govuk_notify, kent_file):
    stack = notify_via_govuk_notify
    stack.handler.service().transport.client()  # the container has read (and cached) the old key
    new_key = f"rotated-{SERVICE_ID}-0b6ac5f2-1c8e-4a4e-9d3f-2f8a7d6b1e90"
    secrets = boto3.client("secretsmanager")
    secrets.put_secret_value(SecretId="test-notify-key", SecretString=new_key)
    stack.fake_notify.api_key = new_key  # Notify now refuses the old key

    assert stack.run() == [{"batchItemFailures": []}]
    assert recipients(stack) == EXPECTED
    assert [status for status, _ in stack.fake_notify.refused] == [403]  # once, then the key was re-read


def test_a_revoked_govuk_notify_key_fails_the_event(notify_via_govuk_notify, kent_file):
    stack = notify_via_govuk_notify
    stack.fake_notify.api_key = f"other-{SERVICE_ID}-8d0c7e58-2f43-4c55-a2f4-2b1a47b3c6d1"
    [first] = stack.run()
    assert len(first["batchItemFailures"]) == 1 and stack.sent() == []
    assert {status for status, _ in stack.fake_notify.refused} == {403}


def test_an_event_costs_one_ses_request_and_two_state_writes(notify_stack, kent_file):
    calls: list[str] = []
    session = boto3._get_default_session()

    def count(event_name: str, **_: object) -> None:
        if event_name.startswith(("before-call.ses.", "before-call.dynamodb.")):
            calls.append(event_name.removeprefix("before-call."))

    session.events.register("before-call", count)
    try:
        assert notify_stack.run() == [{"batchItemFailures": []}]
    finally:
        session.events.unregister("before-call", count)
    assert sorted(calls) == ["dynamodb.UpdateItem", "dynamodb.UpdateItem", "ses.SendBulkTemplatedEmail"]
    assert recipients(notify_stack) == EXPECTED
