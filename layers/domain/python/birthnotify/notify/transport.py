"""How an email leaves: Amazon SES (default) or GOV.UK Notify. One small interface, one recipient a call,
so a retry after a partial failure re-sends only to those not yet mailed."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol

from birthnotify.notify.compose import Email


class EmailTransport(Protocol):
    def send(self, email: Email, recipient: str) -> str:
        """Send ``email`` to one recipient; returns the provider's message id, raises on failure."""
        ...


class SesTransport:
    """SES v2 with a configuration set (which requires TLS); a MIME message with text and HTML parts."""

    def __init__(self, sesv2: Any, sender: str, configuration_set: str) -> None:
        self._sesv2 = sesv2
        self._sender = sender
        self._configuration_set = configuration_set

    def send(self, email: Email, recipient: str) -> str:
        message = EmailMessage()
        message["Subject"] = email.subject
        message["From"] = self._sender
        message["To"] = recipient
        message["Message-ID"] = make_msgid(domain=self._sender.rsplit("@", 1)[-1])
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        response = self._sesv2.send_email(
            FromEmailAddress=self._sender,
            Destination={"ToAddresses": [recipient]},
            Content={"Raw": {"Data": message.as_bytes()}},
            ConfigurationSetName=self._configuration_set,
            EmailTags=[{"Name": "kind", "Value": email.kind.value}],
        )
        return response["MessageId"]


class NotifyTransport:
    """GOV.UK Notify through its official client, with one template whose subject is ((subject)) and body
    ((body)); Notify renders the plain-text body as its own accessible HTML."""

    def __init__(self, client: Any, template_id: str) -> None:
        self._client = client
        self._template_id = template_id

    @classmethod
    def from_api_key(cls, api_key: str, base_url: str, template_id: str) -> NotifyTransport:
        from notifications_python_client.notifications import NotificationsAPIClient

        return cls(NotificationsAPIClient(api_key, base_url=base_url), template_id)

    def send(self, email: Email, recipient: str) -> str:
        response = self._client.send_email_notification(
            email_address=recipient, template_id=self._template_id,
            personalisation={"subject": email.subject, "body": email.text}, reference=email.key,
        )
        return response["id"]
