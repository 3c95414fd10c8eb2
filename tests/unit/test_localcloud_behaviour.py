"""Where the local cloud makes moto behave as AWS does: FIFO deduplication that outlives a deleted message
and forgets after five minutes, SQS's clock moved forward instead of waited for, and S3 events of a
versioned bucket that name the object's version. Each only while a local cloud is on (moto_fidelity's own
tests are the integration tests that use it)."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from birthnotify_cli.localcloud import behaviour
from birthnotify_cli.localcloud.behaviour import (
    DEDUPLICATION_SECONDS,
    advance_sqs_clock,
    seconds_until_visible,
    skipped_seconds,
)
from moto import mock_aws

REGION = "eu-west-2"


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION), boto3.client("s3", region_name=REGION)


def fifo(sqs, name: str, scope: str = "queue") -> str:
    return sqs.create_queue(
        QueueName=f"{name}.fifo",
        Attributes={
            "FifoQueue": "true",
            "DeduplicationScope": scope,
            "FifoThroughputLimit": "perQueue" if scope == "queue" else "perMessageGroupId",
        },
    )["QueueUrl"]


def send(sqs, url: str, dedup: str, group: str = "g") -> None:
    sqs.send_message(QueueUrl=url, MessageBody=dedup, MessageGroupId=group, MessageDeduplicationId=dedup)


def take_all(sqs, url: str) -> list[str]:
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [m["Body"] for m in messages]
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_a_deduplication_id_is_remembered_after_its_message_is_deleted_until_five_minutes_pass(aws):
    sqs, _ = aws
    with behaviour.active():
        url = fifo(sqs, "dedup")
        send(sqs, url, "n-1")
        assert take_all(sqs, url) == ["n-1"]
        send(sqs, url, "n-1")  # a retry inside the window: dropped, as SQS drops it
        assert take_all(sqs, url) == []
        advance_sqs_clock(DEDUPLICATION_SECONDS - 1)
        send(sqs, url, "n-1")
        assert take_all(sqs, url) == []
        advance_sqs_clock(1)  # five minutes after the first send: forgotten, the retry is a new message
        send(sqs, url, "n-1")
        assert take_all(sqs, url) == ["n-1"]


def test_with_message_group_scope_the_same_id_in_another_group_is_another_message(aws):
    sqs, _ = aws
    with behaviour.active():
        url = fifo(sqs, "grouped", scope="messageGroup")
        send(sqs, url, "n-1", group="a")
        send(sqs, url, "n-1", group="b")
        send(sqs, url, "n-1", group="a")
        assert sorted(take_all(sqs, url)) == ["n-1", "n-1"]


def test_without_a_local_cloud_moto_deduplicates_as_it_always_has(aws):
    sqs, _ = aws
    with behaviour.active():
        pass  # installed, then switched off
    url = fifo(sqs, "plain")
    send(sqs, url, "n-1")
    assert take_all(sqs, url) == ["n-1"]
    send(sqs, url, "n-1")  # moto compares only with messages still queued
    assert take_all(sqs, url) == ["n-1"]


def test_moving_sqs_clock_ends_visibility_timeouts_and_delays_and_says_how_long_is_left(aws):
    sqs, _ = aws
    with behaviour.active():
        url = sqs.create_queue(QueueName="timed", Attributes={"VisibilityTimeout": "3600"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="in flight")
        received = time.monotonic()  # the real seconds that pass from here are the machine's, however slow
        assert sqs.receive_message(QueueUrl=url)["Messages"]
        sent = time.monotonic()
        sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=900)
        assert sqs.receive_message(QueueUrl=url).get("Messages") is None
        left = seconds_until_visible(["timed"], "123456789012", REGION)
        assert 900 - (time.monotonic() - sent) - 1 <= left <= 900
        advance_sqs_clock(901)
        assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["delayed"]
        left = seconds_until_visible(["timed"], "123456789012", REGION)
        assert 3600 - 901 - (time.monotonic() - received) - 1 <= left <= 3600 - 901
        advance_sqs_clock(2700)
        assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["in flight"]
        with pytest.raises(ValueError):
            advance_sqs_clock(-1)
    assert skipped_seconds() == 0
    with pytest.raises(RuntimeError):
        advance_sqs_clock(1)  # no local cloud: SQS keeps the machine's time


def test_events_of_a_versioned_bucket_name_the_objects_version(aws):
    sqs, s3 = aws
    with behaviour.active():
        url = sqs.create_queue(QueueName="events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for bucket, versioned in (("versioned", True), ("unversioned", False)):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
            if versioned:
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
                },
            )
        versions = [s3.put_object(Bucket="versioned", Key="same key", Body=b"same")["VersionId"] for _ in range(2)]
        s3.put_object(Bucket="unversioned", Key="key", Body=b"x")
        records = [
            json.loads(m["Body"])["Records"][0]
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
            if "Records" in json.loads(m["Body"])
        ]
    by_bucket = {}
    for record in records:
        by_bucket.setdefault(record["s3"]["bucket"]["name"], []).append(record["s3"]["object"].get("versionId"))
    assert by_bucket["versioned"] == versions and versions[0] != versions[1]
    assert by_bucket["unversioned"] == [None]  # S3 names no version for an unversioned bucket
