"""The synthesized templates (the core stack and the authority stacks), deployed into moto with IAM enforced,
driven as the users drive the real thing: a trust uploads through its own role, each function runs as its
execution role, authorities read their queues (in several authority stacks) through theirs, and the
notifier's emails are read back from SES. One deployment for the whole module."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from birthnotify.adapters.reports import latest_report_key
from birthnotify.application.offline import check_file
from birthnotify.domain.messages import FileProcessedEvent
from birthnotify.domain.postcodes import MAGIC, PostcodeDirectory
from birthnotify.domain.registry import NotificationMode, load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.localcloud import LocalCloud
from birthnotify_cli.localcloud.behaviour import DEDUPLICATION_SECONDS
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district, to_bytes
from botocore.exceptions import ClientError
from ingest_support import REGISTRY_PATH

pytestmark = pytest.mark.e2e
REGISTRY = load_registry(REGISTRY_PATH)
LEEDS, KENT, CAMDEN, YORK, MANCHESTER = "E08000035", "E10000016", "E09000007", "E06000014", "E08000003"
KENT_DISTRICTS = ("E07000110", "E07000111", "E07000115")
TRUST, OTHER_TRUST = "RX1", "RX2"
ROWS = 2000
HANG_GUARD_SECONDS = 600
"""Only to end a test that hangs: nothing here is expected to take long, on however busy a machine."""
ENVELOPE = {
    "schema_version",
    "agreement_id",
    "authority_gss_code",
    "source",
    "notification_id",
    "notification_type",
    "original_notification_id",
    "record",
}
POSTCODES = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
INGEST_POLICY = "birthnotify-local-ingest-function"
NOT_CALLED_LOCALLY = {
    # CloudWatch Logs and X-Ray are written by Lambda's runtime, not by the handler's SDK calls; Lambda itself
    # decrypts the environment; the other KMS statements are used by S3 and SQS on the function's behalf,
    # which moto does not do.
    "WriteOwnLogs",
    "XRayTracing",
    "DecryptOwnEnvironment",
    "DecryptUploads",
    "EncryptReports",
    "UseHeldKey",
    "UsePipelineKey",
    "EncryptLedger",
    # S3 answers a missing key with 403 instead of 404 to a role without ListBucket; moto answers 404 anyway.
    "ListLedgerBucket",
}
BEST_EFFORT = {
    # A file stopped part-way saves its resume snapshot, and a redelivered one looks for it; refused, the retry
    # replays the rows before its checkpoint instead (slower, the same outcome), so nothing fails without it.
    "ReadWriteResumeSnapshots",
}
AT_COLD_START_ONLY = {
    # The ledger's HMAC key is read once per container, under enforced IAM: every file this module ingests goes
    # through a container that read it, so a refusal would fail them all.
    "ReadLedgerKey",
}


def held_records(cloud) -> list:
    """Every open record in the held store, with its content (as the operator)."""
    from birthnotify.adapters.held import DynamoHeldStore

    store = DynamoHeldStore(cloud.client("dynamodb"), cloud.resources.held_table)
    return store.details(summary.key for summary in store.open_records())


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    # The defaults: IAM enforced, a failed message retried when its queue's visibility timeout ends.
    with LocalCloud.start(tmp_path_factory.mktemp("localcloud")) as cloud:
        yield cloud


def synthetic_file(rows: int, seed: int, name: str, **mix) -> tuple[list[dict[str, str]], bytes]:
    generated = list(
        SyntheticRows(POSTCODES, london_day(datetime.now(UTC)), seed=seed, mix=Mix(**mix) if mix else None).rows(rows)
    )
    return generated, to_bytes(generated, name)


def report_of(cloud, trust: str, name: str, acting_as: str | None = None, key: str | None = None) -> dict:
    """A report (the latest upload's of ``name``, found by the operator), read as ``acting_as``."""
    bucket = cloud.resources.reports_bucket
    key = key or latest_report_key(cloud.client("s3"), bucket, trust, name)
    assert key, f"no report of {trust}/{name}"
    return json.loads(cloud.client("s3", acting_as=acting_as).get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def upload(cloud, tmp_path_factory):
    """A 2,000-row synthetic file from trust RX1: every served authority (Kent through its districts),
    invalid, withheld and held rows (an unserved district, York's lapsed agreement, unknown postcodes)."""
    today = london_day(datetime.now(UTC))
    weights = {LEEDS: 1.0, CAMDEN: 1.0, YORK: 0.1, **{district: 0.7 for district in KENT_DISTRICTS}}
    mix = Mix(invalid=0.05, withheld=0.04, held=0.03, amend_cancel=0.05, districts=weights)
    rows = list(SyntheticRows(POSTCODES, today, seed=11, mix=mix, held_districts=(MANCHESTER,)).rows(ROWS))
    name = "births 2026-11-24.csv"
    path = tmp_path_factory.mktemp("upload") / name
    path.write_bytes(to_bytes(rows, name))
    expected = check_file(
        path,
        trust_ods_code=TRUST,
        registry=REGISTRY,
        upload_day=today,
        postcodes=PostcodeDirectory.load(REGISTRY_PATH.parent / "postcodes.csv", REGISTRY.postcode_directory),
    )
    # The trust's own upload, through its upload role, under its prefix: S3 notifies the ingest queue.
    cloud.client("s3", acting_as=TRUST).upload_file(
        str(path), cloud.resources.inbound_bucket, f"inbound/{TRUST}/{name}"
    )
    stats = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)
    return {
        "rows": rows,
        "expected": expected,
        "stats": stats,
        "name": name,
        "report": report_of(cloud, TRUST, name, acting_as=TRUST),
        "day": today,
        "emails": cloud.sent_emails(),
    }


def drain(cloud, queue_url, acting_as=None):
    sqs, bodies = cloud.client("sqs", acting_as=acting_as), []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(message["Body"]) for message in messages]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    return bodies


