"""The local fake of GOV.UK Notify is as strict as Notify where the notifier could go wrong: the official
client's requests pass, anything else is refused with Notify's error shapes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
import requests
from birthnotify_cli.fake_notify import API_KEY, SECRET, SERVICE_ID, FakeNotify
from notifications_python_client.errors import HTTPError
from notifications_python_client.notifications import NotificationsAPIClient

TEMPLATE = "f33517ff-2a88-4f6e-b855-c550268ce08a"


@pytest.fixture
def fake() -> Iterator[FakeNotify]:
    server = FakeNotify(templates={TEMPLATE: {"subject", "body"}}).start()
    yield server
    server.stop()


def client(fake: FakeNotify, key: str = API_KEY) -> NotificationsAPIClient:
    return NotificationsAPIClient(key, base_url=fake.base_url)


def test_the_official_client_s_send_gets_notify_s_documented_response(fake):
    response = client(fake).send_email_notification(
        email_address="a@example.gov.uk",
        template_id=TEMPLATE,
        personalisation={"subject": "S", "body": "B"},
        reference="ref-1",
    )
    assert set(response) == {"id", "reference", "content", "uri", "template"}
    assert response["reference"] == "ref-1" and response["content"]["subject"] == "S"
    assert response["template"]["id"] == TEMPLATE and response["uri"].endswith(response["id"])
    assert fake.emails == [
        {
            "email_address": "a@example.gov.uk",
            "template_id": TEMPLATE,
            "personalisation": {"subject": "S", "body": "B"},
            "reference": "ref-1",
        }
    ]


def post(fake: FakeNotify, token: str, body: dict | None = None) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/v2/notifications/email",
        timeout=300,
        headers={"Authorization": f"Bearer {token}"},
        json=body
        or {
            "email_address": "a@example.gov.uk",
            "template_id": TEMPLATE,
            "personalisation": {"subject": "S", "body": "B"},
        },
    )


@pytest.mark.parametrize(
    ("issuer", "issued_seconds_ago", "secret", "message"),
    [
        (SERVICE_ID, 0, "0b6ac5f2-1c8e-4a4e-9d3f-2f8a7d6b1e90", "API key not found"),
        (SERVICE_ID, 45, SECRET, "clock must be accurate to within 30 seconds"),
        (SERVICE_ID, -45, SECRET, "clock must be accurate to within 30 seconds"),
        ("another-service", 0, SECRET, "service not found"),
        (SERVICE_ID, None, SECRET, "not valid"),
    ],
)
def test_a_bad_token_is_refused_as_notify_refuses_it(fake, issuer, issued_seconds_ago, secret, message):
    # The time is taken when the test runs, not when it is collected: the gap is the machine's business.
    claims = (
        {"iss": issuer} if issued_seconds_ago is None else {"iss": issuer, "iat": int(time.time()) - issued_seconds_ago}
    )
    response = post(fake, jwt.encode(claims, secret, algorithm="HS256"))
    assert response.status_code == 403
    [error] = response.json()["errors"]
    assert error["error"] == "AuthError" and message in error["message"]
    assert fake.emails == []


def test_a_rotated_key_refuses_the_old_one(fake):
    fake.api_key = f"new-{SERVICE_ID}-0b6ac5f2-1c8e-4a4e-9d3f-2f8a7d6b1e90"
    with pytest.raises(HTTPError) as refused:
        client(fake).send_email_notification(
            email_address="a@example.gov.uk", template_id=TEMPLATE, personalisation={"subject": "S", "body": "B"}
        )
    assert refused.value.status_code == 403
    client(fake, fake.api_key).send_email_notification(
        email_address="a@example.gov.uk", template_id=TEMPLATE, personalisation={"subject": "S", "body": "B"}
    )
    assert len(fake.emails) == 1


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            {
                "email_address": "not an address",
                "template_id": TEMPLATE,
                "personalisation": {"subject": "S", "body": "B"},
            },
            400,
            "ValidationError",
        ),
        (
            {"email_address": "a@example.gov.uk", "template_id": TEMPLATE, "personalisation": {"subject": "S"}},
            400,
            "BadRequestError",
        ),
        (
            {
                "email_address": "a@example.gov.uk",
                "template_id": "f33517ff-0000-4f6e-b855-c550268ce08a",
                "personalisation": {"subject": "S", "body": "B"},
            },
            400,
            "BadRequestError",
        ),
    ],
)
def test_a_bad_request_is_refused(fake, body, status, error):
    token = jwt.encode({"iss": SERVICE_ID, "iat": int(time.time())}, SECRET, algorithm="HS256")
    response = post(fake, token, body)
    assert response.status_code == status and response.json()["errors"][0]["error"] == error
    assert fake.emails == []


def test_it_fails_on_request_as_notify_can(fake):
    fake.fail_next, fake.fail_status = 1, 429
    with pytest.raises(HTTPError) as refused:
        client(fake).send_email_notification(
            email_address="a@example.gov.uk", template_id=TEMPLATE, personalisation={"subject": "S", "body": "B"}
        )
    assert refused.value.status_code == 429 and "RateLimitError" in str(refused.value.message)
    assert fake.emails == []
