"""The emails SES accepted, read back from moto (which keeps them in this process): for tests and the
local cloud's summary."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
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
    """Every message SES accepted in moto, oldest first, with its text and HTML parts decoded; a bulk
    (templated) send gives one message per destination, rendered as SES would render it."""
    from moto.ses.models import ses_backends

    backend = ses_backends[account][region]
    mail: list[SentMail] = []
    for message in backend.sent_messages:
        if hasattr(message, "template"):
            mail.extend(_render(message, backend.templates.get(message.template) or {}))
        else:
            mail.append(_read(message))
    return mail


_FIELD = re.compile(r"\{\{\{\s*([\w.-]+)\s*\}\}\}|\{\{\s*([\w.-]+)\s*\}\}")
"""A template field: {{{name}}} (filled in as it is) or {{name}} (HTML-escaped, as Handlebars does)."""


def fill(part: str, data: dict[str, Any]) -> str:
    """A template part with its fields filled in from ``data`` (a missing field renders empty, as in SES)."""

    def value(match: re.Match[str]) -> str:
        raw, escaped = match.group(1), match.group(2)
        found = data.get(raw or escaped, "")
        text = found if isinstance(found, str) else json.dumps(found)
        return text if raw else html.escape(text)

    return _FIELD.sub(value, part)


def _render(message: Any, template: dict[str, Any]) -> list[SentMail]:
    """A templated send (SendTemplatedEmail: one destination; SendBulkTemplatedEmail: several), each
    destination's template data being its replacement data, else the default."""
    default = message.template_data or "{}"
    if isinstance(message.destinations, dict):  # SendTemplatedEmail
        destinations = [{"Destination": message.destinations}]
    else:
        destinations = list(message.destinations)
    mail = []
    for index, destination in enumerate(destinations):
        data = json.loads(destination.get("ReplacementTemplateData") or default)
        to = destination.get("Destination", {})
        mail.append(
            SentMail(
                f"{message.id}-{index}",
                message.source,
                [*to.get("ToAddresses", []), *to.get("CcAddresses", []), *to.get("BccAddresses", [])],
                fill(str(template.get("subject_part", "")), data),
                fill(str(template.get("text_part", "")), data),
                fill(str(template.get("html_part", "")), data),
            )
        )
    return mail


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
