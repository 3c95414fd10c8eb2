"""`birthnotify`: the command line for trusts (validate), authorities (consume), testers (generate, mesh send and
receive against the local MESH sandbox), the held reviewers (held) and the team (redeliver, demo, local serve,
contracts, registry check, postcodes build).

Exit codes: 0 success; 1 some rows or messages were not accepted; 2 usage error; 3 the file was
rejected as a whole; 4 configuration error (registry, postcode directory, AWS access).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from birthnotify_cli.ledger_commands import add_commands as add_ledger_commands

EXIT_OK, EXIT_ROWS, EXIT_USAGE, EXIT_FILE, EXIT_CONFIG = 0, 1, 2, 3, 4
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REGISTRY = ROOT / "config" / "registry.toml"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="birthnotify", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check a file against the upload contract, offline",
        description="Check a notification file before uploading it: prints the same "
        "per-row errors and outcome counts the pipeline would report. Nothing is sent.",
    )
    validate.add_argument("file", type=Path)
    validate.add_argument("--trust", required=True, help="your trust's ODS code (the upload folder)")
    validate.add_argument(
        "--upload-day",
        type=date.fromisoformat,
        default=None,
        help="judge dates as if uploaded on this day (default: today)",
    )
    validate.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.set_defaults(run=_validate)

    consume = commands.add_parser(
        "consume",
        help="receive an authority's records into a CSV or JSONL file",
        description="Long-poll an authority's queue and append its records to a file. "
        "Messages are deleted only after the file is written and synced; safe to "
        "interrupt and re-run (no loss, no duplicates).",
    )
    consume.add_argument("--queue-url", required=True)
    consume.add_argument("--output", type=Path, required=True, help="file to append to (.csv or .jsonl)")
    consume.add_argument("--format", choices=("csv", "jsonl"), default=None, help="default: from --output")
    consume.add_argument("--wait", type=int, default=20, help="long-poll seconds (default 20)")
    consume.add_argument("--follow", action="store_true", help="keep polling until interrupted")
    consume.add_argument("--endpoint-url", default=None, help="e.g. the local cloud's URL")
    consume.set_defaults(run=_consume)

    generate = commands.add_parser(
        "generate",
        help="write a synthetic notification file (or bundles)",
        description="Invented people, NHS numbers from the 999 test range. As FHIR "
        "bundles (one birth notification per file): with --rows 1 and an OUTPUT named "
        ".xml or .json (optionally .gz), that file; otherwise OUTPUT is a directory of "
        "<notification id>.xml|.json files.",
    )
    generate.add_argument("output", type=Path, help=".csv, .jsonl, .xml, .json (optionally .gz), or a directory")
    generate.add_argument(
        "--format", choices=("csv", "jsonl", "fhir-xml", "fhir-json"), default=None, help="default: from OUTPUT's name"
    )
    generate.add_argument("--rows", type=int, default=None, help="default 1000 rows, or 1 bundle")
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--upload-day", type=date.fromisoformat, default=None)
    generate.add_argument("--invalid", type=float, default=0.05, help="share of rows with an error")
    generate.add_argument("--withheld", type=float, default=0.03)
    generate.add_argument("--held", type=float, default=0.02)
    generate.add_argument("--amend-cancel", type=float, default=0.03)
    generate.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    generate.set_defaults(run=_generate)

    contracts = commands.add_parser("contracts", help="generate the data contracts from the models")
    mode = contracts.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="DIR")
    mode.add_argument("--check", type=Path, metavar="DIR")
    contracts.set_defaults(run=_contracts)

    registry = commands.add_parser("registry", help="check the registry file")
    registry.add_argument("action", choices=("check",))
    registry.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    registry.set_defaults(run=_registry_check)

    postcodes = commands.add_parser("postcodes", help="build or query the postcode index")
    postcode_commands = postcodes.add_subparsers(metavar="ACTION")
    build = postcode_commands.add_parser(
        "build",
        help="index an ONS postcode directory CSV (NSPL or ONSPD)",
        description="Turn an ONS postcode directory release (NSPL or ONSPD CSV, any release: column names from "
        "the registry's [postcode_directory]) into the compact index the ingest function maps into memory.",
    )
    build.add_argument("source", type=Path, help="the directory CSV")
    build.add_argument("--output", type=Path, required=True, help="the index to write, e.g. build/postcodes.idx")
    build.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    build.set_defaults(run=_postcodes_build)
    lookup = postcode_commands.add_parser("lookup", help="where postcodes route, by the registry's directory")
    lookup.add_argument("postcode", nargs="+")
    lookup.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    lookup.add_argument(
        "--directory", type=Path, default=None, help="a directory CSV or index (default: the one the registry names)"
    )
    lookup.set_defaults(run=_postcodes_lookup)

    _held_parser(commands)

    redeliver = commands.add_parser(
        "redeliver",
        help="re-forward a council's records from the files still held in the service",
        description="After a council's queue lost records (unconsumed for 14 days, purged, a broken consumer): "
        "re-forwards the council's records of the selected processed files whose uploads are still kept (raw "
        "uploads: 30 days by default), routed as on each file's processing day, under the agreement then in force, "
        "with the message and deduplication ids of the first send. A file whose routing today differs from its "
        "report is refused and named. `birthnotify consume` writes each notification once, so a record the "
        "council already has is harmless. Run as the held reviewer role; the action is recorded.",
    )
    redeliver.add_argument("--authority", required=True, metavar="GSS", help="the council whose records to re-send")
    which = redeliver.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--file",
        default=None,
        metavar="REF",
        help="one file: its key, its name, or its content reference (8+ hex digits of its SHA-256)",
    )
    which.add_argument(
        "--since",
        type=date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="every file processed on or after this day",
    )
    redeliver.add_argument("--why", default="the council's queue lost records", help="recorded with the action")
    redeliver.add_argument(
        "--registry",
        type=Path,
        default=DEFAULT_REGISTRY,
        help="the registry now deployed (its postcode directory beside it)",
    )
    redeliver.add_argument("--reports-bucket", default=None, help="default: the core stack's ReportsBucketName output")
    redeliver.add_argument("--dry-run", action="store_true", help="say what would be re-sent; send nothing")
    redeliver.add_argument("--stage", default=None, help="the deployment's stage (default: $BIRTHNOTIFY_STAGE)")
    redeliver.add_argument("--endpoint-url", default=None, help="e.g. the local cloud's URL")
    redeliver.set_defaults(run=_redeliver)

    add_ledger_commands(commands, DEFAULT_REGISTRY, _with_registry)

    demo = commands.add_parser("demo", help="run the whole pipeline on the embedded local cloud")
    demo.add_argument("--rows", type=int, default=600)
    demo.add_argument("--output", type=Path, default=Path("demo-output"))
    demo.add_argument(
        "--no-iam-enforcement",
        dest="enforce_iam",
        action="store_false",
        help="accept any credentials (IAM is enforced by default, as in AWS)",
    )
    demo.set_defaults(run=_demo)

    mesh = commands.add_parser(
        "mesh",
        help="send a file to, or receive messages from, the local MESH sandbox",
        description="A trust's MESH client, for the local cloud's mesh-sandbox (make serve "
        "prints its URL): the sandbox's mailboxes and password, its shared key. A real "
        "MESH mailbox needs the trust's own MESH client and certificate.",
    )
    mesh_commands = mesh.add_subparsers(metavar="ACTION")
    send = mesh_commands.add_parser("send", help="send a file from a mailbox")
    send.add_argument("file", type=Path)
    send.add_argument("--url", required=True, help="the sandbox's URL")
    send.add_argument("--from", dest="sender", default="X26ABC2", help="the sending mailbox (RX2's: X26ABC2)")
    send.add_argument("--to", dest="recipient", default="X26ABC1", help="the service's mailbox (X26ABC1)")
    send.add_argument("--workflow", default="BIRTHNOTIFY_FILES_1")
    send.add_argument("--local-id", default=None, help="your own reference for the message")
    send.set_defaults(run=_mesh_send)
    receive = mesh_commands.add_parser("receive", help="save (and acknowledge) a mailbox's messages")
    receive.add_argument("--url", required=True, help="the sandbox's URL")
    receive.add_argument("--mailbox", default="X26ABC2")
    receive.add_argument("--workflow", default="BIRTHNOTIFY_REPORTS_1")
    receive.add_argument("--output", type=Path, required=True, help="directory to save each message in")
    receive.set_defaults(run=_mesh_receive)

    local = commands.add_parser("local", help="the local cloud (moto)")
    local_commands = local.add_subparsers(metavar="ACTION")
    serve = local_commands.add_parser("serve", help="deploy and leave running for the AWS CLI and boto3")
    serve.add_argument("--port", type=int, default=4566)
    serve.add_argument(
        "--no-iam-enforcement",
        dest="enforce_iam",
        action="store_false",
        help="accept any credentials (IAM is enforced by default, as in AWS)",
    )
    serve.add_argument(
        "--retry-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="retry a failed message after SECONDS instead of its queue's visibility timeout "
        "(an hour for ingest, as in Lambda)",
    )
    serve.set_defaults(run=_serve)
    return parser


def _held_parser(commands: argparse._SubParsersAction) -> None:
    from birthnotify.domain.messages import HeldReason

    reasons = [reason.value for reason in HeldReason]
    held = commands.add_parser(
        "held",
        help="review held records: list, release, discard (the held reviewer role)",
        description="Records the pipeline could not forward wait in the held store until a reviewer releases or "
        "discards them. Run with the held reviewer role's credentials; every action is recorded with the caller's "
        "identity, and the trust and operators are told (counts only).",
    )
    actions = held.add_subparsers(metavar="ACTION")

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--stage", default=None, help="the deployment's stage (default: $BIRTHNOTIFY_STAGE)")
        parser.add_argument("--endpoint-url", default=None, help="e.g. the local cloud's URL")

    def selection(parser: argparse.ArgumentParser, reason_flag: str) -> None:
        parser.add_argument(
            reason_flag,
            dest="reasons",
            action="append",
            choices=reasons,
            default=[],
            metavar="REASON",
            help=f"only records held for this reason (repeatable): {', '.join(reasons)}",
        )
        parser.add_argument(
            "--file",
            default=None,
            metavar="REF",
            help="only records of this file: its key, its name, or its content reference (8+ hex "
            "digits of its SHA-256, as the emails quote it)",
        )
        parser.add_argument(
            "--row",
            dest="rows",
            action="append",
            type=int,
            default=[],
            metavar="N",
            help="only this row of the file (repeatable)",
        )

    listing = actions.add_parser(
        "list", help="count held records by reason, council and age", description="Counts only, unless --show."
    )
    common(listing)
    selection(listing, "--reason")
    listing.add_argument("--authority", default=None, metavar="GSS", help="only records held for this council")
    listing.add_argument(
        "--show",
        action="store_true",
        help="one line per record: the trust's ids and the postcode (personal data: only what a "
        "reviewer needs to find the family's council)",
    )
    listing.set_defaults(run=_held_list)

    release = actions.add_parser(
        "release",
        help="re-route held records with the current registry and forward those that now can go",
        description="Re-routes the selected records today, with the current registry and postcode directory (after "
        "an agreement is signed, or a council added), and forwards those that now have a council and an agreement "
        "in force, with the same message and deduplication ids a first send would have had. The others stay held.",
    )
    common(release)
    selection(release, "--reason")
    release.add_argument("--authority", default=None, metavar="GSS", help="only records that now go to this council")
    release.add_argument(
        "--why", default="re-routed with the current registry and postcode directory", help="recorded with the action"
    )
    release.add_argument("--dry-run", action="store_true", help="say what would be released; change nothing")
    release.add_argument(
        "--registry",
        type=Path,
        default=DEFAULT_REGISTRY,
        help="the registry now deployed (its postcode directory beside it)",
    )
    release.set_defaults(run=_held_release)

    discard = actions.add_parser(
        "discard",
        help="delete held records that must not be shared",
        description="Deletes the selected records from the held store: they are never "
        "shared. Say which (at least one of --file, --held-reason, --authority, --row) "
        "and why.",
    )
    common(discard)
    discard.add_argument(
        "--reason",
        dest="why",
        required=True,
        metavar="TEXT",
        help="why they must not be shared (recorded; never emailed)",
    )
    selection(discard, "--held-reason")
    discard.add_argument("--authority", default=None, metavar="GSS", help="only records held for this council")
    discard.add_argument("--dry-run", action="store_true", help="say what would be discarded; change nothing")
    discard.set_defaults(run=_held_discard)

    history = actions.add_parser("actions", help="what reviewers did: who, when, what, why, which records")
    common(history)
    history.add_argument("--since", default=None, metavar="YYYY-MM-DD", help="default: 30 days ago")
    history.set_defaults(run=_held_actions)


class ConfigurationError(Exception):
    """The registry or postcode directory cannot be used; the message says which and why."""


def _with_registry(command):
    """A ledger command, given the registry it names; a ledger it cannot read is a configuration error."""
    from birthnotify_cli.ledger_commands import LedgerAccessError

    def run(args: argparse.Namespace) -> int:
        registry = _load_registry(args.registry)
        try:
            return command(args, registry)
        except LedgerAccessError as exc:
            raise ConfigurationError(str(exc)) from None

    return run


def _load_registry(path: Path):
    from birthnotify.domain.registry import load_registry

    try:
        return load_registry(path)
    except ValueError as exc:  # RegistryError
        raise ConfigurationError(str(exc)) from None


def _load_postcodes(path: Path, registry):
    from birthnotify.domain.postcodes import PostcodeDirectory

    try:
        return PostcodeDirectory.load(path, registry.postcode_directory)
    except (ValueError, OSError) as exc:  # PostcodeDirectoryError is a ValueError
        raise ConfigurationError(f"postcode directory {path}: {exc}") from None


def _load_registry_and_postcodes(path: Path):
    registry = _load_registry(path)
    return registry, _load_postcodes(path.parent / registry.postcode_directory.file, registry)


def _validate(args: argparse.Namespace) -> int:
    from birthnotify.application.offline import check_file
    from birthnotify.shared.clock import london_day

    registry, postcodes = _load_registry_and_postcodes(args.registry)
    if not args.file.is_file():
        print(f"{args.file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    if registry.trust(args.trust) is None:
        print(
            f"{args.trust}: not a registered trust ODS code; registered: "
            f"{', '.join(t.ods_code for t in registry.trusts)}",
            file=sys.stderr,
        )
        return EXIT_FILE
    from datetime import UTC, datetime

    upload_day = args.upload_day or london_day(datetime.now(UTC))
    result = check_file(
        args.file, trust_ods_code=args.trust, registry=registry, postcodes=postcodes, upload_day=upload_day
    )
    if args.json:
        print(
            json.dumps(
                {
                    "file_error": {"code": result.rejection.code.value, "message": result.rejection.message}
                    if result.rejection
                    else None,
                    "outcome": result.outcome.model_dump(mode="json"),
                    "errors": [error.model_dump(mode="json") for error in result.errors],
                    "warnings": [warning.model_dump(mode="json") for warning in result.warnings],
                    "ignored_columns": result.ignored_columns,
                    "ignored_names_not_listed": result.ignored_names_not_listed,
                },
                indent=2,
            )
        )
    elif result.rejection:
        print(
            f"{args.file}: the whole file would be rejected [{result.rejection.code.value}]: {result.rejection.message}"
        )
    else:
        _print_outcome(args.file, result)
    for row, error in result.unexpected:
        print(
            f"row {row}: could not be processed ({error}): a fault in this tool, not in the row; the pipeline "
            "would reject it as ROW_UNPROCESSABLE. Please tell the service's operators.",
            file=sys.stderr,
        )
    if result.rejection:
        return EXIT_FILE
    return EXIT_ROWS if result.outcome.rejected else EXIT_OK


def _print_outcome(path: Path, result) -> None:
    outcome = result.outcome
    print(
        f"{path}: {outcome.rows_in} rows: {outcome.forwarded} to forward, {outcome.rejected} rejected, "
        f"{outcome.withheld} withheld, {outcome.held} held"
    )
    if outcome.rows_with_warnings:
        print(f"  {outcome.rows_with_warnings} accepted with an invalid optional field left out (warnings below)")
    for authority in outcome.authorities:
        print(
            f"  {authority.name} ({authority.gss_code}, agreement {authority.agreement_id}): "
            f"{authority.new} new, {authority.amend} amended, {authority.cancel} cancelled"
        )
    for reason, count in outcome.withheld_by_reason.items():
        print(f"  withheld, {reason.value}: {count}")
    for held in outcome.held_by_reason:
        print(
            f"  held, {held.reason.value}{' (' + held.authority_name + ')' if held.authority_name else ''}: "
            f"{held.count}"
        )
    if result.ignored_columns:
        print(f"  columns not in the contract (ignored): {', '.join(result.ignored_columns)}")
    for title, problems in (
        ("rejected rows", result.errors),
        ("warnings (the row is accepted without the field)", result.warnings),
    ):
        if problems:
            print(
                f"\n{title}:\nrow  notification_id       field                     code                        message"
            )
            for problem in problems:
                print(
                    f"{problem.row:<4} {problem.notification_id or '':<21} {problem.field or '':<25} "
                    f"{problem.code.value:<27} {problem.message}"
                )


def _consume(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from birthnotify_cli.consume import consume

    fmt = args.format or ("jsonl" if args.output.suffix.lower() == ".jsonl" else "csv")
    sqs = boto3.client("sqs", endpoint_url=args.endpoint_url)

    def progress(stats) -> None:
        print(
            f"\rreceived {stats.received}, written {stats.written}, already written {stats.already_written}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    try:
        stats = consume(
            sqs, args.queue_url, args.output, fmt, wait_seconds=args.wait, follow=args.follow, progress=progress
        )
    except (BotoCoreError, ClientError) as exc:
        print(f"\ncannot read the queue: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"\n{stats.written} records written to {args.output}; {stats.deleted} messages deleted", file=sys.stderr)
    if stats.unreadable:
        print(f"{stats.unreadable} messages were not birth notifications and were left on the queue", file=sys.stderr)
        return EXIT_ROWS
    return EXIT_OK


def _generate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from birthnotify.shared.clock import london_day

    from birthnotify_cli.synthetic import (
        BUNDLE_FORMATS,
        Mix,
        SyntheticRows,
        load_postcodes_by_district,
        write_bundles,
        write_file,
    )

    fmt = args.format or _format_of(args.output)
    if fmt is None:
        print(f"{args.output}: name it .csv, .jsonl, .xml or .json (optionally .gz), or give --format", file=sys.stderr)
        return EXIT_USAGE
    bundles = fmt in BUNDLE_FORMATS
    rows = args.rows if args.rows is not None else 1 if bundles else 1000
    if not bundles and _format_of(args.output) != fmt:
        print(f"{args.output}: a {fmt} file's name ends in .{fmt} (optionally .gz)", file=sys.stderr)
        return EXIT_USAGE
    registry = _load_registry(args.registry)
    postcodes = load_postcodes_by_district(args.registry.parent / registry.postcode_directory.file)
    unserved = tuple(d for d in postcodes if registry.authority(d) is None)
    generator = SyntheticRows(
        postcodes,
        args.upload_day or london_day(datetime.now(UTC)),
        seed=args.seed,
        mix=Mix(invalid=args.invalid, withheld=args.withheld, held=args.held, amend_cancel=args.amend_cancel),
        held_districts=unserved,
        bundles=bundles,
    )
    if bundles:
        written = write_bundles(args.output, generator.rows(rows), fmt)
        where = written[0] if len(written) == 1 and written[0] == args.output else f"{args.output}/"
        print(
            f"wrote {len(written)} synthetic birth notification bundle{'s' if len(written) != 1 else ''} "
            f"({fmt}) to {where}"
        )
        return EXIT_OK
    count = write_file(args.output, generator.rows(rows))
    print(f"wrote {count} synthetic rows to {args.output}")
    return EXIT_OK


def _format_of(path: Path) -> str | None:
    """The format a file's name says: .csv, .jsonl, .xml (FHIR XML) or .json (FHIR JSON), optionally .gz."""
    stem = path.name.lower().removesuffix(".gz")
    formats = {".csv": "csv", ".jsonl": "jsonl", ".xml": "fhir-xml", ".json": "fhir-json"}
    return next((fmt for suffix, fmt in formats.items() if stem.endswith(suffix)), None)


