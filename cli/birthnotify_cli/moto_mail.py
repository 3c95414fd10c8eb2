"""The emails SES accepted, read back from moto (which keeps them in this process): for tests and the
local cloud's summary."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SentMail:
    id: str
    sender: str
    to: list[str]
    subject: str
    text: str
    html: str


def ses_sent_mail(account: str, region: str) -> list[SentMail]:
    """Every message SES accepted in moto, oldest first, with its text and HTML parts decoded."""
    from moto.ses.models import ses_backends

    return [_read(message) for message in ses_backends[account][region].sent_messages]


def _read(message: Any) -> SentMail:
    raw = getattr(message, "raw_data", None)
    if raw is None:  # a simple (not raw MIME) message
        destinations = message.destinations
        return SentMail(
            message.id,
            message.source,
            [*destinations.get("ToAddresses", []), *destinations.get("CcAddresses", [])],
            message.subject,
            message.body,
            "",
        )
    parsed = email.message_from_string(raw, policy=email.policy.default)
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    return SentMail(
        message.id,
        str(parsed.get("From", message.source)),
        list(dict.fromkeys(message.destinations)),
        str(parsed.get("Subject", "")),
        text.get_content() if text else "",
        html.get_content() if html else "",
    )
