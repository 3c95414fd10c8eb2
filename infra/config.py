"""Deployment settings of one stage, read from CDK context (``cdk.json`` and ``--context key=value``).

Only deployment knobs live here (names, sizes, retention, alarm thresholds, email transport). Who may
upload and who receives comes from the registry (config/registry.toml), read with the same loader the
functions use; business rules stay in the domain package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from birthnotify.application.ingest import IDEMPOTENCY_SECONDS
from birthnotify.domain.registry import Registry, load_registry
from birthnotify.shared.names import StageNames
from birthnotify.shared.settings import (
    DEFAULT_HELD_MAX_AGE_HOURS,
    DEFAULT_HELD_RETENTION_DAYS,
    DEFAULT_MAX_BABY_AGE_DAYS,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MESH_MAX_MESSAGES,
    DEFAULT_NOTIFY_BASE_URL,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGISTRY = ROOT / "config" / "registry.toml"
_STAGE = re.compile(r"^[a-z][a-z0-9]{1,11}$")
DISPOSABLE_STAGES = frozenset({"dev"})
"""Stages whose data may be destroyed with the stack. Every other stage (prod, and any stage not listed
here) retains buckets, queues, keys, the table and log groups when the stack or a resource is deleted."""
EMAIL_TRANSPORTS = ("ses", "notify")
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)
MAX_RAW_UPLOAD_DAYS = IDEMPOTENCY_SECONDS // 86400 - 1
"""Raw uploads must expire before the ingest function forgets a file's content (its idempotency window)."""
PRODUCTION_STAGES = frozenset({"prod"})
"""Stages that refuse placeholder values: every address, link and principal they deploy must be real."""
PLACEHOLDER_TOP_LEVEL = frozenset({"example", "test", "invalid", "localhost"})
"""Top-level domains reserved for examples and tests (RFC 2606, RFC 6761)."""
DOCUMENTATION_ACCOUNT = "123456789012"
"""The account id AWS's documentation uses (and moto's default)."""
MESH_WORKFLOW_ID = re.compile(r"^[A-Za-z0-9_.-]{2,255}$")
MESH_LIST_LIMIT = 500
"""MESH lists at most this many messages a request: a run takes no more."""
MESH_SANDBOX_MAILBOXES = frozenset({"X26ABC1", "X26ABC2", "X26ABC3"})
"""The mailboxes of NHS England's mesh-sandbox (local runs and tests): never a trust's real mailbox."""


class ConfigError(ValueError):
    """A context value is missing or invalid; the message names the key and how to fix it."""


