"""One definition of the runtime configuration: the environment variable names the handlers read and the
CDK stack sets, and the resource names both sides derive from the registry."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum


class Env(StrEnum):
    """Environment variables of the Lambda functions. The CDK stack sets exactly these."""

    STAGE = "STAGE"
    REGISTRY_PATH = "REGISTRY_PATH"
    INBOUND_BUCKET = "INBOUND_BUCKET"
    REPORTS_BUCKET = "REPORTS_BUCKET"
    AUTHORITY_QUEUE_PREFIX = "AUTHORITY_QUEUE_PREFIX"
    HELD_QUEUE_URL = "HELD_QUEUE_URL"
    FILE_EVENTS_QUEUE_URL = "FILE_EVENTS_QUEUE_URL"
    STATE_TABLE = "STATE_TABLE"
    MAX_FILE_BYTES = "MAX_FILE_BYTES"
    MAX_BABY_AGE_DAYS = "MAX_BABY_AGE_DAYS"
    # notifier
    EMAIL_TRANSPORT = "EMAIL_TRANSPORT"
    EMAIL_SENDER = "EMAIL_SENDER"
    SES_CONFIGURATION_SET = "SES_CONFIGURATION_SET"
    NOTIFY_API_KEY_SECRET_ID = "NOTIFY_API_KEY_SECRET_ID"  # noqa: S105 (a variable name)
    NOTIFY_BASE_URL = "NOTIFY_BASE_URL"
    NOTIFY_TEMPLATE_ID = "NOTIFY_TEMPLATE_ID"
    CONSUMER_GUIDE_URL = "CONSUMER_GUIDE_URL"


INGEST_ENV: frozenset[Env] = frozenset(
    {
        Env.STAGE,
        Env.REGISTRY_PATH,
        Env.INBOUND_BUCKET,
        Env.REPORTS_BUCKET,
        Env.AUTHORITY_QUEUE_PREFIX,
        Env.HELD_QUEUE_URL,
        Env.FILE_EVENTS_QUEUE_URL,
        Env.STATE_TABLE,
        Env.MAX_FILE_BYTES,
        Env.MAX_BABY_AGE_DAYS,
    }
)
"""The variables the ingest handler reads (the stack must set each; tests compare the two)."""

NOTIFY_ENV: frozenset[Env] = frozenset(
    {
        Env.STAGE,
        Env.REGISTRY_PATH,
        Env.REPORTS_BUCKET,
        Env.STATE_TABLE,
        Env.EMAIL_TRANSPORT,
        Env.EMAIL_SENDER,
        Env.SES_CONFIGURATION_SET,
        Env.NOTIFY_API_KEY_SECRET_ID,
        Env.NOTIFY_BASE_URL,
        Env.NOTIFY_TEMPLATE_ID,
        Env.CONSUMER_GUIDE_URL,
    }
)
"""The variables the notify handler reads (the Notify ones may be empty when the transport is SES)."""

DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_BABY_AGE_DAYS = 366
INBOUND_PREFIX = "inbound/"
REPORTS_PREFIX = "reports/"


def authority_queue_name(prefix: str, gss_code: str) -> str:
    """Name of an authority's FIFO queue; the stack creates it and the ingest function derives it."""
    return f"{prefix}-{gss_code}.fifo"


@dataclass(frozen=True)
class IngestSettings:
    """What the ingest function needs from its environment, read once per container."""

    registry_path: str
    reports_bucket: str
    authority_queue_prefix: str
    held_queue_url: str
    file_events_queue_url: str
    state_table: str
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_baby_age_days: int = DEFAULT_MAX_BABY_AGE_DAYS

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> IngestSettings:
        env = os.environ if environ is None else environ
        missing = [name.value for name in INGEST_ENV - {Env.STAGE, Env.INBOUND_BUCKET, Env.MAX_FILE_BYTES,
                                                         Env.MAX_BABY_AGE_DAYS} if not env.get(name)]
        if missing:
            raise RuntimeError(f"ingest is missing environment variables: {', '.join(sorted(missing))}")
        return cls(
            registry_path=env[Env.REGISTRY_PATH],
            reports_bucket=env[Env.REPORTS_BUCKET],
            authority_queue_prefix=env[Env.AUTHORITY_QUEUE_PREFIX],
            held_queue_url=env[Env.HELD_QUEUE_URL],
            file_events_queue_url=env[Env.FILE_EVENTS_QUEUE_URL],
            state_table=env[Env.STATE_TABLE],
            max_file_bytes=int(env.get(Env.MAX_FILE_BYTES) or DEFAULT_MAX_FILE_BYTES),
            max_baby_age_days=int(env.get(Env.MAX_BABY_AGE_DAYS) or DEFAULT_MAX_BABY_AGE_DAYS),
        )


DEFAULT_NOTIFY_BASE_URL = "https://api.notifications.service.gov.uk"


@dataclass(frozen=True)
class NotifySettings:
    """What the notify function needs from its environment."""

    registry_path: str
    reports_bucket: str
    state_table: str
    email_transport: str
    email_sender: str
    consumer_guide_url: str
    ses_configuration_set: str = ""
    notify_api_key_secret_id: str = ""
    notify_base_url: str = DEFAULT_NOTIFY_BASE_URL
    notify_template_id: str = ""
    stage: str = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> NotifySettings:
        env = os.environ if environ is None else environ
        required = (Env.REGISTRY_PATH, Env.REPORTS_BUCKET, Env.STATE_TABLE, Env.EMAIL_TRANSPORT, Env.EMAIL_SENDER,
                    Env.CONSUMER_GUIDE_URL)
        missing = [name.value for name in required if not env.get(name)]
        transport = env.get(Env.EMAIL_TRANSPORT, "")
        if transport == "ses" and not env.get(Env.SES_CONFIGURATION_SET):
            missing.append(Env.SES_CONFIGURATION_SET.value)
        if transport == "notify":
            missing += [n.value for n in (Env.NOTIFY_API_KEY_SECRET_ID, Env.NOTIFY_TEMPLATE_ID) if not env.get(n)]
        if missing:
            raise RuntimeError(f"notify is missing environment variables: {', '.join(sorted(missing))}")
        if transport not in ("ses", "notify"):
            raise RuntimeError(f"{Env.EMAIL_TRANSPORT} must be ses or notify, not {transport!r}")
        return cls(
            registry_path=env[Env.REGISTRY_PATH], reports_bucket=env[Env.REPORTS_BUCKET],
            state_table=env[Env.STATE_TABLE], email_transport=transport, email_sender=env[Env.EMAIL_SENDER],
            consumer_guide_url=env[Env.CONSUMER_GUIDE_URL],
            ses_configuration_set=env.get(Env.SES_CONFIGURATION_SET, ""),
            notify_api_key_secret_id=env.get(Env.NOTIFY_API_KEY_SECRET_ID, ""),
            notify_base_url=env.get(Env.NOTIFY_BASE_URL) or DEFAULT_NOTIFY_BASE_URL,
            notify_template_id=env.get(Env.NOTIFY_TEMPLATE_ID, ""),
            stage=env.get(Env.STAGE, ""),
        )