def denied(call) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403")
    return False


def log_of(cloud, function: str) -> str:
    path = cloud.runtime.function(function).log.path
    return path.read_text() if path.exists() else ""


def test_every_stack_is_deployed_after_those_it_depends_on(cloud):
    names = [path.name.removesuffix(".template.json") for path in cloud.template_paths]
    assert names[0] == cloud.resources.stack_name == "BirthNotifications-local"
    assert len(names) >= 3 and all(name.startswith("BirthNotifications-local-Authorities-") for name in names[1:])
    assert cloud.report.stacks == names
    stacks = cloud.client("cloudformation").describe_stacks()["Stacks"]
    assert {s["StackName"]: s["StackStatus"] for s in stacks} == {name: "CREATE_COMPLETE" for name in names}


def test_every_resource_of_every_template_is_created_or_listed_with_a_reason(cloud):
    listed = {item.logical_id for item in cloud.report.items}
    for path in cloud.template_paths:
        template = json.loads(path.read_text())
        created = {
            r["LogicalResourceId"]
            for r in cloud.client("cloudformation").describe_stack_resources(
                StackName=path.name.removesuffix(".template.json")
            )["StackResources"]
        }
        assert set(template["Resources"]) <= created | listed, path.name
    assert all(item.why for item in cloud.report.items)
    applied = {item.resource_type for item in cloud.report.applied}
    assert {"Custom::S3BucketNotifications", "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy"} <= applied
    assert "AWS::SES::Template" in applied  # the notifier's bulk sends fill it in: made by hand, and listed
    stored = cloud.client("ses").get_template(TemplateName="birthnotify-local-email")["Template"]
    assert (stored["SubjectPart"], stored["TextPart"], stored["HtmlPart"]) == (
        "{{{subject}}}",
        "{{{text}}}",
        "{{{html}}}",
    )
    assert {m.function.name for m in cloud.runtime.mappings} == {"birthnotify-local-ingest", "birthnotify-local-notify"}
    assert sorted(s.function.name for s in cloud.runtime.schedules) == [
        "birthnotify-local-mesh",
        "birthnotify-local-notify",
    ]
    assert not [i for i in cloud.report.skipped if i.resource_type.startswith("Custom::")]  # none hangs the stack
    lines = "\n".join(cloud.report.lines())
    assert "local-runtime" in lines and "not-emulated" in lines
    assert "IAM is enforced" in lines and "conditions are not evaluated" in lines  # and what moto cannot check


def test_buckets_are_versioned_as_the_template_says(cloud):
    s3 = cloud.client("s3")
    for bucket in (cloud.resources.inbound_bucket, cloud.resources.reports_bucket):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_the_functions_get_the_templates_environment_and_their_execution_roles(cloud):
    ingest = cloud.runtime.function("birthnotify-local-ingest")
    resources = cloud.resources
    assert ingest.environment["REPORTS_BUCKET"] == resources.reports_bucket
    assert ingest.environment["HELD_TABLE"] == resources.held_table == "birthnotify-local-held"
    assert ingest.environment["REGISTRY_PATH"].endswith("config/registry.toml")  # /opt/config -> config layer
    # The production code path: the layer's registry names the postcode index built from the CSV, mapped.
    shipped = load_registry(ingest.environment["REGISTRY_PATH"])
    index = Path(ingest.environment["REGISTRY_PATH"]).parent / shipped.postcode_directory.file
    assert shipped.postcode_directory.file == "postcodes.idx" and index.read_bytes()[: len(MAGIC)] == MAGIC
    assert ingest.timeout_seconds == 600 and any(p.name == "python" for p in ingest.python_paths)
    assert set(resources.authority_queues) == {a.gss_code for a in REGISTRY.authorities}
    assert len(set(resources.authority_stacks.values())) >= 2  # the registry spans several authority stacks
    assert set(resources.trust_upload_roles) == {t.ods_code for t in REGISTRY.trusts}
    assert resources.ingest_queue_url in resources.dead_letter_queues
    for function in cloud.functions.values():
        identity = cloud.runtime.session(function).client("sts", endpoint_url=cloud.endpoint_url).get_caller_identity()
        assert identity["Arn"] == (
            f"arn:aws:sts::123456789012:assumed-role/{function.role_arn.rsplit('/', 1)[-1]}/{function.name}"
        )


