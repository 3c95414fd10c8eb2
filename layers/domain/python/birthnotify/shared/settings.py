"""One definition of the runtime configuration: the environment variable names the handlers read and the
CDK stack sets, and the resource names both sides derive from the registry."""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator


class Env(StrEnum):
    """Environment variables of the Lambda functions. The CDK stack sets exactly these."""

    STAGE = "STAGE"
    REGISTRY_PATH = "REGISTRY_PATH"
    INBOUND_BUCKET = "INBOUND_BUCKET"
    REPORTS_BUCKET = "REPORTS_BUCKET"
    AUTHORITY_QUEUE_PREFIX = "AUTHORITY_QUEUE_PREFIX"
    QUEUE_URL_BASE = "QUEUE_URL_BASE"
    HELD_TABLE = "HELD_TABLE"
    HELD_RETENTION_DAYS = "HELD_RETENTION_DAYS"
    HELD_MAX_AGE_HOURS = "HELD_MAX_AGE_HOURS"
    FILE_EVENTS_QUEUE_URL = "FILE_EVENTS_QUEUE_URL"
    STATE_TABLE = "STATE_TABLE"
    MAX_FILE_BYTES = "MAX_FILE_BYTES"
    MAX_BABY_AGE_DAYS = "MAX_BABY_AGE_DAYS"
    LEDGER_BUCKET = "LEDGER_BUCKET"
    LEDGER_KEY_SECRET_ID = "LEDGER_KEY_SECRET_ID"  # noqa: S105 (a variable name)
    # notifier
    EMAIL_TRANSPORT = "EMAIL_TRANSPORT"
    EMAIL_SENDER = "EMAIL_SENDER"
    SES_CONFIGURATION_SET = "SES_CONFIGURATION_SET"
    SES_TEMPLATE = "SES_TEMPLATE"
    NOTIFY_API_KEY_SECRET_ID = "NOTIFY_API_KEY_SECRET_ID"  # noqa: S105 (a variable name)
    NOTIFY_BASE_URL = "NOTIFY_BASE_URL"
    NOTIFY_TEMPLATE_ID = "NOTIFY_TEMPLATE_ID"
    CONSUMER_GUIDE_URL = "CONSUMER_GUIDE_URL"
    # MESH
    MESH_SECRET_ID = "MESH_SECRET_ID"  # noqa: S105 (a variable name)
    MESH_FILE_WORKFLOW_ID = "MESH_FILE_WORKFLOW_ID"
    MESH_NEMS_WORKFLOW_ID = "MESH_NEMS_WORKFLOW_ID"
    MESH_REPORT_WORKFLOW_ID = "MESH_REPORT_WORKFLOW_ID"
    MESH_MAX_MESSAGES = "MESH_MAX_MESSAGES"


INGEST_ENV: frozenset[Env] = frozenset(
    {
        Env.STAGE,
        Env.REGISTRY_PATH,
        Env.INBOUND_BUCKET,
        Env.REPORTS_BUCKET,
        Env.AUTHORITY_QUEUE_PREFIX,
        Env.QUEUE_URL_BASE,
        Env.HELD_TABLE,
        Env.HELD_RETENTION_DAYS,
        Env.FILE_EVENTS_QUEUE_URL,
        Env.STATE_TABLE,
        Env.MAX_FILE_BYTES,
        Env.MAX_BABY_AGE_DAYS,
        Env.LEDGER_BUCKET,
        Env.LEDGER_KEY_SECRET_ID,
    }
)
"""The variables the ingest handler reads (the stack must set each; tests compare the two)."""

NOTIFY_ENV: frozenset[Env] = frozenset(
    {
        Env.STAGE,
        Env.REGISTRY_PATH,
        Env.REPORTS_BUCKET,
        Env.STATE_TABLE,
        Env.HELD_TABLE,
        Env.HELD_MAX_AGE_HOURS,
        Env.EMAIL_TRANSPORT,
        Env.EMAIL_SENDER,
        Env.SES_CONFIGURATION_SET,
        Env.SES_TEMPLATE,
        Env.NOTIFY_API_KEY_SECRET_ID,
        Env.NOTIFY_BASE_URL,
        Env.NOTIFY_TEMPLATE_ID,
        Env.CONSUMER_GUIDE_URL,
        Env.MESH_SECRET_ID,
        Env.MESH_REPORT_WORKFLOW_ID,
    }
)
"""The variables the notify handler reads (the Notify ones may be empty when the transport is SES)."""

