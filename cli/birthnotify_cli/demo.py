"""`make demo`: trusts' synthetic files, and NEMS birth notification bundles (NHS Digital's published example
and a generated one), through the deployed stack on the local cloud, told as it happens, with IAM enforced: one
trust uploads through its own role, another sends by MESH (the local mesh-sandbox) and gets its report back in
its MESH inbox, each function runs as its execution role and the council reads its queue through its own role.
`make serve` is ``birthnotify_cli.localcloud.serve``."""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path

from birthnotify.adapters.reports import latest_report_key
from birthnotify.application.ledger import AuditLine
from birthnotify.domain.ledger import LedgerOutcome
from birthnotify.domain.registry import load_registry
from birthnotify.shared.clock import london_day

from birthnotify_cli.consume import consume
from birthnotify_cli.held import Clients, outcome_lines, overview_lines, review
from birthnotify_cli.ledger_commands import agreements_register, audit_text, register_text
from birthnotify_cli.localcloud import LocalCloud
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district, write_bundles, write_file

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "config" / "registry.toml"
TRUST = "RX1"
MESH_TRUST, MESH_TRUST_MAILBOX = "RX2", "X26ABC2"
UNKNOWN_MAILBOX = "X26ABC3"  # no trust's: its message is quarantined
SERVICE_MAILBOX = "X26ABC1"
FILES_WORKFLOW, REPORTS_WORKFLOW = "BIRTHNOTIFY_FILES_1", "BIRTHNOTIFY_REPORTS_1"
NEMS_WORKFLOW = "BIRTHNOTIFICATION_1"  # as NEMS itself sends the PDS Birth Notification
CONSUMING_AUTHORITY = "E08000035"  # Leeds
YORK, CARDIFF, MANCHESTER = "E06000014", "W06000015", "E08000003"
NEMS_EXAMPLE = ROOT / "docs" / "examples" / "nems" / "BirthNotificationWithMother.xml"
NEMS_EXAMPLE_BIRTH_DAY = "2017-10-02"


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def demo_file(path: Path, rows: int, seed: int) -> int:
    """Several authorities incl. a two-tier county and a Welsh council, some invalid, withheld and held rows
    (among them councils outside the registry, and Scotland), and always at least one Welsh birth and one
    birth in a council without an agreement."""
    registry = load_registry(REGISTRY)
    postcodes = load_postcodes_by_district(REGISTRY.parent / registry.postcode_directory.file)
    served = {district for district in postcodes if registry.authority(district) is not None}
    # York's agreement has lapsed in the registry: a few of its births show what "held" means.
    weights = {district: 0.15 if district == YORK else 1.0 for district in served}
    mix = Mix(invalid=0.06, withheld=0.04, held=0.03, amend_cancel=0.04, districts=weights)
    generator = SyntheticRows(
        postcodes,
        london_day(datetime.now(UTC)),
        seed=seed,
        mix=mix,
        held_districts=tuple(d for d in postcodes if d not in served),
    )
    # Manchester runs children's services but is not in the registry: held as NO_AGREEMENT, naming it. And at
    # least one York birth, held for its lapsed agreement, for the demo's release to show.
    last = [
        generator.valid_row(rows - 2, YORK),
        generator.valid_row(rows - 1, CARDIFF),
        generator.valid_row(rows, MANCHESTER),
    ]
    return write_file(path, chain(generator.rows(max(rows - len(last), 0)), last))


def demo_bundles(folder: Path, seed: int) -> list[Path]:
    """NHS Digital's published PDS Birth Notification (its 2017 dates moved to three days ago, so it is in the
    notification window; nothing else changed), a generated one as gzipped FHIR JSON (both uploaded by S3)
    and a generated one as FHIR XML (sent by MESH)."""
    folder.mkdir(parents=True, exist_ok=True)
    birth_day = london_day(datetime.now(UTC)) - timedelta(days=3)
    example = folder / NEMS_EXAMPLE.name
    example.write_text(
        NEMS_EXAMPLE.read_text(encoding="utf-8").replace(NEMS_EXAMPLE_BIRTH_DAY, birth_day.isoformat()),
        encoding="utf-8",
    )
    registry = load_registry(REGISTRY)
    postcodes = load_postcodes_by_district(REGISTRY.parent / registry.postcode_directory.file)
    generator = SyntheticRows(
        postcodes, london_day(datetime.now(UTC)), seed=seed, bundles=True, mix=Mix(districts={"E07000110": 1.0})
    )  # Maidstone: Kent runs its children's services
    [generated] = write_bundles(folder / "nems-birth.json.gz", generator.rows(1), "fhir-json")
    cardiff = SyntheticRows(
        postcodes, london_day(datetime.now(UTC)), seed=seed + 1, bundles=True, mix=Mix(districts={CARDIFF: 1.0})
    )
    [by_mesh] = write_bundles(folder / "nems-birth-by-mesh.xml", cardiff.rows(1), "fhir-xml")
    return [example, generated, by_mesh]