def test_a_trusts_file_reaches_each_authority_with_only_its_agreed_fields(cloud, upload):
    report, expected = upload["report"], upload["expected"]
    outcome = report["outcome"]
    # What `birthnotify validate` predicts offline is what the deployed pipeline did.
    assert outcome == expected.outcome.model_dump(mode="json")
    assert (
        outcome["rows_in"] == ROWS == outcome["forwarded"] + outcome["rejected"] + outcome["withheld"] + outcome["held"]
    )
    assert min(outcome["rejected"], outcome["withheld"], outcome["held"]) > 0
    assert {a["gss_code"] for a in outcome["authorities"]} == {LEEDS, KENT, CAMDEN}  # York's agreement lapsed
    # Leeds, Kent and Camden are in three authority stacks: the core stack's ingest reached each by name.
    assert len({cloud.resources.authority_stacks[gss] for gss in (LEEDS, KENT, CAMDEN)}) == 3
    forwarded = 0
    by_id = {row["notification_id"]: row for row in upload["rows"]}
    for counts in outcome["authorities"]:
        allowed = REGISTRY.authority(counts["gss_code"]).agreement_on(upload["day"]).allowed_fields
        # Leeds and Kent read through their own consumer roles; Camden names no principal, so no role.
        reader = counts["gss_code"] if counts["gss_code"] in cloud.principals else None
        bodies = drain(cloud, cloud.resources.authority_queues[counts["gss_code"]], acting_as=reader)
        assert len(bodies) == counts["new"] + counts["amend"] + counts["cancel"]
        for message in bodies:
            assert set(message) <= ENVELOPE and set(message["record"]) <= allowed
            assert message["authority_gss_code"] == counts["gss_code"]
        if counts["gss_code"] == KENT:  # a two-tier county: its births are coded with its districts
            districts = {by_id[m["notification_id"]]["residence_la_code"] for m in bodies} - {""}
            assert districts and districts <= set(KENT_DISTRICTS)
        forwarded += len(bodies)
    assert forwarded == outcome["forwarded"]
    assert drain(cloud, cloud.resources.authority_queues[YORK]) == []
    assert len(held_records(cloud)) == outcome["held"]


def test_a_2000_row_file_goes_through_without_a_failure_or_a_retry(upload):
    # How long it takes is the machine's business (make bench measures cost); that nothing failed is ours.
    stats = upload["stats"]
    assert stats.errors == 0 and stats.failed == 0 and stats.skipped_seconds == 0
    assert stats.by_function == {
        "birthnotify-local-ingest": stats.by_function["birthnotify-local-ingest"],
        "birthnotify-local-notify": 1,
    }
    assert stats.by_function["birthnotify-local-ingest"] <= 2  # the upload (and perhaps S3's TestEvent)


def test_functions_run_with_lambdas_environment_and_log_as_cloudwatch_keeps_them(cloud, upload):
    items = cloud.client("dynamodb").scan(TableName=cloud.resources.state_table)["Items"]
    keys = [item["id"]["S"] for item in items if "id" in item]
    # Powertools' idempotency keys carry AWS_LAMBDA_FUNCTION_NAME, as in AWS (not its "test-func." default).
    assert any(key.startswith("birthnotify-local-ingest.birthnotify.") for key in keys)
    # The notifier remembers whom it mailed in one item per event (adapters/deliveries.py), not Powertools'.
    assert any(key.startswith("delivered#event#") for key in keys)
    assert not [key for key in keys if key.startswith("test-func.")]
    ingest = log_of(cloud, "birthnotify-local-ingest")
    assert re.search(r"^START RequestId: \S+ Version: \$LATEST$", ingest, re.MULTILINE)
    assert re.search(
        r"^REPORT RequestId: \S+\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\tMemory Size: 1024 MB",
        ingest,
        re.MULTILINE,
    )
    processed = [json.loads(line) for line in ingest.splitlines() if '"message":"file processed"' in line]
    # The domain package's logger writes into the function's log, as the function's own.
    assert processed and processed[0]["service"] == "birthnotify-local-ingest"
    assert processed[0]["function_arn"] == "arn:aws:lambda:eu-west-2:123456789012:function:birthnotify-local-ingest"
    assert '"xray_trace_id":"1-' in ingest  # Lambda's trace header, as Powertools logs it
    assert not re.search(r"segment|daemon|Unable to", ingest, re.IGNORECASE)  # nothing looked for X-Ray's daemon
    notify = log_of(cloud, "birthnotify-local-notify")
    assert '"cold_start":true' in notify  # its own first invocation, not ingest's


