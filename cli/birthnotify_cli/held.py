"""`birthnotify held list|release|discard|actions` (the held reviewer role) and `birthnotify redeliver`
(operators): the application's use cases, wired to AWS by the stage's resource names, and what they print.

Nothing printed here holds personal data, except ``held list --show``: the trust's ids and the postcode of
each record, what a reviewer needs to find the family's council.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from birthnotify.adapters.held import DynamoHeldStore
from birthnotify.adapters.ledger import S3Ledger, ledger_key
from birthnotify.adapters.progress import DynamoProgressStore
from birthnotify.adapters.s3 import S3ProcessedFiles
from birthnotify.adapters.sqs import BatchSender, SqsEvents, SqsQueues
from birthnotify.application.held import ActionOutcome, HeldReview, Overview
from birthnotify.application.ledger import ActionLedger, SubjectHasher
from birthnotify.application.redeliver import Redelivery, RedeliveryOutcome
from birthnotify.domain.held import HeldAction, RecordOutcome
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.registry import Registry
from birthnotify.shared.clock import utc_now
from birthnotify.shared.names import StageNames

from birthnotify_cli.ledger_commands import LEDGER_BUCKET_ENV, LEDGER_SECRET_ENV


@dataclass(frozen=True)
class Clients:
    """The AWS clients a command uses, all from one session (the caller's role)."""

    dynamodb: Any
    sqs: Any
    sts: Any
    s3: Any = None
    endpoint_url: str | None = None
    secrets: Any = None
    cloudformation: Any = None

    @classmethod
    def from_session(cls, session: Any, endpoint_url: str | None = None) -> Clients:
        return cls(
            *(session.client(service, endpoint_url=endpoint_url) for service in ("dynamodb", "sqs", "sts", "s3")),
            endpoint_url,
            session.client("secretsmanager", endpoint_url=endpoint_url),
            session.client("cloudformation", endpoint_url=endpoint_url),
        )

    def stack_output(self, names: StageNames, output: str) -> str:
        """An output of the stage's core stack (e.g. a bucket's generated name)."""
        import boto3

        cloudformation = self.cloudformation or boto3.client("cloudformation", endpoint_url=self.endpoint_url)
        [stack] = cloudformation.describe_stacks(StackName=names.stack_name)["Stacks"]
        for found in stack.get("Outputs", []):
            if found["OutputKey"] == output:
                return str(found["OutputValue"])
        raise LookupError(f"the stack {names.stack_name} has no output {output}")

    def caller(self) -> str:
        """Who is acting, as AWS knows them: recorded with every action."""
        return str(self.sts.get_caller_identity()["Arn"])


def action_ledger(clients: Clients, names: StageNames) -> ActionLedger:
    """The sharing ledger an action writes its entries to: the bucket and key secret from
    $BIRTHNOTIFY_LEDGER_BUCKET and $BIRTHNOTIFY_LEDGER_KEY_SECRET_ID, else the stack's outputs."""
    import boto3

    bucket = os.environ.get(LEDGER_BUCKET_ENV) or clients.stack_output(names, "LedgerBucketName")
    secret_id = os.environ.get(LEDGER_SECRET_ENV) or clients.stack_output(names, "LedgerKeySecretId")
    secrets = clients.secrets or boto3.client("secretsmanager", endpoint_url=clients.endpoint_url)
    s3 = clients.s3 or boto3.client("s3", endpoint_url=clients.endpoint_url)
    return ActionLedger(S3Ledger(s3, bucket), SubjectHasher(ledger_key(secrets, secret_id)), utc_now)


def review(
    clients: Clients,
    names: StageNames,
    registry: Registry,
    postcodes: PostcodeDirectory | None = None,
    *,
    actor: str | None = None,
    with_events: bool | None = None,
    clock: Any = None,
) -> HeldReview:
    """The reviewers' use cases over the stage's held store; releasing and discarding tell the notify function
    (through the file-events queue), listing does not."""
    sqs = clients.sqs
    with_events = postcodes is not None if with_events is None else with_events
    events_url = sqs.get_queue_url(QueueName=names.file_events_queue)["QueueUrl"] if with_events else None
    return HeldReview(
        store=DynamoHeldStore(clients.dynamodb, names.held_table),
        registry=registry,
        actor=actor or clients.caller(),
        postcodes=postcodes,
        sender=lambda on_accepted: BatchSender(sqs, on_accepted),
        queues=SqsQueues(sqs, names.authority_queue_prefix),
        events=SqsEvents(sqs, events_url) if events_url else None,
        **({"clock": clock} if clock else {}),
        ledger=action_ledger(clients, names) if with_events else None,
    )


def redelivery(
    clients: Clients,
    names: StageNames,
    registry: Registry,
    postcodes: PostcodeDirectory,
    reports_bucket: str | None = None,
    *,
    actor: str | None = None,
) -> Redelivery:
    """Re-delivery over the stage's reports, uploads, progress and authority queues; the action is recorded in
    the held store's action log."""
    sqs = clients.sqs
    return Redelivery(
        files=S3ProcessedFiles(clients.s3, reports_bucket or clients.stack_output(names, "ReportsBucketName")),
        registry=registry,
        postcodes=postcodes,
        progress=DynamoProgressStore(clients.dynamodb, names.state_table),
        sender=lambda on_accepted: BatchSender(sqs, on_accepted),
        queues=SqsQueues(sqs, names.authority_queue_prefix),
        actions=DynamoHeldStore(clients.dynamodb, names.held_table),
        actor=actor or clients.caller(),
        ledger=action_ledger(clients, names),
    )


def redelivery_lines(outcome: RedeliveryOutcome) -> list[str]:
    verb = "would be" if outcome.dry_run else "was" if outcome.sent == 1 else "were"
    lines = [
        f"{outcome.sent} record{'s' if outcome.sent != 1 else ''} {verb} re-delivered from "
        f"{len(outcome.files)} file{'s' if len(outcome.files) != 1 else ''}:"
    ]
    for file in outcome.files:
        status = f"not re-delivered: {file.problem}" if file.problem else f"{file.sent} of {file.expected}"
        lines.append(f"  {file.trust_ods_code} {file.sha256[:12]} {file.key.rsplit('/', 1)[-1]}: {status}")
    if not outcome.dry_run:
        action = outcome.action
        lines.append(
            f"action {action.action_id} recorded: by {action.actor} at {action.at:%Y-%m-%d %H:%M:%S %Z}, "
            f"why: {action.why}"
        )
    return lines


def days(age: timedelta) -> str:
    return f"{age.total_seconds() / 86400:.1f} days"


def overview_lines(overview: Overview, table: str) -> list[str]:
    if not overview.total:
        return [f"no held records waiting in {table}"]
    lines = [
        f"{overview.total} held record{'s' if overview.total != 1 else ''} waiting in {table}; the oldest "
        f"for {days(overview.oldest or timedelta())}"
        + (
            f" ({overview.releasing} claimed by a release that has not finished: run the release again)"
            if overview.releasing
            else ""
        ),
        "",
        "by reason:",
    ]
    lines += [
        f"  {count:>6}  {reason.value}{' ' + council if council else ''}"
        for (reason, council), count in sorted(overview.by_reason.items(), key=lambda i: (-i[1], i[0][0]))
    ]
    lines += ["", "by council:"]
    lines += [f"  {count:>6}  {council}" for council, count in overview.by_council.most_common()]
    lines += ["", "by age:"]
    from birthnotify.domain.held import AGE_BANDS, OLDEST_BAND

    lines += [
        f"  {overview.by_age[band]:>6}  {band}"
        for band in [*(b for b, _ in AGE_BANDS), OLDEST_BAND]
        if overview.by_age[band]
    ]
    lines += ["", "by file (trust, content reference):"]
    lines += [f"  {count:>6}  {trust} {reference}" for (trust, reference), count in overview.by_file.most_common()]
    return lines


def outcome_lines(outcome: ActionOutcome) -> list[str]:
    action = outcome.action
    count = outcome.released_total if action.kind.value == "release" else outcome.discarded
    verb = "would be" if outcome.dry_run else "was" if count == 1 else "were"
    lines = []
    if action.kind.value == "release":
        lines.append(f"{outcome.released_total} record{'s' if outcome.released_total != 1 else ''} {verb} released:")
        lines += [
            f"  {c.total:>6}  {c.name} ({c.gss_code}) under agreement {c.agreement_id}: {c.new} new, "
            f"{c.amend} amended, {c.cancel} cancelled"
            for c in outcome.released.values()
        ]
        if outcome.still_held:
            lines.append(
                f"{sum(outcome.still_held.values())} still held (re-routed today, still no council with an "
                "agreement in force):"
            )
            lines += [f"  {count:>6}  {reason}" for reason, count in outcome.still_held.most_common()]
    else:
        lines.append(
            f"{outcome.discarded} record{'s' if outcome.discarded != 1 else ''} {verb} discarded: they "
            "will never be shared"
        )
    if outcome.taken:
        lines.append(f"{outcome.taken} taken by another reviewer's action first: left to it")
    if outcome.not_sent:
        lines.append(f"{outcome.not_sent} not accepted by SQS: still held, run the release again")
    if not outcome.dry_run:
        lines.append(
            f"action {action.action_id} recorded: by {action.actor} at {action.at:%Y-%m-%d %H:%M:%S %Z}, "
            f"why: {action.why}"
        )
        if outcome.events:
            lines.append(
                f"the trust{'s' if len({e.trust_ods_code for e in outcome.events}) > 1 else ''} and "
                f"operators are told by email ({len(outcome.events)} file"
                f"{'s' if len(outcome.events) != 1 else ''}, counts only)"
            )
    return lines


def action_lines(actions: list[HeldAction]) -> list[str]:
    lines = []
    for action in actions:
        counts = ", ".join(f"{count} {outcome.value}" for outcome, count in action.counts().items()) or "nothing"
        chosen = " ".join(f"--{k} {v}" for k, v in action.selection.items())
        unfinished = "" if action.complete else " (did not finish)"
        lines.append(
            f"{action.at:%Y-%m-%d %H:%M:%S} {action.action_id} {action.kind.value} by {action.actor}"
            f"{unfinished}: {counts}; {chosen or 'all'}; why: {action.why}"
        )
        for record in action.records:
            if record.outcome in (RecordOutcome.RELEASED, RecordOutcome.DISCARDED, RecordOutcome.REDELIVERED):
                where = f" to {record.authority_gss_code} ({record.agreement_id})" if record.authority_gss_code else ""
                lines.append(
                    f"    {record.trust_ods_code} {record.sha256[:12]} row {record.row} "
                    f"{record.notification_id or ''} {record.outcome.value}{where}"
                )
    return lines


def since(value: str) -> datetime:
    from datetime import UTC, date

    day = date.fromisoformat(value)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
