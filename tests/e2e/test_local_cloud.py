"""The synthesized templates (the core stack and the authority stacks), deployed into moto, driven as the users
drive the real thing: a trust uploads with boto3, the local runtime plays Lambda's event source mappings,
authorities read their queues (in several authority stacks), and the notifier's emails are read back from
SES. One deployment for the whole module."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from birthnotify.adapters.reports import latest_report_key
from birthnotify.application.offline import check_file
from birthnotify.domain.messages import FileProcessedEvent
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.registry import NotificationMode, load_registry
from birthnotify.shared.clock import london_day
from birthnotify_cli.localcloud import LocalCloud
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district, to_bytes
from ingest_support import REGISTRY_PATH

pytestmark = pytest.mark.e2e
REGISTRY = load_registry(REGISTRY_PATH)
LEEDS, KENT, CAMDEN, YORK, MANCHESTER = "E08000035", "E10000016", "E09000007", "E06000014", "E08000003"
KENT_DISTRICTS = ("E07000110", "E07000111", "E07000115")
TRUST = "RX1"
ROWS = 2000
HANG_GUARD_SECONDS = 600
"""Only to end a test that hangs: nothing here is expected to take long, on however busy a machine."""
ENVELOPE = {"schema_version", "agreement_id", "authority_gss_code", "source", "notification_id",
            "notification_type", "original_notification_id", "record"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    # A failed message is retried at once (Lambda would wait for the visibility timeout; the demo waits 1 s).
    with LocalCloud.start(tmp_path_factory.mktemp("localcloud"), retry_delay_seconds=0) as cloud:
        yield cloud


@pytest.fixture(scope="module")
def upload(cloud, tmp_path_factory):
    """A 2,000-row synthetic file from trust RX1: every served authority (Kent through its districts),
    invalid, withheld and held rows (an unserved district, York's lapsed agreement, unknown postcodes)."""
    today = london_day(datetime.now(UTC))
    postcodes = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
    weights = {LEEDS: 1.0, CAMDEN: 1.0, YORK: 0.1, **{district: 0.7 for district in KENT_DISTRICTS}}
    mix = Mix(invalid=0.05, withheld=0.04, held=0.03, amend_cancel=0.05, districts=weights)
    rows = list(SyntheticRows(postcodes, today, seed=11, mix=mix, held_districts=(MANCHESTER,)).rows(ROWS))
    name = "births 2026-11-24.csv"
    path = tmp_path_factory.mktemp("upload") / name
    path.write_bytes(to_bytes(rows, name))
    expected = check_file(path, trust_ods_code=TRUST, registry=REGISTRY, upload_day=today,
                          postcodes=PostcodeDirectory.load(REGISTRY_PATH.parent / "postcodes.csv",
                                                           REGISTRY.postcode_directory))
    # The trust's own upload, with boto3, under its prefix: S3 notifies the ingest queue.
    cloud.client("s3").upload_file(str(path), cloud.resources.inbound_bucket, f"inbound/{TRUST}/{name}")
    stats = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)
    s3, bucket = cloud.client("s3"), cloud.resources.reports_bucket
    report = json.loads(s3.get_object(Bucket=bucket, Key=latest_report_key(s3, bucket, TRUST, name))["Body"].read())
    return {"rows": rows, "expected": expected, "stats": stats, "report": report,
            "day": today, "emails": cloud.sent_emails()}


def drain(cloud, queue_url):
    sqs, bodies = cloud.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(message["Body"]) for message in messages]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return bodies


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
        created = {r["LogicalResourceId"] for r in cloud.client("cloudformation").describe_stack_resources(
            StackName=path.name.removesuffix(".template.json"))["StackResources"]}
        assert set(template["Resources"]) <= created | listed, path.name
    assert all(item.why for item in cloud.report.items)
    applied = {item.resource_type for item in cloud.report.applied}
    assert {"Custom::S3BucketNotifications", "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy"} <= applied
    assert {m.function.name for m in cloud.runtime.mappings} == {"birthnotify-local-ingest", "birthnotify-local-notify"}
    assert [s.function.name for s in cloud.runtime.schedules] == ["birthnotify-local-notify"]
    assert not [i for i in cloud.report.skipped if i.resource_type.startswith("Custom::")]  # none hangs the stack
    lines = "\n".join(cloud.report.lines())
    assert "local-runtime" in lines and "not-emulated" in lines