def run_demo(rows: int = 600, output: Path = Path("demo-output"), enforce_iam: bool = True) -> int:
    started = time.monotonic()
    output.mkdir(parents=True, exist_ok=True)
    cloud = LocalCloud.start(progress=_say, enforce_iam=enforce_iam)
    try:
        _say(f"deployed in {time.monotonic() - started:.1f} s:")
        for line in cloud.report.lines():
            print(f"    {line}")
        _say(
            "IAM is enforced: the trust uploads through its upload role, each function runs as its execution "
            "role, the council reads through its consumer role"
            if enforce_iam
            else "IAM is NOT enforced (--no-iam-enforcement): any credentials would do"
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        upload = output / f"births-{stamp}.csv"
        count = demo_file(upload, rows, seed=int(time.time()))
        _say(f"generated {count} synthetic rows (invented people, NHS numbers from the 999 test range): {upload}")
        inbound = cloud.outputs["InboundBucketName"]
        key = f"inbound/{TRUST}/{upload.name}"
        trust_role = cloud.resources.trust_upload_roles[TRUST].rsplit("/", 1)[-1]
        cloud.client("s3", acting_as=TRUST).upload_file(str(upload), inbound, key)
        _say(f"trust {TRUST} uploaded s3://{inbound}/{key} as role {trust_role}; S3 notified the ingest queue")
        *bundles, mesh_bundle = demo_bundles(output / f"bundles-{stamp}", seed=int(time.time()))
        bundle_keys = [f"inbound/{TRUST}/{bundle.name}" for bundle in bundles]
        for bundle, bundle_key in zip(bundles, bundle_keys, strict=True):
            cloud.client("s3", acting_as=TRUST).upload_file(str(bundle), inbound, bundle_key)
        _say(
            f"trust {TRUST} also uploaded {len(bundles)} NEMS PDS Birth Notification bundles by S3 (one birth each, "
            f"FHIR XML and gzipped FHIR JSON): {', '.join(bundle.name for bundle in bundles)}"
        )
        mesh_file = output / f"weald-{stamp}.csv"
        mesh_rows = demo_file(mesh_file, max(rows // 3, 20), seed=int(time.time()) + 1)
        with cloud.mesh.client(MESH_TRUST_MAILBOX) as client:
            message_id = str(
                client.send_message(
                    SERVICE_MAILBOX,
                    mesh_file.read_bytes(),
                    workflow_id=FILES_WORKFLOW,
                    filename=mesh_file.name,
                    local_id=f"weald-{stamp}",
                )
            )
        _say(
            f"trust {MESH_TRUST} sent {mesh_rows} rows by MESH from its mailbox {MESH_TRUST_MAILBOX} to the "
            f"service's {SERVICE_MAILBOX} (workflow {FILES_WORKFLOW}): message {message_id}"
        )
        with cloud.mesh.client(UNKNOWN_MAILBOX) as client:
            stranger = str(
                client.send_message(
                    SERVICE_MAILBOX, mesh_file.read_bytes(), workflow_id=FILES_WORKFLOW, filename=mesh_file.name
                )
            )
        with cloud.mesh.client(MESH_TRUST_MAILBOX) as client:
            # As NEMS delivers it: the workflow says what it is, and there is no file name.
            bundle_message = str(
                client.send_message(SERVICE_MAILBOX, mesh_bundle.read_bytes(), workflow_id=NEMS_WORKFLOW)
            )
        _say(
            f"trust {MESH_TRUST} also sent a NEMS bundle (FHIR XML) by MESH (workflow {NEMS_WORKFLOW}, no file "
            f"name): message {bundle_message}"
        )
        _say(f"mailbox {UNKNOWN_MAILBOX}, which no trust has, sent a file too: message {stranger}")
        [mesh_run] = cloud.fire_schedules(function="birthnotify-local-mesh")
        if mesh_run.error:
            raise RuntimeError(f"the mesh function failed: {mesh_run.error}")
        result = mesh_run.result
        _say(
            f"the mesh function's scheduled run (as its role): {len(result['stored'])} stored under "
            f"inbound/{MESH_TRUST}/, {len(result['quarantined'])} quarantined "
            f"({', '.join(f'{m}: {r}' for m, r in result['quarantined'].items())}), each acknowledged after S3 "
            "had it whole"
        )

        def show(stats) -> None:
            print(f"\r    {stats.invocations} invocations, {stats.messages} messages handled", end="", flush=True)

        stats = cloud.run_until_idle(on_batch=show)
        print()
        _say(
            f"pipeline finished: {stats.invocations} Lambda invocations (ingest, then notify); their logs "
            f"are in {cloud.workdir / 'logs'}"
        )
        if stats.failed:
            _say(
                f"{stats.failed} messages failed and were retried after their queue's visibility timeout "
                f"(SQS's clock moved {stats.skipped_seconds:.0f} s instead of waiting); see the logs"
            )
        _summarise(cloud, TRUST, key.rsplit("/", 1)[-1], output)
        _summarise_bundles(cloud, bundle_keys + [f"inbound/{MESH_TRUST}/mesh-{bundle_message}.xml"])
        _summarise_mesh(cloud, [message_id, bundle_message], output)
        _consume(cloud, key, output)
        _summarise_emails(cloud, output)
        deployed_registry = _release_york(cloud, output)
        _audit_and_register(cloud, upload, deployed_registry)
    finally:
        cloud.stop()
    _say(f"done in {time.monotonic() - started:.0f} s; files in {output}/")
    return 0


def _summarise(cloud: LocalCloud, trust: str, name: str, output: Path) -> None:
    s3 = cloud.client("s3")
    bucket = cloud.outputs["ReportsBucketName"]
    report_key = latest_report_key(s3, bucket, trust, name)
    report = json.loads(s3.get_object(Bucket=bucket, Key=report_key)["Body"].read())
    outcome = report["outcome"]
    print(f"\n{trust}'s upload {name}")
    print(
        f"Reconciliation: {outcome['rows_in']} rows in = {outcome['forwarded']} forwarded + "
        f"{outcome['rejected']} rejected + {outcome['withheld']} withheld + {outcome['held']} held"
    )
    print("\nForwarded, per authority (only the fields each agreement allows):")
    for authority in outcome["authorities"]:
        print(
            f"    {authority['name']:<28} {authority['new'] + authority['amend'] + authority['cancel']:>4}  "
            f"({authority['new']} new, {authority['amend']} amended, {authority['cancel']} cancelled; "
            f"agreement {authority['agreement_id']})"
        )
    print("\nWithheld (never forwarded):")
    for reason, count in outcome["withheld_by_reason"].items():
        print(f"    {reason:<28} {count:>4}")
    print("\nHeld for review:")
    for held in outcome["held_by_reason"]:
        print(f"    {held['reason']:<28} {held['count']:>4}  {held.get('authority_name') or ''}")
    print("\nRejected rows (the trust's report carries no personal data):")
    for code, count in Counter(error["code"] for error in report["errors"]).most_common():
        print(f"    {code:<28} {count:>4}")
    for error in report["errors"][:5]:
        print(
            f"      row {error['row']:>4} {error['notification_id'] or '':<12} {error['field'] or '':<20} "
            f"{error['message']}"
        )


def _summarise_bundles(cloud: LocalCloud, keys: list[str]) -> None:
    s3 = cloud.client("s3")
    bucket = cloud.outputs["ReportsBucketName"]
    print("\nNEMS birth notification bundles (one row each; errors and warnings name the FHIR element):")
    for key in keys:
        trust, name = key.split("/")[-2:]
        report_key = latest_report_key(s3, bucket, trust, name)
        report = json.loads(s3.get_object(Bucket=bucket, Key=report_key)["Body"].read())
        outcome = report["outcome"]
        went = [f"forwarded to {a['name']} (agreement {a['agreement_id']})" for a in outcome["authorities"]]
        went += [f"withheld, {reason}" for reason in outcome["withheld_by_reason"]]
        went += [f"held, {held['reason']}" for held in outcome["held_by_reason"]]
        went += [f"rejected, {error['field']}: {error['code']}" for error in report["errors"]]
        if report["file_error"]:
            went.append(f"file rejected: {report['file_error']['code']}")
        print(f"    {trust} {name:<50} {report['status']}, {outcome['rows_in']} row: {'; '.join(went)}")
        for warning in report["warnings"]:
            print(f"      warning: {warning['field']} {warning['code']}: left out, the row accepted")


def _consume(cloud: LocalCloud, key: str, output: Path) -> None:
    name = key.rsplit("/", 1)[-1]
    target = output / f"{CONSUMING_AUTHORITY}-{name}"
    stats = consume(
        cloud.client("sqs", acting_as=CONSUMING_AUTHORITY),
        cloud.authority_queue_url(CONSUMING_AUTHORITY),
        target,
        "csv",
        wait_seconds=0,
    )
    role = cloud.resources.authority_consumer_roles[CONSUMING_AUTHORITY].rsplit("/", 1)[-1]
    print(
        f"\nLeeds City Council consumed its queue as role {role}: {stats.written} records written to {target} "
        "(the rows of RX1's file, of RX2's file sent by MESH, and the published NEMS example's record)"
    )


def _summarise_mesh(cloud: LocalCloud, message_ids: list[str], output: Path) -> None:
    """What RX2 finds in its own MESH inbox: its report, and its rejected rows (saved beside the demo files)."""
    print(f"\n{MESH_TRUST}'s MESH inbox ({MESH_TRUST_MAILBOX}, workflow {REPORTS_WORKFLOW}):")
    with cloud.mesh.client(MESH_TRUST_MAILBOX) as client:
        for report_id in client.list_messages(workflow_filter=REPORTS_WORKFLOW):
            message = client.retrieve_message(report_id)
            body = message.read()
            message.close()
            client.acknowledge_message(report_id)
            (output / message.filename).write_bytes(body)
            line = f"    {message.filename:<52} {len(body):>7} bytes, local id {message.local_id}"
            if message.filename.endswith(".json"):
                report = json.loads(body)
                outcome = report["outcome"]
                line += (
                    f": {report['status']}, {outcome['rows_in']} rows in = {outcome['forwarded']} forwarded + "
                    f"{outcome['rejected']} rejected + {outcome['withheld']} withheld + {outcome['held']} held"
                )
            print(line)
    print(f"    (the answers to MESH messages {', '.join(message_ids)}; saved in {output}/)")


def _summarise_emails(cloud: LocalCloud, output: Path) -> None:
    emails = cloud.sent_emails()
    print(f"\nEmails sent ({len(emails)}, counts and references only):")
    for message in emails:
        print(f"    to {', '.join(message['to']):<45} {message['subject']}")
    (output / "emails.json").write_text(json.dumps(emails, indent=2))


def registry_with_york_agreement(folder: Path) -> Path:
    """A copy of the registry (with its councils data and postcode directory) in which York has signed a new
    sharing agreement, in force from today: what the team deploys once the paperwork is done."""
    folder.mkdir(parents=True, exist_ok=True)
    registry = load_registry(REGISTRY)
    for name in (registry.postcode_directory.file, "authorities-england-wales.csv"):
        shutil.copy(REGISTRY.parent / name, folder / name)
    today = london_day(datetime.now(UTC))
    text = REGISTRY.read_text(encoding="utf-8")
    york = text.index(f'gss_code = "{YORK}"')
    end = text.index("\n[[authorities]]", york)
    renewed = (
        f'\n[[authorities.agreements]]\nid = "YORK-HCS-{today.year}-RENEWED"\npurpose = "Healthy Child '
        f'Service: universal new-birth contact."\nvalid_from = {today}\nvalid_to = '
        f'{today + timedelta(days=365)}\nallowed_fields = ["baby_date_of_birth", "mother_given_name", '
        f'"mother_family_name", "address_line_1", "postcode"]\n'
    )
    path = folder / "registry.toml"
    path.write_text(text[:end].rstrip("\n") + "\n" + renewed + text[end:], encoding="utf-8")
    return path


def _release_york(cloud: LocalCloud, output: Path) -> Path:
    """York's agreement had lapsed, so its births were held. It signs a new one: the operators deploy a
    registry with it and release York's held records, which then reach York once. Returns that registry."""
    from birthnotify.application.held import Selection
    from birthnotify.domain.postcodes import PostcodeDirectory
    from birthnotify.shared.names import StageNames

    names = StageNames(cloud.resources.stack_name.split("-", 1)[1])
    clients = Clients.from_session(cloud.session(), cloud.endpoint_url)
    print("\nHeld records waiting for review (`birthnotify held list`, counts only):")
    listing = review(clients, names, load_registry(REGISTRY), actor="(listing)").overview()
    for line in overview_lines(listing, names.held_table):
        print(f"    {line}")
    path = registry_with_york_agreement(output / "registry-with-york-agreement")
    registry = load_registry(path)
    postcodes = PostcodeDirectory.load(path.parent / registry.postcode_directory.file, registry.postcode_directory)
    agreement = registry.authority(YORK).agreement_on(london_day(datetime.now(UTC)))
    _say(
        f"City of York Council signs a new sharing agreement ({agreement.id}), added to a copy of the registry: {path}"
    )
    outcome = review(clients, names, registry, postcodes).release(
        Selection(authority=YORK), "York signed a new sharing agreement"
    )
    _say(f"`birthnotify held release --authority {YORK} --registry {path}` as the operator:")
    for line in outcome_lines(outcome):
        print(f"    {line}")
    before = {message["subject"] for message in cloud.sent_emails()}
    cloud.run_until_idle()
    print("\nEmails about the release (counts only):")
    for message in cloud.sent_emails():
        if message["subject"] not in before:
            print(f"    to {', '.join(message['to']):<45} {message['subject']}")
    waiting = cloud.client("sqs").get_queue_attributes(
        QueueUrl=cloud.authority_queue_url(YORK), AttributeNames=["ApproximateNumberOfMessages"]
    )
    print(
        f"\nCity of York Council's queue now holds {waiting['Attributes']['ApproximateNumberOfMessages']} "
        f"records, each released once; {listing.total - outcome.released_total} others stay held (no council "
        "found, or no agreement in force)."
    )
    return path


def audit_example(
    rows: list[dict[str, str]], audit_of: Callable[[dict[str, str]], list[AuditLine]]
) -> tuple[dict[str, str], list[AuditLine]]:
    """The baby the demo's subject access shows, with its ledger lines: the first of the upload's births forwarded
    to a council as it arrived (the synthetic file, new at every run, mixes in rejected, withheld and held ones; a
    held one released since is a story of its own); failing that, the first that reached a council at all."""
    seen = []
    for row in rows:
        lines = audit_of(row)
        if any(line.outcome is LedgerOutcome.FORWARDED for line in lines):
            return row, lines
        seen.append((row, lines))
    reached = [(row, lines) for row, lines in seen if any(line.fields_shared for line in lines)]
    return (reached or seen)[0]


def _audit_and_register(cloud: LocalCloud, upload: Path, registry_path: Path, tries: int = 20) -> None:
    """What the Information Governance lead asks of the sharing ledger: every disclosure of one baby's record
    (`birthnotify audit`, a subject access request) and the data-sharing register of the registry now deployed
    with the records each agreement carried (`birthnotify agreements`), both read as the operator."""
    from birthnotify.adapters.ledger import S3Ledger, ledger_key
    from birthnotify.application.ledger import SubjectHasher, audit, records_per_agreement

    resources = cloud.resources
    ledger = S3Ledger(cloud.client("s3"), resources.ledger_bucket)
    hasher = SubjectHasher(ledger_key(cloud.client("secretsmanager"), resources.ledger_key_secret_id))
    registry = load_registry(registry_path)
    with upload.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("notification_type", "").strip().upper() == "NEW"]
    chosen, lines = audit_example(
        rows[:tries], lambda row: audit(ledger, hasher, registry, row["baby_nhs_number"].replace(" ", ""))
    )
    print(
        f"\nSubject access: `birthnotify audit --nhs-number {chosen['baby_nhs_number']}` (the baby of {TRUST}'s "
        f"notification {chosen['notification_id']}; synthetic, from the 999 test range). The number is hashed "
        "with the ledger key; the ledger holds no NHS number:"
    )
    for text in audit_text(lines):
        print(f"    {text}".rstrip())
    header, register = agreements_register(registry, london_day(datetime.now(UTC)), records_per_agreement(ledger))
    print("\nThe data-sharing register (`birthnotify agreements`), with the records each agreement carried:")
    for text in register_text(header, register):
        print(f"    {text}".rstrip())