def test_emails_tell_trust_operators_and_per_file_authorities_with_counts_only(upload):
    emails = upload["emails"]
    recipients = {to for email in emails for to in email["to"]}
    assert set(REGISTRY.trust(TRUST).contact_emails) <= recipients
    assert set(REGISTRY.operator_emails) <= recipients  # held records
    outcome = upload["report"]["outcome"]
    for authority in REGISTRY.authorities:
        forwarded = any(a["gss_code"] == authority.gss_code for a in outcome["authorities"])
        per_file = authority.notification_mode is NotificationMode.PER_FILE
        lapsed = any(h["authority_gss_code"] == authority.gss_code for h in outcome["held_by_reason"])
        # Waiting records (per-file authorities; Camden has a daily digest), or records held for want of an
        # agreement (York's lapsed).
        assert (set(authority.contact_emails) <= recipients) == (forwarded and per_file or lapsed), authority.gss_code
    assert any(h["authority_gss_code"] == YORK for h in outcome["held_by_reason"])
    personal = {
        row[field]
        for row in upload["rows"]
        for field in ("baby_nhs_number", "mother_nhs_number", "postcode")
        if row[field]
    }
    for email in emails:
        words = set(re.findall(r"[A-Z0-9]{2,4} [0-9][A-Z]{2}|\d{10}", email["text"] + email["html"]))
        assert not words & personal, email["subject"]


def test_the_digest_schedule_sends_yesterdays_digest_once(cloud, upload):
    report = upload["report"]
    event = FileProcessedEvent.model_validate({k: report[k] for k in FileProcessedEvent.model_fields if k in report})
    yesterday = event.model_copy(
        update={"event_id": f"{event.event_id}-yesterday", "processed_at": event.processed_at - timedelta(days=1)}
    )
    cloud.client("sqs").send_message(
        QueueUrl=cloud.resources.file_events_queue_url, MessageBody=yesterday.model_dump_json()
    )
    assert cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS).failed == 0
    before = len(cloud.sent_emails())

    # As the notify function's role: it needs dynamodb:BatchGetItem, and Query on the held store's open index
    # (the upload's held records have waited minutes, not long enough for a reminder).
    [run] = cloud.fire_schedules(function="birthnotify-local-notify")
    assert run.error is None and (run.result["digests_sent"], run.result["held_reminders_sent"]) == (1, 0)
    # (An agreement expiry warning may go too, depending on today's date against the registry's agreements.)
    digest = [email for email in cloud.sent_emails()[before:] if email["subject"].startswith("Daily digest")]
    assert {to for email in digest for to in email["to"]} == set(REGISTRY.authority(CAMDEN).contact_emails)
    [again] = cloud.fire_schedules(function="birthnotify-local-notify")
    assert again.result == {"digests_sent": 0, "held_reminders_sent": 0, "expiry_warnings_sent": 0}


def test_a_poison_event_is_retried_after_each_visibility_timeout_then_dead_lettered_and_logged(cloud):
    sqs = cloud.client("sqs")
    events = cloud.resources.file_events_queue_url
    attributes = sqs.get_queue_attributes(QueueUrl=events, AttributeNames=["RedrivePolicy", "VisibilityTimeout"])
    redrive, visibility = (
        json.loads(attributes["Attributes"]["RedrivePolicy"]),
        int(attributes["Attributes"]["VisibilityTimeout"]),
    )
    cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)  # whatever earlier tests (or S3's TestEvent) left
    sqs.send_message(QueueUrl=events, MessageBody='{"not": "a file-processed event"}')

    stats = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)

    assert stats.failed == stats.invocations == redrive["maxReceiveCount"]  # each receive failed, then SQS moved it
    # Each retry came when the queue's visibility timeout ended (SQS's clock moved, nobody waited).
    assert stats.skipped_seconds >= (redrive["maxReceiveCount"] - 1) * visibility
    [dead] = drain(cloud, cloud.resources.dead_letter_queues[events])
    assert dead == {"not": "a file-processed event"}
    # The failure is in the function's log, with its traceback (not swallowed by the batch processor).
    notify = log_of(cloud, "birthnotify-local-notify")
    assert notify.count("Record processing exception") >= redrive["maxReceiveCount"]
    assert "ValidationError" in notify


def test_fake_credentials_are_refused(cloud):
    import boto3

    anyone = boto3.client(
        "s3",
        endpoint_url=cloud.endpoint_url,
        region_name="eu-west-2",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106
    )
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        anyone.list_objects_v2(Bucket=cloud.resources.inbound_bucket)