def test_the_functions_get_the_templates_environment_resolved_against_the_stack(cloud):
    ingest = cloud.runtime.function("birthnotify-local-ingest")
    resources = cloud.resources
    assert ingest.environment["REPORTS_BUCKET"] == resources.reports_bucket
    assert ingest.environment["HELD_QUEUE_URL"].endswith("/birthnotify-local-held")
    assert ingest.environment["REGISTRY_PATH"].endswith("config/registry.toml")  # /opt/config -> config layer
    assert ingest.timeout_seconds == 600 and any(p.name == "python" for p in ingest.python_paths)
    assert set(resources.authority_queues) == {a.gss_code for a in REGISTRY.authorities}
    assert len(set(resources.authority_stacks.values())) >= 2  # the registry spans several authority stacks
    assert set(resources.trust_upload_roles) == {t.ods_code for t in REGISTRY.trusts}
    assert resources.ingest_queue_url in resources.dead_letter_queues


def test_a_trusts_file_reaches_each_authority_with_only_its_agreed_fields(cloud, upload):
    report, expected = upload["report"], upload["expected"]
    outcome = report["outcome"]
    # What `birthnotify validate` predicts offline is what the deployed pipeline did.
    assert outcome == expected.outcome.model_dump(mode="json")
    assert outcome["rows_in"] == ROWS == outcome["forwarded"] + outcome["rejected"] + outcome["withheld"] + \
        outcome["held"]
    assert min(outcome["rejected"], outcome["withheld"], outcome["held"]) > 0
    assert {a["gss_code"] for a in outcome["authorities"]} == {LEEDS, KENT, CAMDEN}  # York's agreement lapsed
    # Leeds, Kent and Camden are in three authority stacks: the core stack's ingest reached each by name.
    assert len({cloud.resources.authority_stacks[gss] for gss in (LEEDS, KENT, CAMDEN)}) == 3
    forwarded = 0
    by_id = {row["notification_id"]: row for row in upload["rows"]}
    for counts in outcome["authorities"]:
        allowed = REGISTRY.authority(counts["gss_code"]).agreement_on(upload["day"]).allowed_fields
        bodies = drain(cloud, cloud.resources.authority_queues[counts["gss_code"]])
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
    assert len(drain(cloud, cloud.resources.held_queue_url)) == outcome["held"]


def test_a_2000_row_file_goes_through_without_a_failure_or_a_retry(upload):
    # How long it takes is the machine's business (make bench measures cost); that nothing failed is ours.
    stats = upload["stats"]
    assert stats.errors == 0 and stats.failed == 0
    assert stats.by_function == {"birthnotify-local-ingest": stats.by_function["birthnotify-local-ingest"],
                                 "birthnotify-local-notify": 1}
    assert stats.by_function["birthnotify-local-ingest"] <= 2  # the upload (and perhaps S3's TestEvent)


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
    personal = {row[field] for row in upload["rows"] for field in ("baby_nhs_number", "mother_nhs_number", "postcode")
                if row[field]}
    for email in emails:
        words = set(re.findall(r"[A-Z0-9]{2,4} [0-9][A-Z]{2}|\d{10}", email["text"] + email["html"]))
        assert not words & personal, email["subject"]


