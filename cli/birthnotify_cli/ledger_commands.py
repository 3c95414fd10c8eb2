"""`birthnotify audit` (the subject-access question) and `birthnotify agreements` (the data-sharing register),
answered from the sharing ledger and the registry."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

LEDGER_BUCKET_ENV = "BIRTHNOTIFY_LEDGER_BUCKET"
LEDGER_SECRET_ENV = "BIRTHNOTIFY_LEDGER_KEY_SECRET_ID"  # noqa: S105 (a variable name)


def add_commands(
    commands: Any,
    default_registry: Path,
    run: Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]],
) -> None:
    def ledger_options(parser: argparse.ArgumentParser, *, key: bool) -> None:
        parser.add_argument(
            "--ledger-bucket",
            default=os.environ.get(LEDGER_BUCKET_ENV),
            help=f"the stack's LedgerBucketName output (default: ${LEDGER_BUCKET_ENV})",
        )
        if key:
            parser.add_argument(
                "--key-secret-id",
                default=os.environ.get(LEDGER_SECRET_ENV),
                help=f"the stack's LedgerKeySecretId output (default: ${LEDGER_SECRET_ENV})",
            )
        parser.add_argument("--registry", type=Path, default=default_registry)
        parser.add_argument("--endpoint-url", default=None, help="e.g. the local cloud's URL")

    audit = commands.add_parser(
        "audit",
        help="every disclosure of a baby's (or mother's) record, from the sharing ledger",
        description="Answer a subject access request: every council that received the record of the baby with "
        "this NHS number (with --mother: of the mother), when, under which agreement and purpose, and which "
        "fields; and any withholding or hold. Exit code 0 with an empty answer when there is none. The NHS "
        "number is hashed with the ledger key here; it is never sent anywhere.",
    )
    audit.add_argument("--nhs-number", required=True)
    audit.add_argument("--mother", action="store_true", help="the NHS number is the mother's")
    audit.add_argument("--since", type=date.fromisoformat, default=None, help="only entries from this day")
    audit.add_argument("--format", choices=("table", "json"), default="table")
    audit.add_argument(
        "--hash-only",
        action="store_true",
        help="print the keyed hash that stands for the NHS number (to query Athena) and stop",
    )
    ledger_options(audit, key=True)
    audit.set_defaults(run=run(_audit))

    agreements = commands.add_parser(
        "agreements",
        help="the data-sharing register: every agreement, its dates and records shared",
        description="Every sharing agreement in the registry with its council, purpose, fields, valid from and "
        "to, days left, and (with a ledger bucket) the number of records shared under it.",
    )
    agreements.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    agreements.add_argument("--as-of", type=date.fromisoformat, default=None, help="count days left from this day")
    ledger_options(agreements, key=False)
    agreements.set_defaults(run=run(_agreements))


class LedgerAccessError(Exception):
    """The ledger or its key cannot be read; the message says which."""


def _s3_ledger(args: argparse.Namespace) -> Any:
    import boto3
    from birthnotify.adapters.ledger import S3Ledger

    if not args.ledger_bucket:
        raise LedgerAccessError(f"no ledger bucket: give --ledger-bucket or set {LEDGER_BUCKET_ENV}")
    return S3Ledger(boto3.client("s3", endpoint_url=args.endpoint_url), args.ledger_bucket)


def _audit(args: argparse.Namespace, registry: Any) -> int:
    import boto3
    from birthnotify.adapters.ledger import ledger_key
    from birthnotify.application.ledger import SubjectHasher, audit
    from birthnotify.domain.record import nhs_number_checksum_ok
    from botocore.exceptions import BotoCoreError, ClientError

    nhs_number = "".join(ch for ch in args.nhs_number if ch not in " -")
    if not (len(nhs_number) == 10 and nhs_number.isdigit() and nhs_number_checksum_ok(nhs_number)):
        print("the NHS number must be 10 digits with a valid check digit", file=sys.stderr)
        return 2
    if not args.key_secret_id:
        raise LedgerAccessError(f"no ledger key: give --key-secret-id or set {LEDGER_SECRET_ENV}")
    try:
        key = ledger_key(boto3.client("secretsmanager", endpoint_url=args.endpoint_url), args.key_secret_id)
        if args.hash_only:
            print(SubjectHasher(key).of(nhs_number))
            return 0
        lines = audit(_s3_ledger(args), SubjectHasher(key), registry, nhs_number, mother=args.mother, since=args.since)
    except (BotoCoreError, ClientError) as exc:
        raise LedgerAccessError(f"cannot read the ledger or its key: {exc}") from None
    if args.format == "json":
        print(json.dumps([line.as_json() for line in lines], indent=2))
        return 0
    for text in audit_text(lines, mother=args.mother):
        print(text)
    return 0


def audit_text(lines: list[Any], *, mother: bool = False) -> list[str]:
    """The answer to a subject access request as ``birthnotify audit`` prints it (``lines``: AuditLine)."""
    whose = "mother" if mother else "baby"
    if not lines:
        return [f"No ledger entry for this {whose}'s NHS number: the record was never received or shared."]
    shared = [line for line in lines if line.fields_shared or line.outcome.value == "MOVED_OUT"]
    entries = "1 ledger entry" if len(lines) == 1 else f"{len(lines)} ledger entries"
    text = [f"{entries} for this {whose}'s NHS number; {len(shared)} disclosed something to a council.", ""]
    for line in lines:
        text.append(
            f"{line.when:%Y-%m-%d %H:%M} UTC  {line.outcome.value}"
            + (f" ({line.reason})" if line.reason else "")
            + f"  trust {line.trust_ods_code}, notification {line.notification_id} ({line.notification_type.value})"
        )
        if line.council_gss_code:
            text.append(f"    council: {line.council_name or '?'} ({line.council_gss_code})")
        if line.agreement_id:
            text.append(
                f"    agreement: {line.agreement_id}"
                + (f"; purpose: {line.purpose}" if line.purpose else " (no longer in the registry)")
            )
        if line.fields_shared:
            text.append(f"    fields shared: {', '.join(line.fields_shared)}")
    return text


def _agreements(args: argparse.Namespace, registry: Any) -> int:
    from birthnotify.application.ledger import records_per_agreement
    from birthnotify.shared.clock import london_day, utc_now
    from botocore.exceptions import BotoCoreError, ClientError

    today = args.as_of or london_day(utc_now())
    counts = None
    if args.ledger_bucket:
        try:
            counts = records_per_agreement(_s3_ledger(args))
        except (BotoCoreError, ClientError) as exc:
            raise LedgerAccessError(f"cannot read the ledger: {exc}") from None
    else:
        print(
            f"(no ledger bucket given: records shared are not counted; see --ledger-bucket or {LEDGER_BUCKET_ENV})",
            file=sys.stderr,
        )
    header, rows = agreements_register(registry, today, counts)
    for text in register_text(header, rows, args.format):
        print(text)
    return 0


REGISTER_HEADER = [
    "council",
    "gss_code",
    "agreement_id",
    "purpose",
    "fields",
    "valid_from",
    "valid_to",
    "days_left",
    "records_shared",
]


def agreements_register(registry: Any, today: date, counts: Any) -> tuple[list[str], list[list[str]]]:
    """The data-sharing register: a row per agreement (``counts``: records shared per agreement id, or None
    when the ledger was not read)."""
    rows = []
    for authority in sorted(registry.authorities, key=lambda a: a.name):
        for agreement in sorted(authority.agreements, key=lambda a: a.valid_from):
            days_left = "" if agreement.valid_to is None else str((agreement.valid_to - today).days)
            rows.append(
                [
                    authority.name,
                    authority.gss_code,
                    agreement.id,
                    agreement.purpose,
                    " ".join(sorted(agreement.allowed_fields)),
                    agreement.valid_from.isoformat(),
                    agreement.valid_to.isoformat() if agreement.valid_to else "open-ended",
                    days_left,
                    "" if counts is None else str(counts.get(agreement.id, 0)),
                ]
            )
    return list(REGISTER_HEADER), rows


def register_text(header: list[str], rows: list[list[str]], form: str = "table") -> list[str]:
    """The register as ``birthnotify agreements --format`` prints it: table, markdown or csv."""
    if form == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *rows])
        return out.getvalue().splitlines()
    if form == "markdown":
        return [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
        ]
    shown = [h for h in header if h not in ("purpose", "fields")]
    table = [[row[header.index(h)] for h in shown] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(shown)]
    return [
        "  ".join(h.ljust(w) for h, w in zip(shown, widths, strict=True)),
        *("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table),
    ]