def test_each_trust_and_authority_reaches_only_its_own(cloud, upload):
    """moto enforces the deployed roles' policies, not a copy: each organisation acts through its role."""
    resources = cloud.resources
    inbound = resources.inbound_bucket
    rows, body = synthetic_file(5, seed=21, name="weald.csv")
    cloud.client("s3", acting_as=OTHER_TRUST).put_object(
        Bucket=inbound, Key=f"inbound/{OTHER_TRUST}/weald.csv", Body=body
    )
    assert cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS).errors == 0
    for gss in (LEEDS, KENT, CAMDEN, YORK):
        drain(cloud, resources.authority_queues[gss])

    trust = cloud.client("s3", acting_as=TRUST)
    trust.put_object(Bucket=inbound, Key=f"inbound/{TRUST}/own.txt", Body=b"x")  # allowed
    assert denied(lambda: trust.put_object(Bucket=inbound, Key=f"inbound/{OTHER_TRUST}/other.csv", Body=b"x"))
    assert denied(lambda: trust.get_object(Bucket=inbound, Key=f"inbound/{TRUST}/own.txt"))  # write-only
    assert report_of(cloud, TRUST, upload["name"], acting_as=TRUST)["trust_ods_code"] == TRUST
    assert report_of(cloud, OTHER_TRUST, "weald.csv", acting_as=OTHER_TRUST)["outcome"]["rows_in"] == 5
    assert denied(lambda: report_of(cloud, OTHER_TRUST, "weald.csv", acting_as=TRUST))  # another trust's report
    assert denied(lambda: report_of(cloud, TRUST, upload["name"], acting_as=OTHER_TRUST))

    leeds, kent = resources.authority_queues[LEEDS], resources.authority_queues[KENT]
    council = cloud.client("sqs", acting_as=LEEDS)
    council.receive_message(QueueUrl=leeds, WaitTimeSeconds=0)  # allowed
    assert denied(lambda: council.receive_message(QueueUrl=kent, WaitTimeSeconds=0))  # another council's queue
    assert denied(lambda: cloud.client("sqs", acting_as=KENT).receive_message(QueueUrl=leeds, WaitTimeSeconds=0))
    assert denied(lambda: council.send_message(QueueUrl=leeds, MessageBody="x", MessageGroupId="g"))
    assert denied(lambda: cloud.client("dynamodb", acting_as=LEEDS).scan(TableName=resources.held_table))
    # own.txt: rejected with a report, not an error
    assert cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS).errors == 0


def ingest_policy_statements(cloud) -> tuple[str, str, list[dict]]:
    iam = cloud.client("iam")
    arn = next(p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"] if p["PolicyName"] == INGEST_POLICY)
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    return arn, version, document["Statement"]


def test_the_ingest_policy_has_no_statement_the_tests_below_do_not_exercise(cloud):
    _, _, statements = ingest_policy_statements(cloud)
    assert {s["Sid"] for s in statements} == set(EXERCISED) | NOT_CALLED_LOCALLY | AT_COLD_START_ONLY | BEST_EFFORT


EXERCISED = {
    # statement id -> how the first refused call it allows is logged
    "ConsumeIngestQueue": r"\(AccessDenied\) when calling the ReceiveMessage operation",  # Lambda's poller
    # The upload's GetObject, told from the destination index's by the traceback: raised within fetch's frame.
    "ReadUploads": r"in fetch\n(?: .*\n)+\S+: An error occurred \(AccessDenied\) when calling the GetObject operation",
    "ReadWriteState": r"\(AccessDenied\) when calling the PutItem operation",  # idempotency, before any send
    # GetQueueUrl, or SendMessageBatch when a warm container knows the queue's URL already
    "SendToAuthorityQueues": r"\(AccessDenied\) when calling the GetQueueUrl operation|SQS did not accept \d+ "
    r"message\(s\) for \S+-authority-\S+: \['AccessDenied'\]",
    "SendFileEvents": r"\(AccessDenied\) when calling the SendMessage operation",
    "WriteHeldStore": r"the held store \S+ did not accept \d+ record\(s\): \['AccessDenied'\]",
    "WriteReports": r"\(AccessDenied\) when calling the PutObject operation",
    "WriteLedger": r"\(AccessDenied\) when calling the PutObject operation",  # after the sends: none sent twice
    "ReadWriteDestinations": r"\(AccessDenied\) when calling the GetObject operation",  # before any send
}


@pytest.mark.parametrize("sid", sorted(EXERCISED))
def test_without_any_one_statement_of_its_policy_ingest_fails_with_access_denied_then_retries(cloud, sid):
    """Each statement is needed (least privilege, and moto enforces it): without it the invocation fails
    with AccessDenied, logged; with it back, the retry, an hour later in SQS's eyes (past the FIFO
    deduplication window), processes the file once, nothing forwarded twice."""
    iam, resources = cloud.client("iam"), cloud.resources
    arn, original, statements = ingest_policy_statements(cloud)
    name = f"without-{sid}.csv"
    rows, body = synthetic_file(
        30, seed=100 + sorted(EXERCISED).index(sid), name=name, held=0.15, districts={LEEDS: 1.0}
    )
    for queue in resources.authority_queues.values():
        drain(cloud, queue)
    held_before = len(held_records(cloud))
    log_before = len(log_of(cloud, "birthnotify-local-ingest"))
    reduced = iam.create_policy_version(
        PolicyArn=arn,
        SetAsDefault=True,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [s for s in statements if s["Sid"] != sid]}),
    )["PolicyVersion"]
    try:
        cloud.client("s3", acting_as=TRUST).put_object(
            Bucket=resources.inbound_bucket, Key=f"inbound/{TRUST}/{name}", Body=body
        )
        if sid == "ConsumeIngestQueue":
            with pytest.raises(ClientError, match=EXERCISED[sid]):
                cloud.runtime.poll_once()  # the event source mapping cannot receive
        else:
            assert cloud.runtime.poll_once()  # one invocation, which fails
            failed = log_of(cloud, "birthnotify-local-ingest")[log_before:]
            # Logged as Lambda logs an unhandled exception, with the refused call.
            assert "[ERROR] BatchProcessingError" in failed and re.search(EXERCISED[sid], failed), failed[-3000:]
    finally:
        iam.set_default_policy_version(PolicyArn=arn, VersionId=original)
        iam.delete_policy_version(PolicyArn=arn, VersionId=reduced["VersionId"])

    stats = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)

    assert stats.errors == 0
    if sid != "ConsumeIngestQueue":  # the message had been received and failed: its retry waited an hour
        assert stats.skipped_seconds > DEDUPLICATION_SECONDS
    outcome = report_of(cloud, TRUST, name)["outcome"]
    assert outcome["rows_in"] == 30 and outcome["held"] > 0
    for counts in outcome["authorities"]:
        bodies = drain(cloud, resources.authority_queues[counts["gss_code"]])
        assert len(bodies) == counts["new"] + counts["amend"] + counts["cancel"], sid  # none twice, none lost
        assert len({b["notification_id"] for b in bodies}) == len(bodies)
    assert len(held_records(cloud)) - held_before == outcome["held"]  # each held record stored once


