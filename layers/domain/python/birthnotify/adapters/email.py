"""How an email leaves: Amazon SES (default) or GOV.UK Notify.

SES sends many recipients' emails in one SendBulkTemplatedEmail request (up to 50 destinations), each
destination filling the stack's stored template with its own subject, text and HTML, and answers with a
status per destination, so a retry after a partial failure re-sends only to those refused. GOV.UK Notify
has no bulk API: one recipient a call."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from birthnotify.application.notify.compose import Email
from birthnotify.application.ports import DestinationRefused

SES_MAX_DESTINATIONS = 50
"""SES takes at most 50 recipients in one SendBulkTemplatedEmail request (To, Cc and Bcc together)."""


def template_data(email: Email) -> str:
    """The values of the stored template's fields (birthnotify.shared.names.SES_TEMPLATE_PARTS) for ``email``."""
    return json.dumps({"subject": email.subject, "text": email.text, "html": email.html}, ensure_ascii=False)


class SesTransport:
    """SES (API v1) SendBulkTemplatedEmail with the stack's stored template and its configuration set (which
    requires TLS); each destination is one recipient with its own template data and ``kind`` tag."""

    max_destinations = SES_MAX_DESTINATIONS

    def __init__(self, ses: Any, sender: str, configuration_set: str, template: str) -> None:
        self._ses = ses
        self._sender = sender
        self._configuration_set = configuration_set
        self._template = template

    @property
    def client(self) -> Any:
        return self._ses

    def send(self, email: Email, recipient: str) -> str:
        [outcome] = self.send_bulk([(email, recipient)])
        if isinstance(outcome, DestinationRefused):
            raise outcome
        return outcome

    def send_bulk(self, deliveries: Sequence[tuple[Email, str]]) -> list[str | DestinationRefused]:
        if not 0 < len(deliveries) <= self.max_destinations:
            raise ValueError(f"a bulk send takes 1 to {self.max_destinations} destinations, not {len(deliveries)}")
        # The first email's data is the default; the destinations of other emails carry their own.
        default_email = deliveries[0][0]
        default = template_data(default_email)
        destinations = []
        for email, recipient in deliveries:
            destination: dict[str, Any] = {
                "Destination": {"ToAddresses": [recipient]},
                "ReplacementTags": [{"Name": "kind", "Value": email.kind.value}],
            }
            if email is not default_email:
                destination["ReplacementTemplateData"] = template_data(email)
            destinations.append(destination)
        response = self._ses.send_bulk_templated_email(
            Source=self._sender,
            ConfigurationSetName=self._configuration_set,
            Template=self._template,
            DefaultTemplateData=default,
            DefaultTags=[{"Name": "kind", "Value": default_email.kind.value}],
            Destinations=destinations,
        )
        statuses = response.get("Status") or []
        if len(statuses) != len(deliveries):  # SES answers one status per destination, in order
            raise RuntimeError(f"SES answered {len(statuses)} statuses for {len(deliveries)} destinations")
        return [_outcome(status) for status in statuses]


def _outcome(status: dict[str, Any]) -> str | DestinationRefused:
    """A destination's message id, or why SES refused it (its status code only: the error text may quote the
    address). moto answers a MessageId without a Status; SES answers Status "Success" with it."""
    code = str(status.get("Status") or ("Success" if status.get("MessageId") else "Unknown"))
    if code == "Success" and status.get("MessageId"):
        return str(status["MessageId"])
    return DestinationRefused(f"SES refused one destination of a bulk send: {code}")


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
