"""IAM in the local cloud, against a bare moto server with enforcement on: the corrections to moto's
evaluation (batch calls, table and queue resources, service principals, JSON errors), the stand-in principals,
and role credentials that refresh before they expire. The e2e tests run the deployed stack's policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import requests
from birthnotify_cli.localcloud import iam
from botocore.exceptions import ClientError

REGION = "eu-west-2"


@pytest.fixture(scope="module")
def server():
    from moto.server import ThreadedMotoServer

    iam.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    server.stop()


@pytest.fixture
def admin(server):
    """A fresh moto, its administrator, and IAM enforced until the test ends."""
    requests.post(f"{server}/moto-api/reset", timeout=10)
    previous = iam.set_enforced(server, False)
    key = iam.create_admin(server)
    iam.set_enforced(server, True)
    yield key
    iam.set_enforced(server, previous)


def client(server, key, service):
    return iam.session_for_key(key).client(service, endpoint_url=server)


def user(server, admin, name, statements) -> iam.AccessKey:
    return iam.create_user(client(server, admin, "iam"), name, {"Version": "2012-10-17", "Statement": statements})


def code(call) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return refused.value.response["Error"]["Code"]


def test_sqs_batch_calls_are_allowed_by_the_single_calls_permission_and_refusals_read_as_access_denied(server, admin):
    sqs = client(server, admin, "sqs")
    own, other = (sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("own", "other"))
    arn = f"arn:aws:sqs:{REGION}:123456789012:own"
    sender = client(
        server,
        user(
            server,
            admin,
            "sender",
            [
                {
                    "Effect": "Allow",
                    "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueUrl"],
                    "Resource": arn,
                }
            ],
        ),
        "sqs",
    )
    assert sender.get_queue_url(QueueName="own")["QueueUrl"].endswith("/own")  # authorised on the queue's ARN
    sent = sender.send_message_batch(QueueUrl=own, Entries=[{"Id": "1", "MessageBody": "a"}])
    assert [s["Id"] for s in sent["Successful"]] == ["1"]
    [message] = sender.receive_message(QueueUrl=own)["Messages"]
    deleted = sender.delete_message_batch(
        QueueUrl=own, Entries=[{"Id": "1", "ReceiptHandle": message["ReceiptHandle"]}]
    )
    assert deleted["Successful"]
    assert (
        code(lambda: sender.send_message_batch(QueueUrl=other, Entries=[{"Id": "1", "MessageBody": "a"}]))
        == "AccessDenied"
    )  # as AWS names it (moto's XML error read as "403" by the JSON client)
    assert code(lambda: sender.get_queue_url(QueueName="other")) == "AccessDenied"


def test_iam_wildcards_match_one_character_or_any_run_of_them(server, admin):
    sqs = client(server, admin, "sqs")
    for name in ("authority-E08000035.fifo", "authority-E0800003.fifo", "authority-E08000035Xfifo"):
        sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"} if name.endswith(".fifo") else {})
    reader = client(
        server,
        user(
            server,
            admin,
            "wildcards",
            [
                {
                    "Effect": "Allow",
                    "Action": "sqs:GetQueueUrl",
                    "Resource": f"arn:aws:sqs:{REGION}:123456789012:authority-?????????.fifo",
                }
            ],
        ),
        "sqs",
    )
    assert reader.get_queue_url(QueueName="authority-E08000035.fifo")["QueueUrl"]
    assert code(lambda: reader.get_queue_url(QueueName="authority-E0800003.fifo")) == "AccessDenied"  # one short
    assert code(lambda: reader.get_queue_url(QueueName="authority-E08000035Xfifo")) == "AccessDenied"  # . is a dot


def test_dynamodb_calls_are_authorised_against_each_table_they_name(server, admin):
    dynamodb = client(server, admin, "dynamodb")
    for table in ("state", "other"):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    reader = client(
        server,
        user(
            server,
            admin,
            "reader",
            [
                {
                    "Effect": "Allow",
                    "Action": ["dynamodb:GetItem"],
                    "Resource": f"arn:aws:dynamodb:{REGION}:123456789012:table/state",
                }
            ],
        ),
        "dynamodb",
    )
    key = {"id": {"S": "x"}}
    reader.get_item(TableName="state", Key=key)
    assert code(lambda: reader.get_item(TableName="other", Key=key)) == "AccessDenied"
    # BatchGetItem is a permission of its own, on each table of the request.
    assert code(lambda: reader.batch_get_item(RequestItems={"state": {"Keys": [key]}})) == "AccessDenied"
    batch = client(
        server,
        user(
            server,
            admin,
            "batch",
            [
                {
                    "Effect": "Allow",
                    "Action": ["dynamodb:BatchGetItem"],
                    "Resource": f"arn:aws:dynamodb:{REGION}:123456789012:table/state",
                }
            ],
        ),
        "dynamodb",
    )
    batch.batch_get_item(RequestItems={"state": {"Keys": [key]}})
    assert (
        code(lambda: batch.batch_get_item(RequestItems={"state": {"Keys": [key]}, "other": {"Keys": [key]}}))
        == "AccessDenied"
    )


def test_a_stand_in_alone_may_assume_the_role_and_a_lambda_role_is_for_lambda_only(server, admin):
    admin_iam = client(server, admin, "iam")
    role = admin_iam.create_role(
        RoleName="upload",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"AWS": "arn:aws:iam::111111111111:role/elsewhere"},
                    }
                ],
            }
        ),
    )
    stand_in = iam.stand_in_for(admin_iam, role["Role"]["Arn"], "stand-in-trust-RX1")
    identity = (
        iam.assume_role_session(server, stand_in, role["Role"]["Arn"], "trust-RX1")
        .client("sts", endpoint_url=server)
        .get_caller_identity()
    )
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/upload/trust-RX1"
    assert (
        code(lambda: client(server, admin, "sts").assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="admin"))
        == "AccessDenied"
    )
    function_role = admin_iam.create_role(
        RoleName="fn",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}
                ],
            }
        ),
    )["Role"]
    assert iam.trusts_lambda(function_role["AssumeRolePolicyDocument"])
    assert not iam.trusts_lambda(role["Role"]["AssumeRolePolicyDocument"])
    # Only Lambda's service principal assumes it (moto answered an IAM user with an internal error).
    assert (
        code(lambda: client(server, admin, "sts").assume_role(RoleArn=function_role["Arn"], RoleSessionName="admin"))
        == "AccessDenied"
    )
    lambda_identity = (
        iam.lambda_session(function_role["Arn"], "my-function").client("sts", endpoint_url=server).get_caller_identity()
    )
    assert lambda_identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/fn/my-function"


def test_fake_keys_are_refused_once_iam_is_enforced(server, admin):
    anyone = boto3.client(
        "sqs",
        endpoint_url=server,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106
    )
    assert code(anyone.list_queues) == "InvalidClientTokenId"


def test_role_credentials_are_fetched_again_before_they_expire():
    fetched = []

    def fetch():
        fetched.append(datetime.now(UTC))
        expiry = datetime.now(UTC) + (timedelta(minutes=5) if len(fetched) == 1 else timedelta(hours=1))
        return f"ASIA{len(fetched)}", "secret", "token", expiry

    session = iam.refreshing_session(fetch)
    credentials = session.get_credentials()
    # Within botocore's refresh margin of its expiry: the next use fetches new ones.
    assert credentials.get_frozen_credentials().access_key == "ASIA2"
    assert credentials.get_frozen_credentials().access_key == "ASIA2" and len(fetched) == 2


def test_a_bulk_templated_email_is_authorised_against_the_identity_the_configuration_set_and_the_template(
    server, admin
):
    sender = "births@example.nhs.uk"
    ses = client(server, admin, "ses")
    ses.verify_email_identity(EmailAddress=sender)
    ses.create_configuration_set(ConfigurationSet={"Name": "emails"})
    for name in ("emails-template", "other-template"):
        ses.create_template(Template={"TemplateName": name, "SubjectPart": "{{{subject}}}", "TextPart": "{{{text}}}"})
    arn = f"arn:aws:ses:{REGION}:123456789012"
    notifier = client(
        server,
        user(
            server,
            admin,
            "notifier",
            [
                {
                    "Effect": "Allow",
                    "Action": "ses:SendBulkTemplatedEmail",
                    "Resource": [
                        f"{arn}:identity/{sender}",
                        f"{arn}:configuration-set/emails",
                        f"{arn}:template/emails-template",
                    ],
                }
            ],
        ),
        "ses",
    )

    def send(template: str) -> dict:
        return notifier.send_bulk_templated_email(
            Source=sender,
            ConfigurationSetName="emails",
            Template=template,
            DefaultTemplateData='{"subject": "s", "text": "t"}',
            Destinations=[{"Destination": {"ToAddresses": ["council@example.gov.uk"]}}],
        )

    assert len(send("emails-template")["Status"]) == 1
    assert code(lambda: send("other-template")) == "AccessDenied"  # a template the policy does not name