@pytest.fixture(scope="module")
def reupload(cloud):
    """The same content uploaded twice to the same key: two object versions, two events."""
    resources = cloud.resources
    name = "again.csv"
    rows, body = synthetic_file(20, seed=5, name=name, districts={LEEDS: 1.0})
    for queue in resources.authority_queues.values():
        drain(cloud, queue)
    trust = cloud.client("s3", acting_as=TRUST)
    key = f"inbound/{TRUST}/{name}"
    emails_before = len(cloud.sent_emails())
    first_version = trust.put_object(Bucket=resources.inbound_bucket, Key=key, Body=body)["VersionId"]
    first_run = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)
    first_key = latest_report_key(cloud.client("s3"), resources.reports_bucket, TRUST, name)
    first_report = report_of(cloud, TRUST, name, key=first_key)
    second_version = trust.put_object(Bucket=resources.inbound_bucket, Key=key, Body=body)["VersionId"]
    # The operator looks at the ingest queue's event without taking it.
    [event] = cloud.client("sqs").receive_message(
        QueueUrl=resources.ingest_queue_url, VisibilityTimeout=0, MaxNumberOfMessages=10
    )["Messages"]
    second_run = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)
    return {
        "versions": (first_version, second_version),
        "event": json.loads(event["Body"]),
        "name": name,
        "first_key": first_key,
        "first_report": first_report,
        "runs": (first_run, second_run),
        "leeds": drain(cloud, resources.authority_queues[LEEDS]),
        "emails": cloud.sent_emails()[emails_before:],
    }


def test_a_reupload_to_the_same_key_is_a_new_object_version_named_in_its_event(reupload):
    first, second = reupload["versions"]
    assert first and second and first != second
    [record] = reupload["event"]["Records"]
    assert record["s3"]["object"]["versionId"] == second
    assert all(run.errors == 0 for run in reupload["runs"])


def test_a_reupload_of_identical_content_keeps_the_first_report_and_forwards_nothing_again(cloud, reupload):
    first = reupload["first_report"]
    assert first["status"] == "PROCESSED"
    forwarded = sum(a["new"] + a["amend"] + a["cancel"] for a in first["outcome"]["authorities"])
    assert len(reupload["leeds"]) == forwarded == 20  # the second upload forwarded nothing
    assert report_of(cloud, TRUST, reupload["name"], key=reupload["first_key"]) == first  # never overwritten
    # The second upload's own report, beside the first (both may carry the same second in their keys, so
    # told apart by key, not by which sorts last).
    s3, folder = cloud.client("s3"), reupload["first_key"].rsplit("/", 1)[0] + "/"
    keys = [
        item["Key"]
        for item in s3.list_objects_v2(Bucket=cloud.resources.reports_bucket, Prefix=folder)["Contents"]
        if item["Key"].endswith(".json")
    ]
    [second_key] = [key for key in keys if key != reupload["first_key"]]
    second = report_of(cloud, TRUST, reupload["name"], key=second_key)
    assert second["status"] == "DUPLICATE" and second["duplicate_of"]["report_key"] == reupload["first_key"]
    to_trust = [m["subject"] for m in reupload["emails"] if m["to"] == REGISTRY.trust(TRUST).contact_emails]
    assert to_trust == [
        f"File processed: {reupload['name']}: 20 forwarded, 0 rejected",
        f"Already processed: {reupload['name']}",
    ]