def test_the_digest_schedule_sends_yesterdays_digest_once(cloud, upload):
    report = upload["report"]
    event = FileProcessedEvent.model_validate({k: report[k] for k in FileProcessedEvent.model_fields if k in report})
    yesterday = event.model_copy(update={"event_id": f"{event.event_id}-yesterday",
                                         "processed_at": event.processed_at - timedelta(days=1)})
    cloud.client("sqs").send_message(QueueUrl=cloud.resources.file_events_queue_url,
                                     MessageBody=yesterday.model_dump_json())
    assert cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS).failed == 0
    before = len(cloud.sent_emails())

    [run] = cloud.fire_schedules()
    assert run.error is None and run.result == {"digests_sent": 1}
    digest = cloud.sent_emails()[before:]
    assert {to for email in digest for to in email["to"]} == set(REGISTRY.authority(CAMDEN).contact_emails)
    [again] = cloud.fire_schedules()
    assert again.result == {"digests_sent": 0}


def test_a_poison_event_ends_in_the_dead_letter_queue_after_max_receive_count(cloud):
    sqs = cloud.client("sqs")
    events = cloud.resources.file_events_queue_url
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=events, AttributeNames=["RedrivePolicy"])
                         ["Attributes"]["RedrivePolicy"])
    cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)  # whatever earlier tests (or S3's TestEvent) left
    sqs.send_message(QueueUrl=events, MessageBody='{"not": "a file-processed event"}')

    stats = cloud.run_until_idle(timeout_seconds=HANG_GUARD_SECONDS)

    assert stats.failed == stats.invocations == redrive["maxReceiveCount"]  # each receive failed, then SQS moved it
    [dead] = drain(cloud, cloud.resources.dead_letter_queues[events])
    assert dead == {"not": "a file-processed event"}


def test_with_iam_enforced_a_trust_and_an_authority_reach_only_their_own(cloud):
    """moto enforces IAM for these calls: the deployed roles' policies, not a copy, are what is tested."""
    import boto3
    import requests
    from botocore.exceptions import ClientError

    iam = cloud.client("iam")
    iam.create_user(UserName="partner")
    iam.put_user_policy(UserName="partner", PolicyName="assume", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="partner")["AccessKey"]
    resources = cloud.resources
    roles = {TRUST: resources.trust_upload_roles[TRUST], LEEDS: resources.authority_consumer_roles[LEEDS]}
    partner = iam.get_user(UserName="partner")["User"]["Arn"]
    for arn in roles.values():
        # The registry's principals live in the trust's and the council's own accounts: stand in for them.
        role = arn.rsplit("/", 1)[-1]
        trust_policy = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        trust_policy["Statement"][0]["Principal"] = {"AWS": partner}
        iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(trust_policy))

    def as_role(who: str, service: str):
        sts = boto3.client("sts", endpoint_url=cloud.endpoint_url, region_name="eu-west-2",
                           aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        credentials = sts.assume_role(RoleArn=roles[who], RoleSessionName="test")["Credentials"]
        return boto3.client(service, endpoint_url=cloud.endpoint_url, region_name="eu-west-2",
                            aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])

    def denied(call) -> bool:
        try:
            call()
        except ClientError as error:
            return error.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403")
        return False

    inbound, leeds, kent = resources.inbound_bucket, resources.authority_queues[LEEDS], resources.authority_queues[KENT]
    requests.post(f"{cloud.endpoint_url}/moto-api/reset-auth", data=b"0", timeout=HANG_GUARD_SECONDS)
    try:
        trust = as_role(TRUST, "s3")
        trust.put_object(Bucket=inbound, Key="inbound/RX1/own.csv", Body=b"x")  # allowed
        assert denied(lambda: trust.put_object(Bucket=inbound, Key="inbound/RX2/other.csv", Body=b"x"))
        assert denied(lambda: trust.get_object(Bucket=inbound, Key="inbound/RX1/own.csv"))  # write-only
        council = as_role(LEEDS, "sqs")
        council.receive_message(QueueUrl=leeds, WaitTimeSeconds=0)  # allowed
        assert denied(lambda: council.receive_message(QueueUrl=kent, WaitTimeSeconds=0))
        assert denied(lambda: council.send_message(QueueUrl=leeds, MessageBody="x", MessageGroupId="g"))
    finally:
        requests.post(f"{cloud.endpoint_url}/moto-api/reset-auth", data=b"inf", timeout=HANG_GUARD_SECONDS)