MESH_ENV: frozenset[Env] = frozenset(
    {
        Env.STAGE,
        Env.REGISTRY_PATH,
        Env.INBOUND_BUCKET,
        Env.FILE_EVENTS_QUEUE_URL,
        Env.STATE_TABLE,
        Env.MESH_SECRET_ID,
        Env.MESH_FILE_WORKFLOW_ID,
        Env.MESH_NEMS_WORKFLOW_ID,
        Env.MESH_REPORT_WORKFLOW_ID,
        Env.MESH_MAX_MESSAGES,
    }
)
"""The variables the mesh handler reads."""

DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024
DEFAULT_MESH_MAX_MESSAGES = 100
DEFAULT_MAX_BABY_AGE_DAYS = 366
DEFAULT_HELD_RETENTION_DAYS = 400
"""How long the held store keeps a record nobody has acted on (and the trace of one acted on): longer than any
agreement's purpose can use a notification (a baby up to DEFAULT_MAX_BABY_AGE_DAYS old is accepted)."""


class _Settings(BaseModel):
    """Settings read from the environment once, at cold start: a missing or malformed variable stops the
    function there, naming the variable, instead of failing on some later record."""

    # defer_build: a function validates its own settings once, at cold start; the other functions' models
    # are never built in its process.
    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True, defer_build=True)
    _function: ClassVar[str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        # An empty variable counts as absent (the stack sets optional ones to "").
        values = {name.value: env[name.value] for name in Env if env.get(name.value)}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            missing = sorted({str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing"})
            errors = exc.errors()
            invalid = sorted({f"{e['loc'][0]} ({_why(e)})" for e in errors if e["type"] != "missing" and e["loc"]})
            problems = [f"missing environment variables: {', '.join(missing)}"] if missing else []
            problems += [f"invalid environment variables: {', '.join(invalid)}"] if invalid else []
            problems += [str(e["msg"]).removeprefix("Value error, ") for e in exc.errors() if not e["loc"]]
            raise RuntimeError(f"{cls._function} is {'; '.join(problems)}") from None


def _why(error: Any) -> str:
    if error["type"] == "enum":  # "must be ses or notify", not pydantic's "Input should be 'ses' or 'notify'"
        return f"must be {str(error['ctx']['expected']).replace(chr(39), '')}"
    return str(error["msg"])


class IngestSettings(_Settings):
    """What the ingest function needs from its environment."""

    _function = "ingest"
    stage: str = Field("", validation_alias=Env.STAGE.value)
    registry_path: str = Field(validation_alias=Env.REGISTRY_PATH.value)
    reports_bucket: str = Field(validation_alias=Env.REPORTS_BUCKET.value)
    authority_queue_prefix: str = Field(validation_alias=Env.AUTHORITY_QUEUE_PREFIX.value)
    queue_url_base: str = Field(pattern=r"^https?://[^/]+/[0-9]{12}/$", validation_alias=Env.QUEUE_URL_BASE.value)
    """``https://sqs.<region>.<url suffix>/<account>/``: an authority queue's URL is this and its name (no
    GetQueueUrl per queue and container)."""
    held_table: str = Field(validation_alias=Env.HELD_TABLE.value)
    held_retention_days: PositiveInt = Field(
        DEFAULT_HELD_RETENTION_DAYS, validation_alias=Env.HELD_RETENTION_DAYS.value
    )
    file_events_queue_url: str = Field(validation_alias=Env.FILE_EVENTS_QUEUE_URL.value)
    state_table: str = Field(validation_alias=Env.STATE_TABLE.value)
    max_file_bytes: PositiveInt = Field(DEFAULT_MAX_FILE_BYTES, validation_alias=Env.MAX_FILE_BYTES.value)
    max_baby_age_days: PositiveInt = Field(DEFAULT_MAX_BABY_AGE_DAYS, validation_alias=Env.MAX_BABY_AGE_DAYS.value)
    ledger_bucket: str = Field(validation_alias=Env.LEDGER_BUCKET.value)
    ledger_key_secret_id: str = Field(validation_alias=Env.LEDGER_KEY_SECRET_ID.value)


DEFAULT_NOTIFY_BASE_URL = "https://api.notifications.service.gov.uk"
DEFAULT_HELD_MAX_AGE_HOURS = 48
"""Operators are reminded (daily, counts only) of held records that have waited longer than this."""


class EmailTransportKind(StrEnum):
    SES = "ses"
    NOTIFY = "notify"


class NotifySettings(_Settings):
    """What the notify function needs from its environment."""

    _function = "notify"
    stage: str = Field("", validation_alias=Env.STAGE.value)
    registry_path: str = Field(validation_alias=Env.REGISTRY_PATH.value)
    reports_bucket: str = Field(validation_alias=Env.REPORTS_BUCKET.value)
    state_table: str = Field(validation_alias=Env.STATE_TABLE.value)
    held_table: str = Field("", validation_alias=Env.HELD_TABLE.value)
    """The held store, whose ``open`` index (no personal data) the daily run reads to remind operators."""
    held_max_age_hours: PositiveInt = Field(DEFAULT_HELD_MAX_AGE_HOURS, validation_alias=Env.HELD_MAX_AGE_HOURS.value)
    email_transport: EmailTransportKind = Field(validation_alias=Env.EMAIL_TRANSPORT.value)
    email_sender: str = Field(validation_alias=Env.EMAIL_SENDER.value)
    consumer_guide_url: str = Field(validation_alias=Env.CONSUMER_GUIDE_URL.value)
    ses_configuration_set: str = Field("", validation_alias=Env.SES_CONFIGURATION_SET.value)
    ses_template: str = Field("", validation_alias=Env.SES_TEMPLATE.value)
    """The stack's stored SES template (subject, text and HTML filled in per recipient): a file's emails
    leave in one SendBulkTemplatedEmail request per 50 recipients."""
    notify_api_key_secret_id: str = Field("", validation_alias=Env.NOTIFY_API_KEY_SECRET_ID.value)
    notify_base_url: str = Field(DEFAULT_NOTIFY_BASE_URL, validation_alias=Env.NOTIFY_BASE_URL.value)
    notify_template_id: str = Field("", validation_alias=Env.NOTIFY_TEMPLATE_ID.value)
    mesh_secret_id: str = Field("", validation_alias=Env.MESH_SECRET_ID.value)
    """Where the service's MESH mailbox and credentials are: reports of files that came by MESH go back by it."""
    mesh_report_workflow_id: str = Field("", validation_alias=Env.MESH_REPORT_WORKFLOW_ID.value)

    @model_validator(mode="after")
    def _transport_complete(self) -> NotifySettings:
        needed = {
            EmailTransportKind.SES: [
                (Env.SES_CONFIGURATION_SET, self.ses_configuration_set),
                (Env.SES_TEMPLATE, self.ses_template),
            ],
            EmailTransportKind.NOTIFY: [
                (Env.NOTIFY_API_KEY_SECRET_ID, self.notify_api_key_secret_id),
                (Env.NOTIFY_TEMPLATE_ID, self.notify_template_id),
            ],
        }
        missing = [name.value for name, value in needed[self.email_transport] if not value]
        if missing:
            raise ValueError(
                f"missing environment variables: {', '.join(missing)} (needed by the "
                f"{self.email_transport.value} transport)"
            )
        return self


class MeshSettings(_Settings):
    """What the mesh function needs from its environment (the mailbox and its credentials are in the secret)."""

    _function = "mesh"
    stage: str = Field("", validation_alias=Env.STAGE.value)
    registry_path: str = Field(validation_alias=Env.REGISTRY_PATH.value)
    inbound_bucket: str = Field(validation_alias=Env.INBOUND_BUCKET.value)
    file_events_queue_url: str = Field(validation_alias=Env.FILE_EVENTS_QUEUE_URL.value)
    state_table: str = Field(validation_alias=Env.STATE_TABLE.value)
    mesh_secret_id: str = Field(validation_alias=Env.MESH_SECRET_ID.value)
    mesh_file_workflow_id: str = Field(validation_alias=Env.MESH_FILE_WORKFLOW_ID.value)
    mesh_nems_workflow_id: str = Field(validation_alias=Env.MESH_NEMS_WORKFLOW_ID.value)
    mesh_report_workflow_id: str = Field(validation_alias=Env.MESH_REPORT_WORKFLOW_ID.value)
    mesh_max_messages: PositiveInt = Field(DEFAULT_MESH_MAX_MESSAGES, validation_alias=Env.MESH_MAX_MESSAGES.value)