def test_a_nems_bundle_uploaded_by_the_trust_reaches_leeds_through_the_deployed_stack(cloud, tmp_path):
    from birthnotify_cli.demo import demo_bundles

    example, generated, _by_mesh = demo_bundles(tmp_path, seed=3)  # the published example, dates moved; one for Kent
    for bundle in (example, generated):
        cloud.client("s3", acting_as=TRUST).upload_file(
            str(bundle), cloud.resources.inbound_bucket, f"inbound/{TRUST}/{bundle.name}"
        )
    stats = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)
    assert stats.errors == 0 and stats.failed == 0

    report = report_of(cloud, TRUST, example.name, acting_as=TRUST)
    assert (report["outcome"]["rows_in"], report["outcome"]["forwarded"]) == (1, 1)
    assert [(w["field"], w["code"]) for w in report["warnings"]] == [
        ("mother Patient.identifier", "NHS_NUMBER_CHECKSUM")
    ]
    [message] = [
        body
        for body in drain(cloud, cloud.resources.authority_queues[LEEDS], acting_as=LEEDS)
        if body["notification_id"] == "85b9d933-b3e2-41a7-a8f2-f5ee7be4ee82"
    ]
    allowed = REGISTRY.authority(LEEDS).agreement_on(london_day(datetime.now(UTC))).allowed_fields
    assert set(message["record"]) == allowed - {"mother_nhs_number", "address_line_3", "address_line_4"}
    assert message["record"]["postcode"] == "LS17 7DF"

    kent = report_of(cloud, TRUST, generated.name, acting_as=TRUST)
    assert kent["outcome"]["rows_in"] == 1 and [a["gss_code"] for a in kent["outcome"]["authorities"]] == [KENT]
    assert len(drain(cloud, cloud.resources.authority_queues[KENT], acting_as=KENT)) == 1


# -- MESH ------------------------------------------------------------------------------------------------

MESH_FUNCTION, MESH_POLICY = "birthnotify-local-mesh", "birthnotify-local-mesh-function"
MESH_TRUST, MESH_TRUST_MAILBOX, STRANGER_MAILBOX = "RX2", "X26ABC2", "X26ABC3"
FILES_WORKFLOW, REPORTS_WORKFLOW = "BIRTHNOTIFY_FILES_1", "BIRTHNOTIFY_REPORTS_1"


def mesh_send(cloud, sender: str, body: bytes, file_name: str, chunk_bytes: int | None = None) -> str:
    """A trust's (or anyone's) MESH client sends to the service's mailbox on the local cloud's sandbox."""
    with cloud.mesh.client(sender) as client:
        return str(
            client.send_message(
                "X26ABC1", body, workflow_id=FILES_WORKFLOW, filename=file_name, max_chunk_size=chunk_bytes
            )
        )


def mesh_inbox(cloud, mailbox: str = "X26ABC1", workflow: str | None = None, read: bool = False) -> list:
    with cloud.mesh.client(mailbox) as client:
        ids = [str(i) for i in client.list_messages(workflow_filter=workflow)]
        if not read:
            return ids
        messages = []
        for message_id in ids:
            message = client.retrieve_message(message_id)
            messages.append((message.filename, message.local_id, message.read()))
            message.close()
            client.acknowledge_message(message_id)
        return messages


def mesh_run(cloud):
    [run] = cloud.fire_schedules(function=MESH_FUNCTION)
    return run


@pytest.fixture(scope="module")
def by_mesh(cloud):
    """RX2 sends a 40-row file from its mailbox, a stranger's mailbox sends one, and RX2 sends a 17 MiB file in
    three chunks under a name the pipeline cannot read; one scheduled run, then the pipeline."""
    resources = cloud.resources
    cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)
    for queue in resources.authority_queues.values():  # held records wait in the held store, not on a queue
        drain(cloud, queue)
    emails_before = len(cloud.sent_emails())
    rows, body = synthetic_file(40, seed=31, name="births.csv", invalid=0.1, districts={LEEDS: 1.0})
    sent = mesh_send(cloud, MESH_TRUST_MAILBOX, body, "births.csv")
    stranger = mesh_send(cloud, STRANGER_MAILBOX, body, "births.csv")
    large = mesh_send(cloud, MESH_TRUST_MAILBOX, b"x" * (17 * 1024 * 1024), "births.txt", chunk_bytes=6 * 1024 * 1024)
    run = mesh_run(cloud)
    stats = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)
    return {
        "rows": rows,
        "body": body,
        "sent": sent,
        "stranger": stranger,
        "large": large,
        "run": run,
        "stats": stats,
        "leeds": drain(cloud, resources.authority_queues[LEEDS], acting_as=LEEDS),
        "back": mesh_inbox(cloud, MESH_TRUST_MAILBOX, REPORTS_WORKFLOW, read=True),
        "emails": cloud.sent_emails()[emails_before:],
    }


def test_a_trust_sends_by_mesh_and_its_report_comes_back_to_its_mailbox(cloud, by_mesh):
    run, sent = by_mesh["run"], by_mesh["sent"]
    assert run.error is None and run.attempts == 1, run.error
    assert run.result["stored"] == [sent] and mesh_inbox(cloud) == []  # every message acknowledged
    report = report_of(cloud, MESH_TRUST, f"mesh-{sent}.csv", acting_as=MESH_TRUST)  # the trust's own role
    outcome = report["outcome"]
    assert outcome["rows_in"] == 40 and outcome["rejected"] > 0 and report["mesh"]["mailbox"] == MESH_TRUST_MAILBOX
    assert len(by_mesh["leeds"]) == outcome["forwarded"] > 0
    back = {name: body for name, _, body in by_mesh["back"]}
    assert set(back) == {f"report-{sent}.json", f"rejected-rows-{sent}.csv"}
    assert json.loads(back[f"report-{sent}.json"]) == report
    assert by_mesh["stats"].errors == 0 and by_mesh["stats"].failed == 0