def _contracts(args: argparse.Namespace) -> int:
    from birthnotify_cli import contracts

    if args.write:
        for path in contracts.write(args.write):
            print(f"wrote {path}")
        return EXIT_OK
    stale = contracts.stale(args.check)
    for relative in stale:
        print(f"{args.check / relative} is out of date: run `make contracts`", file=sys.stderr)
    return EXIT_ROWS if stale else EXIT_OK


def _registry_check(args: argparse.Namespace) -> int:
    registry, postcodes = _load_registry_and_postcodes(args.registry)
    today = date.today()
    councils = registry.councils_data
    print(
        f"{args.registry}: {len(registry.trusts)} trusts, {len(registry.authorities)} authorities of "
        f"{len(councils.childrens_services_councils)} children's services councils in {councils.source}; "
        f"{len(postcodes):,} postcodes in {postcodes.source}"
    )
    for authority in registry.authorities:
        agreement = authority.agreement_on(today)
        print(
            f"  {authority.gss_code} {authority.name}: "
            + (f"agreement {agreement.id} in force" if agreement else "NO agreement in force today: records held")
        )
    return EXIT_OK


def _postcodes_build(args: argparse.Namespace) -> int:
    from birthnotify_cli.postcodes import build

    registry = _load_registry(args.registry)
    if not args.source.is_file():
        print(f"{args.source}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        lines = build(args.source, args.output, registry)
    except ValueError as exc:  # PostcodeDirectoryError: a column the registry does not name, an unreadable CSV
        raise ConfigurationError(str(exc)) from None
    print("\n".join(lines))
    return EXIT_OK


def _postcodes_lookup(args: argparse.Namespace) -> int:
    from birthnotify_cli.postcodes import lookup

    registry = _load_registry(args.registry)
    directory = _load_postcodes(args.directory or args.registry.parent / registry.postcode_directory.file, registry)
    print("\n".join(lookup(args.postcode, directory, registry)))
    return EXIT_OK


def _stage_names(args: argparse.Namespace):
    import os

    from birthnotify.shared.names import StageNames

    stage = args.stage or os.environ.get("BIRTHNOTIFY_STAGE")
    if not stage:
        raise ConfigurationError("say which deployment: --stage (or BIRTHNOTIFY_STAGE), e.g. --stage prod")
    return StageNames(stage)


def _held_clients(args: argparse.Namespace):
    import boto3

    from birthnotify_cli.held import Clients

    return Clients.from_session(boto3.session.Session(), args.endpoint_url)


def _selection(args: argparse.Namespace):
    from birthnotify.application.held import Selection
    from birthnotify.domain.messages import HeldReason

    return Selection(
        reasons=tuple(HeldReason(r) for r in args.reasons),
        authority=args.authority,
        file=args.file,
        rows=tuple(args.rows),
    )


def _aws_errors(run):
    """AWS refusing or unreachable: a configuration error, with AWS's own words (no personal data)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return run()
    except (BotoCoreError, ClientError) as exc:
        raise ConfigurationError(f"AWS: {exc}") from None


def _held_list(args: argparse.Namespace) -> int:
    from birthnotify_cli.held import days, overview_lines, review

    names = _stage_names(args)
    clients = _held_clients(args)
    reviewer = _aws_errors(lambda: review(clients, names, _load_registry(DEFAULT_REGISTRY), actor="(listing)"))
    selection = _selection(args)
    print("\n".join(_aws_errors(lambda: overview_lines(reviewer.overview(selection), names.held_table))))
    if args.show:
        views = _aws_errors(lambda: reviewer.show(selection))
        print("\ntrust file reference  row   notification_id       postcode  age         reason / council")
        for view in views:
            print(
                f"{view.trust_ods_code:<5} {view.file_reference:<14} {view.row:<5} {view.notification_id:<21} "
                f"{view.postcode:<9} {days(view.age):<11} {view.reason.value} {view.council}"
            )
    return EXIT_OK


def _held_release(args: argparse.Namespace) -> int:
    from birthnotify.application.held import ReleaseIncomplete

    from birthnotify_cli.held import outcome_lines, review

    names = _stage_names(args)
    registry, postcodes = _load_registry_and_postcodes(args.registry)
    reviewer = _aws_errors(lambda: review(_held_clients(args), names, registry, postcodes))
    try:
        outcome = _aws_errors(lambda: reviewer.release(_selection(args), args.why, dry_run=args.dry_run))
    except ReleaseIncomplete as incomplete:
        print("\n".join(outcome_lines(incomplete.outcome)))
        print(f"release incomplete: {incomplete}", file=sys.stderr)
        return EXIT_ROWS
    print("\n".join(outcome_lines(outcome)))
    return EXIT_OK


def _held_discard(args: argparse.Namespace) -> int:
    from birthnotify.application.held import NothingSelected

    from birthnotify_cli.held import outcome_lines, review

    names = _stage_names(args)
    reviewer = _aws_errors(
        lambda: review(_held_clients(args), names, _load_registry(DEFAULT_REGISTRY), with_events=True)
    )
    try:
        outcome = _aws_errors(lambda: reviewer.discard(_selection(args), args.why, dry_run=args.dry_run))
    except NothingSelected as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(outcome_lines(outcome)))
    return EXIT_OK


def _held_actions(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from birthnotify_cli.held import action_lines, review, since

    names = _stage_names(args)
    reviewer = _aws_errors(
        lambda: review(_held_clients(args), names, _load_registry(DEFAULT_REGISTRY), actor="(listing)")
    )
    start = since(args.since) if args.since else datetime.now(UTC) - timedelta(days=30)
    print("\n".join(_aws_errors(lambda: action_lines(reviewer.actions(start)))) or "no actions")
    return EXIT_OK


def _redeliver(args: argparse.Namespace) -> int:
    from birthnotify.application.redeliver import RedeliveryIncomplete
    from birthnotify.application.redeliver import Selection as RedeliverySelection

    from birthnotify_cli.held import redelivery, redelivery_lines

    names = _stage_names(args)
    registry, postcodes = _load_registry_and_postcodes(args.registry)
    if registry.authority(args.authority) is None:
        print(f"{args.authority}: not an authority in {args.registry}", file=sys.stderr)
        return EXIT_USAGE
    service = _aws_errors(lambda: redelivery(_held_clients(args), names, registry, postcodes, args.reports_bucket))
    selection = RedeliverySelection(authority=args.authority, file=args.file, since=args.since)
    try:
        outcome = _aws_errors(lambda: service.redeliver(selection, args.why, dry_run=args.dry_run))
    except RedeliveryIncomplete as incomplete:
        print("\n".join(redelivery_lines(incomplete.outcome)))
        print(f"re-delivery incomplete: {incomplete}", file=sys.stderr)
        return EXIT_ROWS
    print("\n".join(redelivery_lines(outcome)))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from birthnotify_cli.demo import run_demo

    return run_demo(rows=args.rows, output=args.output, enforce_iam=args.enforce_iam)


def _mesh_send(args: argparse.Namespace) -> int:
    from birthnotify_cli.mesh_sandbox import sandbox_client

    with sandbox_client(args.url, args.sender) as client, args.file.open("rb") as body:
        message_id = client.send_message(
            args.recipient,
            body,
            workflow_id=args.workflow,
            filename=args.file.name,
            **({"local_id": args.local_id} if args.local_id else {}),
        )
    print(f"sent {args.file.name} from {args.sender} to {args.recipient} as MESH message {message_id}")
    return EXIT_OK


def _mesh_receive(args: argparse.Namespace) -> int:
    from birthnotify_cli.mesh_sandbox import sandbox_client

    args.output.mkdir(parents=True, exist_ok=True)
    with sandbox_client(args.url, args.mailbox) as client:
        for message_id in client.list_messages(workflow_filter=args.workflow):
            message = client.retrieve_message(message_id)
            name = Path(message.filename or f"{message_id}.dat").name  # never outside the directory
            with (args.output / name).open("wb") as target:
                while block := message.read(1 << 20):
                    target.write(block)
            message.close()
            client.acknowledge_message(message_id)
            print(f"received MESH message {message_id}: {args.output / name}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from birthnotify_cli.localcloud import serve

    return serve(port=args.port, enforce_iam=args.enforce_iam, retry_delay_seconds=args.retry_after)


if __name__ == "__main__":
    sys.exit(main())