@dataclass(frozen=True)
class StageConfig:
    stage: str
    registry_path: Path = DEFAULT_REGISTRY
    email_transport: str = "ses"
    email_sender: str = "birth-notifications@example.nhs.uk"
    email_identity: str = ""
    """SES identity to create: a domain, or empty for the sender address itself."""
    consumer_guide_url: str = "https://birth-notifications.example.nhs.uk/consumer-guide"
    """Placeholder like the sender: set the real guide's address per stage."""
    notify_base_url: str = DEFAULT_NOTIFY_BASE_URL
    notify_template_id: str = ""
    """The GOV.UK Notify email template (subject ((subject)), body ((body))) when email_transport=notify."""
    raw_upload_retention_days: int = 30
    held_retention_days: int = DEFAULT_HELD_RETENTION_DAYS
    """How long the held store keeps a record nobody released or discarded (and the trace of one acted on)."""
    report_retention_days: int = 400
    access_log_retention_days: int = 400
    log_retention_days: int = 400
    ledger_retention_days: int = 2922
    """How long the sharing ledger keeps each entry: 8 years (with leap days) by default."""
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_baby_age_days: int = DEFAULT_MAX_BABY_AGE_DAYS
    ingest_memory_mb: int = 1024
    ingest_timeout_seconds: int = 600
    ingest_max_concurrency: int = 5
    notify_memory_mb: int = 256
    notify_timeout_seconds: int = 60
    digest_schedule: str = "cron(0 7 * * ? *)"
    """When the notify function sends authority digests (UTC)."""
    authority_max_message_age_days: int = 3
    """Alarm when an authority's oldest waiting record is older than this many days: it has stopped consuming,
    and SQS deletes its records after 14 (long before that cliff)."""
    held_max_message_age_hours: int = DEFAULT_HELD_MAX_AGE_HOURS
    """The notify function's daily run reminds the operators (counts only) of held records waiting longer."""
    held_reviewer_principals: tuple[str, ...] = ()
    """IAM principals (ARNs) that may assume the held-queue reviewer role; no role without them."""
    mesh_secret_name: str = ""
    """The Secrets Manager secret the stack creates for the service's MESH mailbox; <prefix>/mesh when empty."""
    mesh_file_workflow_id: str = "BIRTHNOTIFY_FILES_1"
    """MESH workflow id trusts send notification files under (registered with NHS England for the service)."""
    mesh_nems_workflow_id: str = "BIRTHNOTIFICATION_1"
    """NEMS's workflow id for PDS birth notifications (FHIR bundles)."""
    mesh_report_workflow_id: str = "BIRTHNOTIFY_REPORTS_1"
    """MESH workflow id the service sends each trust's report back under."""
    mesh_schedule: str = "rate(1 minute)"
    mesh_max_messages: int = DEFAULT_MESH_MAX_MESSAGES
    mesh_memory_mb: int = 512
    mesh_timeout_seconds: int = 600
    ledger_auditor_principals: tuple[str, ...] = ()
    """IAM principals (ARNs) of the IG leads who may assume the ledger auditor role (audit, agreements)."""

    # -- derived names --------------------------------------------------------------------------------

    @property
    def names(self) -> StageNames:
        """Names the operators' commands derive from the stage alone (birthnotify.shared.names)."""
        return StageNames(self.stage)

    @property
    def prefix(self) -> str:
        return self.names.prefix

    @property
    def stack_name(self) -> str:
        return self.names.stack_name

    def authority_stack_name(self, shard: str) -> str:
        """The stack holding one shard of the authorities (infra.shards)."""
        return f"{self.stack_name}-Authorities-{shard}"

    @property
    def authority_queue_prefix(self) -> str:
        return self.names.authority_queue_prefix

    def function_name(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def held_reviewer_role_name(self) -> str:
        """Named, so that the authority stacks' key policies can name it (it sends released records)."""
        return f"{self.prefix}-held-reviewer"

    def function_role_name(self, name: str) -> str:
        """The execution role of a function: named, so that other stacks can name it in a key policy without
        a CloudFormation export."""
        return f"{self.function_name(name)}-function"

    @property
    def mesh_secret(self) -> str:
        return self.mesh_secret_name or f"{self.prefix}/mesh"

    @property
    def alarm_topic_name(self) -> str:
        """The operators' topic: named, so that authority stacks can send their alarms to it by ARN."""
        return f"{self.prefix}-alarms"

    @property
    def retain_data(self) -> bool:
        return self.stage not in DISPOSABLE_STAGES

    @property
    def removal_policy(self) -> RemovalPolicy:
        """What deleting a stack or resource does to data: kept, except in disposable stages."""
        return RemovalPolicy.RETAIN if self.retain_data else RemovalPolicy.DESTROY

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _retention(self.log_retention_days)

    def registry(self) -> Registry:
        return load_registry(self.registry_path)

    # -- reading context ------------------------------------------------------------------------------

    @classmethod
    def from_context(cls, get: Any) -> StageConfig:
        """Build from a context getter (``node.try_get_context``); unknown keys are ignored."""
        stage = str(get("stage") or "dev")
        if not _STAGE.match(stage):
            raise ConfigError(f"context stage={stage!r}: use 2-12 lowercase letters and digits, e.g. dev or prod")
        values: dict[str, Any] = {"stage": stage}
        for name, (kind, _) in _CONTEXT_KEYS.items():
            raw = get(name)
            if raw is None or raw == "":
                continue
            try:
                values[name] = _convert(kind, raw)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"context {name}={raw!r}: expected {kind.__name__}") from exc
        if "registry_path" in values and not Path(values["registry_path"]).is_absolute():
            values["registry_path"] = ROOT / values["registry_path"]
        config = cls(**values)
        config.validate()
        return config

    def placeholders(self, registry: Registry | None = None) -> list[str]:
        """Every setting of this stage, in its context or its registry, that holds a placeholder: an address
        or link in an example domain, a principal in an invented account. One line each."""
        registry = registry if registry is not None else self.registry()
        source = f"registry {_shown(self.registry_path)}"
        settings: list[tuple[str, str]] = [
            ("context email_sender", self.email_sender),
            ("context email_identity", self.email_identity),
            ("context consumer_guide_url", self.consumer_guide_url),
            ("context notify_base_url", self.notify_base_url),
            *(("context held_reviewer_principals", arn) for arn in self.held_reviewer_principals),
            *(("context ledger_auditor_principals", arn) for arn in self.ledger_auditor_principals),
            *((f"{source} operator_emails", address) for address in registry.operator_emails),
        ]
        for trust in registry.trusts:
            settings += [(f"{source} trust {trust.ods_code} contact_emails", a) for a in trust.contact_emails]
            settings += [(f"{source} trust {trust.ods_code} uploader_principals", a) for a in trust.uploader_principals]
            if trust.mesh_mailbox:
                settings.append((f"{source} trust {trust.ods_code} mesh_mailbox", trust.mesh_mailbox))
        for authority in registry.authorities:
            where = f"{source} authority {authority.gss_code}"
            settings += [(f"{where} contact_emails", a) for a in authority.contact_emails]
            settings += [(f"{where} consumer_principals", a) for a in authority.consumer_principals]
        return [
            f"{setting}={value!r}: {why}" for setting, value in settings if value and (why := placeholder_reason(value))
        ]

    def validate(self) -> None:
        if self.stage in PRODUCTION_STAGES:
            found = self.placeholders()
            if found:
                raise ConfigError(
                    f"stage {self.stage} refuses placeholder values; give real ones (cdk.json context, --context "
                    "key=value, or a registry of your own with --context registry_path=...):\n  " + "\n  ".join(found)
                )
        if self.email_transport not in EMAIL_TRANSPORTS:
            raise ConfigError(f"context email_transport={self.email_transport!r}: choose one of {EMAIL_TRANSPORTS}")
        if self.email_transport == "notify" and not self.notify_template_id:
            raise ConfigError("context notify_template_id is required when email_transport=notify")
        if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", self.email_sender):
            raise ConfigError(f"context email_sender={self.email_sender!r} is not an email address")
        if self.email_identity and not (
            self.email_sender.endswith("@" + self.email_identity) or self.email_identity == self.email_sender
        ):
            raise ConfigError(
                f"context email_identity={self.email_identity!r} must be the sender's domain "
                f"or the sender address {self.email_sender!r}"
            )
        if not 1 <= self.raw_upload_retention_days <= MAX_RAW_UPLOAD_DAYS:
            raise ConfigError(
                f"context raw_upload_retention_days must be 1..{MAX_RAW_UPLOAD_DAYS}: uploads must "
                "expire before the ingest function forgets a file's content (35 days)"
            )
        if self.held_retention_days < self.max_baby_age_days:
            raise ConfigError(
                f"context held_retention_days must be at least max_baby_age_days ({self.max_baby_age_days}): a "
                "held record must outlive every use an agreement's purpose can make of it"
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ConfigError(f"context log_retention_days must be one of {sorted(LOG_RETENTION_DAYS)}")
        for name in (
            "report_retention_days",
            "access_log_retention_days",
            "ledger_retention_days",
            "max_file_bytes",
            "max_baby_age_days",
            "ingest_memory_mb",
            "notify_memory_mb",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"context {name} must be positive")
        if not 128 <= self.ingest_memory_mb <= 10240 or not 128 <= self.notify_memory_mb <= 10240:
            raise ConfigError("context ingest_memory_mb/notify_memory_mb must be 128..10240 (Lambda's range)")
        if not 60 <= self.ingest_timeout_seconds <= 900 or not 3 <= self.notify_timeout_seconds <= 900:
            raise ConfigError("context ingest_timeout_seconds/notify_timeout_seconds must be within Lambda's limits")
        if self.ingest_timeout_seconds * 6 > 12 * 3600:
            raise ConfigError("context ingest_timeout_seconds: six times it must fit SQS's 12-hour visibility limit")
        if not 2 <= self.ingest_max_concurrency <= 1000:
            raise ConfigError("context ingest_max_concurrency must be 2..1000 (the SQS event source's range)")
        if not 1 <= self.authority_max_message_age_days <= 10:
            raise ConfigError(
                "context authority_max_message_age_days must be 1..10: the alarm must leave days to "
                "act before SQS's 14-day retention deletes the records"
            )
        if not 1 <= self.held_max_message_age_hours <= 14 * 24:
            raise ConfigError("context held_max_message_age_hours must be 1..336: held records wait for a person")
        for name in ("mesh_file_workflow_id", "mesh_nems_workflow_id", "mesh_report_workflow_id"):
            if not MESH_WORKFLOW_ID.match(getattr(self, name)):
                raise ConfigError(
                    f"context {name}={getattr(self, name)!r} is not a MESH workflow id (2-255 letters, digits, _ . -)"
                )
        if self.mesh_file_workflow_id == self.mesh_nems_workflow_id:
            raise ConfigError(
                "context mesh_file_workflow_id and mesh_nems_workflow_id must differ: the workflow "
                "says what a message holds"
            )
        if not 1 <= self.mesh_max_messages <= MESH_LIST_LIMIT:
            raise ConfigError(f"context mesh_max_messages must be 1..{MESH_LIST_LIMIT} (what MESH lists at once)")
        if not 128 <= self.mesh_memory_mb <= 10240 or not 60 <= self.mesh_timeout_seconds <= 900:
            raise ConfigError("context mesh_memory_mb must be 128..10240 and mesh_timeout_seconds 60..900")
        if self.mesh_secret_name and not re.match(r"^[A-Za-z0-9/_+=.@-]{1,512}$", self.mesh_secret_name):
            raise ConfigError(f"context mesh_secret_name={self.mesh_secret_name!r} is not a Secrets Manager name")


def placeholder_reason(value: str) -> str | None:
    """Why a value is a placeholder, or None: an address or URL in an example or test domain (any label
    ``example``, or a reserved top-level domain), an ARN in an invented account (AWS's documentation account,
    or one digit repeated), a mailbox of the MESH sandbox."""
    if value.strip().upper() in MESH_SANDBOX_MAILBOXES:
        return f"{value.strip().upper()} is a mesh-sandbox mailbox"
    text = value.strip().lower()
    if text.startswith("arn:"):
        parts = text.split(":")
        account = parts[4] if len(parts) > 4 else ""
        if account == DOCUMENTATION_ACCOUNT or (len(account) == 12 and len(set(account)) == 1):
            return f"account {account} is an invented one"
        return None
    if "@" in text:
        domain = text.rsplit("@", 1)[1]
    elif "://" in text:
        domain = urlparse(text).hostname or ""
    else:
        domain = text
    labels = domain.strip(".").split(".")
    if "example" in labels or labels[-1] in PLACEHOLDER_TOP_LEVEL:
        return f"{domain} is an example domain"
    return None


def _shown(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _retention(days: int) -> logs.RetentionDays:
    # RetentionDays members are declared in increasing order of days (INFINITE last).
    by_days = dict(zip(sorted(LOG_RETENTION_DAYS), list(logs.RetentionDays)[: len(LOG_RETENTION_DAYS)], strict=True))
    if days not in by_days:
        raise ConfigError(f"{days} is not a CloudWatch Logs retention period: use one of {sorted(by_days)}")
    return by_days[days]


def _convert(kind: type, raw: Any) -> Any:
    if kind is tuple:
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return tuple(str(item) for item in raw)
    if kind is int:
        return int(raw)
    if kind is Path:
        return Path(str(raw))
    return kind(raw)


_CONTEXT_KEYS: dict[str, tuple[type, str]] = {
    "registry_path": (
        Path,
        "The registry file, relative to the repository (the config layer ships it and the "
        "postcode directory it names).",
    ),
    "email_transport": (str, "`ses` or `notify` (GOV.UK Notify; creates the API key secret)."),
    "email_sender": (str, "From address of every email."),
    "email_identity": (str, "SES identity to create: the sender's domain, or empty for the sender address."),
    "consumer_guide_url": (str, "Link in authority emails to the guide for consuming a queue."),
    "notify_base_url": (str, "GOV.UK Notify API base URL (email_transport=notify)."),
    "notify_template_id": (
        str,
        "GOV.UK Notify email template id, a template whose subject is ((subject)) and body ((body)); "
        "required when email_transport=notify.",
    ),
    "raw_upload_retention_days": (
        int,
        f"Days before raw uploads expire (at most {MAX_RAW_UPLOAD_DAYS}: "
        "uploads must expire before ingest forgets a file's content).",
    ),
    "held_retention_days": (
        int,
        "Days the held store keeps the trace of a record after a person released or discarded it (an open "
        "record never expires); at least max_baby_age_days.",
    ),
    "report_retention_days": (int, "Days before reports expire."),
    "access_log_retention_days": (int, "Days before S3 server access logs expire."),
    "ledger_retention_days": (int, "Days the sharing ledger keeps each entry (default 2922: 8 years)."),
    "log_retention_days": (
        int,
        "CloudWatch Logs retention of the functions' log groups (a CloudWatch period).",
    ),
    "max_file_bytes": (int, "Largest upload ingest accepts."),
    "max_baby_age_days": (int, "Oldest date of birth (days) a notification may carry."),
    "ingest_memory_mb": (int, "Memory of the ingest function."),
    "ingest_timeout_seconds": (
        int,
        "Timeout of the ingest function; its queue's visibility is six times this.",
    ),
    "ingest_max_concurrency": (int, "Maximum concurrent ingest invocations (SQS event source)."),
    "notify_memory_mb": (int, "Memory of the notify function."),
    "notify_timeout_seconds": (
        int,
        "Timeout of the notify function; its queue's visibility is six times this.",
    ),
    "digest_schedule": (str, "EventBridge schedule of the authority digests (UTC)."),
    "authority_max_message_age_days": (int, "Alarm when an authority's oldest record is older than this many days."),
    "held_max_message_age_hours": (
        int,
        "Remind the operators daily (counts only) of held records waiting longer than this.",
    ),
    "ledger_auditor_principals": (
        tuple,
        "Comma-separated IAM principal ARNs (IG leads, the DPO's team) that may assume the ledger auditor role: "
        "read the sharing ledger and its HMAC key, for `birthnotify audit` and `agreements` (no role without them).",
    ),
    "held_reviewer_principals": (
        tuple,
        "Comma-separated IAM principal ARNs that may assume the held-queue reviewer role (no role without them).",
    ),
    "mesh_secret_name": (
        str,
        "Name of the secret the stack creates for the service's MESH mailbox, endpoint and credentials "
        "(empty: `birthnotify-<stage>/mesh`); DevOps put its value (README, MESH).",
    ),
    "mesh_file_workflow_id": (str, "MESH workflow id trusts send notification files under."),
    "mesh_nems_workflow_id": (str, "MESH workflow id of NEMS PDS birth notifications (FHIR bundles)."),
    "mesh_report_workflow_id": (str, "MESH workflow id each trust's report goes back under."),
    "mesh_schedule": (str, "EventBridge schedule of the mesh function (one run at a time, whatever the rate)."),
    "mesh_max_messages": (
        int,
        f"Messages one mesh run takes at most (1..{MESH_LIST_LIMIT}); the rest wait for the next run.",
    ),
    "mesh_memory_mb": (int, "Memory of the mesh function (a message is streamed: it needs about 50 MB)."),
    "mesh_timeout_seconds": (int, "Timeout of the mesh function; no message is started in its last two minutes."),
}
CONTEXT_KEYS: dict[str, str] = {
    "stage": "Stage name (2-12 lowercase letters and digits). Names every resource; only `dev` lets data be "
    "destroyed with the stack, every other stage retains it.",
    **{name: description for name, (_, description) in _CONTEXT_KEYS.items()},
}
"""Every context key the app reads, with what it does (docs/infrastructure.md lists them with defaults)."""
