"""The synthesized template, deployed into moto, driven as the users drive the real thing: a trust uploads
with boto3, the local runtime plays Lambda's event source mappings, authorities read their queues."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from birthnotify.ingest import london_day
from birthnotify.registry import load_registry
from birthnotify_cli.localcloud import LocalCloud
from birthnotify_cli.synthetic import SyntheticRows, load_postcodes_by_district, to_bytes
from ingest_support import REGISTRY_PATH

pytestmark = pytest.mark.e2e
REGISTRY = load_registry(REGISTRY_PATH)
LEEDS, KENT, YORK = "E08000035", "E10000016", "E06000014"
ENVELOPE = {"schema_version", "agreement_id", "authority_gss_code", "source", "notification_id",
            "notification_type", "original_notification_id", "record"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    cloud = LocalCloud.start(tmp_path_factory.mktemp("localcloud"))
    yield cloud
    cloud.stop()


def drain(cloud, queue_url):
    sqs, bodies = cloud.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_the_deployment_says_what_moto_could_not_do(cloud):
    lines = "\n".join(cloud.report.lines())
    assert cloud.report.created > 50
    for expected in ("StorageInboundNotifications", "bucket policies", "queue policies", "polls", "not emulated"):
        assert expected in lines
    assert set(cloud.functions[k].name for k in cloud.functions) == {"birthnotify-local-ingest",
                                                                   "birthnotify-local-notify"}


def test_a_trusts_upload_flows_to_authorities_reports_and_emails(cloud):
    postcodes = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
    rows = list(SyntheticRows(postcodes, london_day(datetime.now(UTC)), seed=5).rows(40))
    rows[0]["baby_nhs_number"] = "9990000000"  # fails modulus 11
    rows[1]["restricted"] = "Y"
    rows[2]["postcode"], rows[2]["residence_la_code"] = "ZZ99 3VZ", ""
    body = to_bytes(rows, "e2e.csv")
    # The trust's own upload, with boto3, under its prefix: S3 notifies the ingest queue.
    cloud.client("s3").put_object(Bucket=cloud.outputs["InboundBucketName"], Key="inbound/RX1/e2e 1.csv", Body=body)

    stats = cloud.run_until_idle(timeout_seconds=120)
    assert stats.invocations >= 2 and stats.failed == 0  # ingest, then notify

    report = json.loads(cloud.client("s3").get_object(Bucket=cloud.outputs["ReportsBucketName"],
                                                      Key="reports/RX1/e2e 1.csv.json")["Body"].read())
    outcome = report["outcome"]
    assert outcome["rows_in"] == 40 == outcome["forwarded"] + outcome["rejected"] + outcome["withheld"] + \
        outcome["held"]
    assert (outcome["rejected"], outcome["withheld"]) == (1, 1) and outcome["held"] >= 1
    forwarded = 0
    for counts in outcome["authorities"]:
        authority = REGISTRY.authority(counts["gss_code"])
        allowed = authority.agreement_on(london_day(datetime.now(UTC))).allowed_fields
        bodies = drain(cloud, cloud.authority_queue_url(counts["gss_code"]))
        assert len(bodies) == counts["new"] + counts["amend"] + counts["cancel"]
        for message in bodies:
            assert set(message) <= ENVELOPE and set(message["record"]) <= allowed
        forwarded += len(bodies)
    assert forwarded == outcome["forwarded"] > 0
    held = drain(cloud, cloud.outputs["HeldQueueUrl"])
    assert len(held) == outcome["held"]

    recipients = {to for email in cloud.sent_emails() for to in email["to"]}
    assert set(REGISTRY.trust("RX1").contact_emails) <= recipients
    assert set(REGISTRY.operator_emails) <= recipients  # held records
    for counts in outcome["authorities"]:
        if REGISTRY.authority(counts["gss_code"]).notification_mode == "per_file":
            assert set(REGISTRY.authority(counts["gss_code"]).contact_emails) <= recipients


def test_a_poison_event_ends_in_the_dead_letter_queue(cloud):
    sqs = cloud.client("sqs")
    events = cloud.outputs["FileEventsQueueUrl"]
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=events, AttributeNames=["RedrivePolicy"])
                         ["Attributes"]["RedrivePolicy"])
    sqs.send_message(QueueUrl=events, MessageBody='{"not": "a file-processed event"}')

    stats = cloud.run_until_idle(timeout_seconds=60)

    assert stats.failed == redrive["maxReceiveCount"]  # each receive failed, then SQS moved it
    dlq_url = sqs.get_queue_url(QueueName=redrive["deadLetterTargetArn"].rsplit(":", 1)[-1])["QueueUrl"]
    [dead] = drain(cloud, dlq_url)
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
    roles = {o.split("/")[-1]: o for o in cloud.outputs.values() if ":role/" in str(o)}
    partner = iam.get_user(UserName="partner")["User"]["Arn"]
    for role in ("birthnotify-local-upload-RX1", f"birthnotify-local-consumer-{LEEDS}"):
        # The registry's principals live in the trust's and the council's own accounts: stand in for them.
        trust_policy = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        trust_policy["Statement"][0]["Principal"] = {"AWS": partner}
        iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(trust_policy))

    def as_role(role_name: str, service: str):
        sts = boto3.client("sts", endpoint_url=cloud.endpoint_url, region_name="eu-west-2",
                           aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        credentials = sts.assume_role(RoleArn=roles[role_name], RoleSessionName="test")["Credentials"]
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

    inbound, leeds, kent = (cloud.outputs["InboundBucketName"], cloud.authority_queue_url(LEEDS),
                            cloud.authority_queue_url(KENT))
    requests.post(f"{cloud.endpoint_url}/moto-api/reset-auth", data=b"0", timeout=5)
    try:
        trust = as_role("birthnotify-local-upload-RX1", "s3")
        trust.put_object(Bucket=inbound, Key="inbound/RX1/own.csv", Body=b"x")  # allowed
        assert denied(lambda: trust.put_object(Bucket=inbound, Key="inbound/RX2/other.csv", Body=b"x"))
        assert denied(lambda: trust.get_object(Bucket=inbound, Key="inbound/RX1/own.csv"))  # write-only
        council = as_role(f"birthnotify-local-consumer-{LEEDS}", "sqs")
        council.receive_message(QueueUrl=leeds, WaitTimeSeconds=0)  # allowed
        assert denied(lambda: council.receive_message(QueueUrl=kent, WaitTimeSeconds=0))
        assert denied(lambda: council.send_message(QueueUrl=leeds, MessageBody="x", MessageGroupId="g"))
    finally:
        requests.post(f"{cloud.endpoint_url}/moto-api/reset-auth", data=b"inf", timeout=5)
