"""How an email leaves: Amazon SES (default) or GOV.UK Notify. One small interface, one recipient a call,
so a retry after a partial failure re-sends only to those not yet mailed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from birthnotify.application.notify.compose import Email

WIRE_POLICY = policy.SMTP.clone(max_line_length=998)
"""CRLF line ends (RFC 5322); headers not folded below the hard limit, so a long subject stays one line."""


class SesTransport:
    """SES v2 with a configuration set (which requires TLS); a MIME message with text and HTML parts."""

    def __init__(self, sesv2: Any, sender: str, configuration_set: str) -> None:
        self._sesv2 = sesv2
        self._sender = sender
        self._configuration_set = configuration_set

    @property
    def client(self) -> Any:
        return self._sesv2

    def send(self, email: Email, recipient: str) -> str:
        message = EmailMessage()
        message["Subject"] = email.subject
        message["From"] = self._sender
        message["To"] = recipient
        message["Message-ID"] = make_msgid(domain=self._sender.rsplit("@", 1)[-1])
        # Quoted-printable: 7-bit safe for SES whatever the names contain (SES advises encoding non-ASCII).
        message.set_content(email.text, cte="quoted-printable")
        message.add_alternative(email.html, subtype="html", cte="quoted-printable")
        response = self._sesv2.send_email(
            FromEmailAddress=self._sender,
            Destination={"ToAddresses": [recipient]},
            Content={"Raw": {"Data": message.as_bytes(policy=WIRE_POLICY)}},
            ConfigurationSetName=self._configuration_set,
            EmailTags=[{"Name": "kind", "Value": email.kind.value}],
        )
        return str(response["MessageId"])


class NotifyTransport:
    """GOV.UK Notify through its official client, with one template whose subject is ((subject)) and body
    ((body)); Notify renders the plain-text body as its own accessible HTML.

    The API key is read through ``api_key`` (cached by the caller, e.g. Powertools parameters): operators
    rotate it in Notify's admin site and put the new value in Secrets Manager, and the next send uses it.
    A 403 (the key was revoked) re-reads it at once and tries again if it changed."""

    def __init__(self, api_key: Callable[[bool], str], base_url: str, template_id: str) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._template_id = template_id
        self._client: Any = None
        self._client_key: str | None = None

    def client(self, refresh: bool = False) -> Any:
        from notifications_python_client.notifications import NotificationsAPIClient

        key = self._api_key(refresh)
        if self._client is None or key != self._client_key:
            client = NotificationsAPIClient(key, base_url=self._base_url)  # type: ignore[no-untyped-call]
            self._client, self._client_key = client, key
        return self._client

    def send(self, email: Email, recipient: str) -> str:
        from notifications_python_client.errors import HTTPError

        client = self.client()
        try:
            return self._send(client, email, recipient)
        except HTTPError as exc:
            if exc.status_code != 403:
                raise
            fresh = self.client(refresh=True)
            if fresh is client:  # the same key: not a rotation, so the refusal stands
                raise
            return self._send(fresh, email, recipient)

    def _send(self, client: Any, email: Email, recipient: str) -> str:
        response = client.send_email_notification(
            email_address=recipient,
            template_id=self._template_id,
            personalisation={"subject": email.subject, "body": email.text},
            # Unique per delivery, for finding it in Notify; the address itself is not put in it.
            reference=f"{email.key}:{hashlib.sha256(recipient.encode()).hexdigest()[:12]}",
        )
        return str(response["id"])