def test_mesh_messages_the_pipeline_cannot_take_are_quarantined_streamed_whole_and_reported(cloud, by_mesh):
    run = by_mesh["run"]
    assert run.result["quarantined"] == {
        by_mesh["stranger"]: "UNKNOWN_SENDER",
        by_mesh["large"]: "UNREADABLE_FILE_NAME",
    }
    s3, inbound = cloud.client("s3"), cloud.resources.inbound_bucket
    large = s3.head_object(Bucket=inbound, Key=f"quarantine/mesh-{by_mesh['large']}", PartNumber=1)
    assert large["PartsCount"] == 3 and large["ContentLength"] == 8 * 1024 * 1024  # a multipart upload, as its role
    alerts = [email for email in by_mesh["emails"] if email["subject"].startswith("MESH message quarantined")]
    assert sorted(email["subject"].rsplit(" ", 1)[-1] for email in alerts) == sorted(
        [by_mesh["stranger"], by_mesh["large"]]
    )
    assert all(email["to"] == REGISTRY.operator_emails for email in alerts)
    assert not [email for email in alerts if "births" in email["text"] + email["html"]]  # no file name
    log = log_of(cloud, MESH_FUNCTION)
    assert "births" not in log and '"message":"MESH message quarantined"' in log


EXERCISED_BY_MESH = {
    # statement id -> the refused call, as the failed run logs it
    "ReadMeshSecret": r"\(AccessDenied\) when calling the GetSecretValue operation",
    "TakeRunLease": r"\(AccessDenied\) when calling the PutItem operation",
    "SeeStoredMessages": r"\(403\) when calling the HeadObject operation",
    "StoreMessages": r"\(AccessDenied\) when calling the PutObject operation",
    "SendQuarantineNotices": r"SendMessage operation",
}
MESH_NOT_CALLED_LOCALLY = {
    "WriteOwnLogs",
    "XRayTracing",
    "DecryptOwnEnvironment",
    "EncryptInbound",
    "UsePipelineKey",
    "DecryptMeshSecret",
}


def mesh_policy_statements(cloud) -> tuple[str, str, list[dict]]:
    iam = cloud.client("iam")
    arn = next(p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"] if p["PolicyName"] == MESH_POLICY)
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    return arn, version, (json.loads(document) if isinstance(document, str) else document)["Statement"]


def test_the_mesh_policy_has_no_statement_the_test_below_does_not_exercise(cloud):
    assert {s["Sid"] for s in mesh_policy_statements(cloud)[2]} == set(EXERCISED_BY_MESH) | MESH_NOT_CALLED_LOCALLY


@pytest.mark.parametrize("sid", sorted(EXERCISED_BY_MESH))
def test_without_any_one_statement_of_its_policy_mesh_fails_and_acknowledges_nothing(cloud, by_mesh, sid):
    iam = cloud.client("iam")
    arn, original, statements = mesh_policy_statements(cloud)
    sender = STRANGER_MAILBOX if sid == "SendQuarantineNotices" else MESH_TRUST_MAILBOX
    _, body = synthetic_file(
        5, seed=200 + sorted(EXERCISED_BY_MESH).index(sid), name="births.csv", districts={LEEDS: 1.0}
    )
    message_id = mesh_send(cloud, sender, body, "births.csv")
    log_before = len(log_of(cloud, MESH_FUNCTION))
    reduced = iam.create_policy_version(
        PolicyArn=arn,
        SetAsDefault=True,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [s for s in statements if s["Sid"] != sid]}),
    )["PolicyVersion"]
    function = cloud.runtime.function(MESH_FUNCTION)
    function.module, function.modules = None, {}  # a new container: it reads the secret again (else cached)
    try:
        failed = mesh_run(cloud)
    finally:
        iam.set_default_policy_version(PolicyArn=arn, VersionId=original)
        iam.delete_policy_version(PolicyArn=arn, VersionId=reduced["VersionId"])
    assert failed.error and failed.attempts == 1  # not retried by Lambda: the next scheduled run is the retry
    assert re.search(EXERCISED_BY_MESH[sid], log_of(cloud, MESH_FUNCTION)[log_before:]), failed.error
    assert mesh_inbox(cloud) == [message_id]  # nothing acknowledged

    again = mesh_run(cloud)

    assert again.error is None and mesh_inbox(cloud) == []
    assert message_id in again.result["stored"] + again.result["already_stored"] + list(again.result["quarantined"])
    assert cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS).errors == 0
    mesh_inbox(cloud, MESH_TRUST_MAILBOX, REPORTS_WORKFLOW, read=True)
    drain(cloud, cloud.resources.authority_queues[LEEDS])
