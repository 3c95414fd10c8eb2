"""What happens when SQS refuses records or the function runs out of time: nothing lost, nothing twice."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

import pytest
from birthnotify.shared.clock import london_day
from birthnotify_cli.synthetic import to_bytes
from ingest_support import RunsOutOfTime

LEEDS, KENT = "E08000035", "E10000016"
MAIDSTONE = "E07000110"


def today():
    return london_day(datetime.now(UTC))


class FlakySqs:
    """The real (moto) SQS client, except that chosen queues refuse some or all entries of a batch."""

    def __init__(self, real, refuse) -> None:
        self._real = real
        self.refuse = refuse  # (queue_url, attempt number for that queue) -> how many entries to refuse
        self.attempts: Counter[str] = Counter()
        self.refused = 0

    def __getattr__(self, name):
        return getattr(self._real, name)

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        self.attempts[QueueUrl] += 1
        refused = min(len(Entries), self.refuse(QueueUrl, self.attempts[QueueUrl]))
        self.refused += refused
        accepted = self._real.send_message_batch(QueueUrl=QueueUrl, Entries=Entries[refused:])
        failed = [
            {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"}
            for entry in Entries[:refused]
        ]
        return {"Successful": accepted.get("Successful", []), "Failed": failed}


def install_sqs(stack, refuse) -> FlakySqs:
    flaky = FlakySqs(stack.sqs, refuse)
    stack.rewire(sqs=flaky)
    return flaky


def notification_ids(bodies):
    return Counter(body["notification_id"] for body in bodies)


def test_only_refused_entries_are_retried_and_each_record_arrives_once(ingest_stack, rows_factory):
    rows = rows_factory(47, today(), districts={LEEDS: 1})
    leeds = ingest_stack.authority_queue_urls[LEEDS]
    # Every first attempt at a Leeds batch has its first three entries refused.
    flaky = install_sqs(ingest_stack, lambda url, attempt: 3 if url == leeds and attempt % 2 == 1 else 0)
    ingest_stack.upload("RX1", "flaky.csv", to_bytes(rows, "x.csv"))

    assert ingest_stack.run() == [{"batchItemFailures": []}]

    assert flaky.refused == 15  # five batches (10, 10, 10, 10, 7), three refused from each
    assert notification_ids(ingest_stack.drain(leeds)) == Counter(row["notification_id"] for row in rows)
    outcome = ingest_stack.report("RX1", "flaky.csv")["outcome"]
    assert (outcome["rows_in"], outcome["forwarded"]) == (47, 47)


def test_a_file_sqs_keeps_refusing_fails_alone_and_completes_on_retry(ingest_stack, rows_factory):
    leeds_rows = rows_factory(12, today(), districts={LEEDS: 1}, seed=1)
    kent_rows = rows_factory(25, today(), districts={MAIDSTONE: 1}, seed=2)
    for row in kent_rows:
        row["notification_id"] = "K" + row["notification_id"]
    kent = ingest_stack.authority_queue_urls[KENT]
    # Kent's queue accepts the first batch, then refuses everything (an outage that outlasts the retries).
    flaky = install_sqs(ingest_stack, lambda url, attempt: 0 if url != kent or attempt == 1 else 10)
    ingest_stack.upload("RX1", "leeds.csv", to_bytes(leeds_rows, "x.csv"))
    ingest_stack.upload("RX2", "kent.csv", to_bytes(kent_rows, "x.csv"))

    messages = ingest_stack.sqs.receive_message(
        QueueUrl=ingest_stack.ingest_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
    )["Messages"]
    assert len(messages) == 2
    [first] = ingest_stack.run(batch_size=10, max_polls=1, visibility_timeout=0)
    [failure] = first["batchItemFailures"]
    failed_key = next(m["Body"] for m in messages if m["MessageId"] == failure["itemIdentifier"])
    assert "kent.csv" in failed_key

    # The good file went through; the failed one has no report, so nothing claims it was forwarded.
    assert ingest_stack.report("RX1", "leeds.csv")["outcome"]["forwarded"] == 12
    assert ingest_stack.reports("RX2", "kent.csv") == []
    [event] = ingest_stack.drain(ingest_stack.events_queue_url)
    assert event["key"] == "inbound/RX1/leeds.csv"

    # SQS recovers; the message becomes visible again and the retry completes the file.
    flaky.refuse = lambda url, attempt: 0
    [retry] = ingest_stack.run(batch_size=10)
    assert retry == {"batchItemFailures": []}
    # The retry sends only what SQS had not accepted (the failed run recorded it): Kent sees each record once.
    assert notification_ids(ingest_stack.drain(kent)) == Counter(row["notification_id"] for row in kent_rows)
    outcome = ingest_stack.report("RX2", "kent.csv")["outcome"]
    assert (outcome["rows_in"], outcome["forwarded"]) == (25, 25)


def test_a_file_interrupted_by_the_timeout_resumes_without_loss_or_duplicates(ingest_stack, rows_factory, monkeypatch):
    monkeypatch.setattr(ingest_stack.handler, "RESUME_DELAY_SECONDS", 0)
    rows = rows_factory(450, today(), districts={LEEDS: 2, MAIDSTONE: 1})
    ingest_stack.upload("RX1", "big.csv", to_bytes(rows, "x.csv"))

    # The pipeline checks the time every 200 rows (Powertools asks too); time runs short part-way through.
    first = ingest_stack.run(context=RunsOutOfTime(checks_before_timeout=2), max_polls=1)
    assert len(first[0]["batchItemFailures"]) == 1
    assert ingest_stack.drain(ingest_stack.events_queue_url) == []  # not finished: no report, no event
    leeds_so_far = ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])
    kent_so_far = ingest_stack.drain(ingest_stack.authority_queue_urls[KENT])
    sent_before_stop = len(leeds_so_far) + len(kent_so_far)
    assert sent_before_stop % 200 == 0 and 0 < sent_before_stop < 450

    assert ingest_stack.run() == [{"batchItemFailures": []}]

    leeds = leeds_so_far + ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS])
    kent = kent_so_far + ingest_stack.drain(ingest_stack.authority_queue_urls[KENT])
    assert notification_ids(leeds + kent) == Counter(row["notification_id"] for row in rows)
    # Order is promised within a message group (a notification and its corrections), not across a queue:
    # batches of different groups travel at once (test_concurrent_sending).
    by_group: dict[str, list[int]] = {}
    for body in leeds:
        by_group.setdefault(body["_attributes"]["MessageGroupId"], []).append(body["source"]["row"])
    assert all(rows_of_group == sorted(rows_of_group) for rows_of_group in by_group.values())
    report = ingest_stack.report("RX1", "big.csv")
    counts = {a["gss_code"]: a["new"] for a in report["outcome"]["authorities"]}
    assert counts == {LEEDS: len(leeds), KENT: len(kent)}
    assert report["outcome"]["rows_in"] == report["outcome"]["forwarded"] == 450
    [event] = ingest_stack.drain(ingest_stack.events_queue_url)
    assert event["status"] == "PROCESSED"


@pytest.mark.parametrize("name", ["big.csv", "big.jsonl.gz"])
def test_a_streamed_file_interrupted_by_the_timeout_resumes_from_its_snapshot_without_loss_or_duplicates(
    ingest_stack, rows_factory, monkeypatch, sqs_clock, name
):
    """A file over IN_MEMORY_BYTES: each delivery's first pass reads the response that gave its size (the
    redelivery only hashes it, to find the snapshot), and the rows after the checkpoint come from a request of
    their own, never from that already-read response."""
    from birthnotify.application import ingest

    monkeypatch.setattr(ingest_stack.handler, "RESUME_DELAY_SECONDS", 0)
    monkeypatch.setattr(ingest, "IN_MEMORY_BYTES", 64)
    ingest_stack.rewire()
    rows = rows_factory(450, today(), districts={LEEDS: 2, MAIDSTONE: 1})
    key = ingest_stack.upload("RX1", name, to_bytes(rows, name))
    requests = inbound_requests(ingest_stack)

    first = ingest_stack.run(context=RunsOutOfTime(checks_before_timeout=2), max_polls=1)
    assert len(first[0]["batchItemFailures"]) == 1
    # The first pass parsed the first response (a .gz's inflation-only check made one request more).
    assert requests == Counter({("GetObject", key): 3 if name.endswith(".gz") else 2})
    sent = [ingest_stack.drain(ingest_stack.authority_queue_urls[gss]) for gss in (LEEDS, KENT)]
    assert 0 < sum(map(len, sent)) < 450
    requests.clear()

    sqs_clock.advance(3600)  # the redelivery comes after the deduplication window: SQS would drop no repeat
    assert ingest_stack.run() == [{"batchItemFailures": []}]

    assert requests == Counter({("GetObject", key): 2})  # hashed from the first response, then the second pass
    sent += [ingest_stack.drain(ingest_stack.authority_queue_urls[gss]) for gss in (LEEDS, KENT)]
    assert notification_ids([body for bodies in sent for body in bodies]) == Counter(
        row["notification_id"] for row in rows
    )
    outcome = ingest_stack.report("RX1", name)["outcome"]
    assert outcome["rows_in"] == outcome["forwarded"] == 450


def test_a_missing_authority_queue_fails_its_file_clearly_and_the_retry_completes_it(
    ingest_stack, rows_factory, caplog, sqs_clock
):
    """Queue URLs are built from the deployment's URL base, not looked up: a queue that is not there must
    still fail the file (not lose its records), saying which queue and what to check."""
    kent_rows = rows_factory(8, today(), districts={MAIDSTONE: 1}, seed=4)
    leeds_rows = rows_factory(6, today(), districts={LEEDS: 1}, seed=5)
    kent = ingest_stack.authority_queue_urls[KENT]
    kent_name = kent.rsplit("/", 1)[-1]
    attributes = ingest_stack.sqs.get_queue_attributes(QueueUrl=kent, AttributeNames=["FifoQueue"])["Attributes"]
    ingest_stack.sqs.delete_queue(QueueUrl=kent)
    ingest_stack.upload("RX2", "kent.csv", to_bytes(kent_rows, "x.csv"))
    ingest_stack.upload("RX1", "leeds.csv", to_bytes(leeds_rows, "x.csv"))

    [first] = ingest_stack.run(batch_size=10, max_polls=1)
    assert len(first["batchItemFailures"]) == 1
    assert ingest_stack.reports("RX2", "kent.csv") == []  # nothing claims Kent's records were forwarded
    assert ingest_stack.report("RX1", "leeds.csv")["outcome"]["forwarded"] == 6
    logs = caplog.text  # the batch processor logs the failed record with its exception
    assert f"SQS queue {kent} does not exist" in logs and "QUEUE_URL_BASE" in logs

    ingest_stack.sqs.create_queue(QueueName=kent_name, Attributes=attributes)  # deployed
    sqs_clock.advance(3600)  # the retry comes after the deduplication window (and the visibility timeout)
    [retry] = ingest_stack.run(batch_size=10)
    assert retry == {"batchItemFailures": []}
    assert notification_ids(ingest_stack.drain(kent)) == Counter(row["notification_id"] for row in kent_rows)
    assert ingest_stack.report("RX2", "kent.csv")["outcome"]["forwarded"] == 8
    leeds = ingest_stack.authority_queue_urls[LEEDS]  # the file that went through is not sent again
    assert notification_ids(ingest_stack.drain(leeds)) == Counter(row["notification_id"] for row in leeds_rows)


def test_a_files_first_checkpoint_is_one_conditional_write_and_a_retry_finds_the_earlier_one(ingest_stack):
    import boto3
    from birthnotify.adapters.progress import DynamoProgressStore
    from birthnotify.application.ports import Progress

    dynamodb = boto3.client("dynamodb")
    calls: Counter[str] = Counter()
    dynamodb.meta.events.register("before-call.dynamodb", lambda event_name, **_: calls.update([event_name]))
    store = DynamoProgressStore(dynamodb, ingest_stack.handler.service().settings.state_table)
    first_day, later_day = today(), date(2030, 1, 1)
    sha256 = "a" * 64

    assert store.begin("RX1", sha256, Progress(0, first_day)) is None  # the first attempt
    assert calls == Counter({"before-call.dynamodb.PutItem": 1})
    store.save("RX1", sha256, Progress(5_000, first_day, frozenset({5_003, 5_004})))
    calls.clear()
    # A retry (perhaps days later) finds the checkpoint, its processing day and the rows SQS had accepted, in
    # the same one request, and overwrites none of it.
    assert store.begin("RX1", sha256, Progress(0, later_day)) == Progress(5_000, first_day, frozenset({5_003, 5_004}))
    assert calls == Counter({"before-call.dynamodb.PutItem": 1})
    assert store.load("RX1", sha256) == Progress(5_000, first_day, frozenset({5_003, 5_004}))


@pytest.mark.parametrize("name", ["small.csv", "small.csv.gz"])
def test_a_small_upload_is_fetched_from_s3_once_and_a_large_one_streamed_by_each_pass(
    ingest_stack, rows_factory, monkeypatch, name
):
    import gzip

    from birthnotify.application import ingest

    rows = rows_factory(30, today(), districts={LEEDS: 1})
    body = to_bytes(rows, "x.csv")
    body = gzip.compress(body) if name.endswith(".gz") else body
    ingest_stack.rewire()
    ingest_stack.upload("RX1", name, body)
    fetched = inbound_requests(ingest_stack)
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    # One request in all: its size and metadata came with its bytes, and both passes (a .gz's first pass twice)
    # read them from memory.
    assert fetched == Counter({("GetObject", f"inbound/RX1/{name}"): 1})

    other = to_bytes(rows_factory(30, today(), districts={LEEDS: 1}, seed=99), "x.csv")
    other = gzip.compress(other) if name.endswith(".gz") else other
    monkeypatch.setattr(ingest, "IN_MEMORY_BYTES", len(other) - 1)  # just over the limit: streamed
    ingest_stack.upload("RX1", "large-" + name, other)
    fetched.clear()
    assert ingest_stack.run() == [{"batchItemFailures": []}]
    # The first opening reads the response that gave its size; each later one makes its own request.
    assert fetched == Counter({("GetObject", f"inbound/RX1/large-{name}"): 3 if name.endswith(".gz") else 2})
    for processed in (name, "large-" + name):  # the same outcome either way
        outcome = ingest_stack.report("RX1", processed)["outcome"]
        assert (outcome["rows_in"], outcome["forwarded"]) == (30, 30)


def inbound_requests(stack) -> Counter[tuple[str, str]]:
    """Every request for an upload the test's S3 client makes from now on (it is the ingest function's too, after
    ``rewire``), by operation and key."""
    made: Counter[tuple[str, str]] = Counter()

    def count(params, model, **_):
        if params.get("Bucket") == "test-inbound":
            made[(model.name, params["Key"])] += 1

    stack.s3.meta.events.register("before-parameter-build.s3", count)
    return made


class WatchedBody:
    """An S3 response body that records how much of it was read, and whether it was closed."""

    def __init__(self, body) -> None:
        self._body = body
        self.read_bytes = 0
        self.closed = False

    def read(self, size=-1):
        data = self._body.read(size)
        self.read_bytes += len(data)
        return data

    def close(self) -> None:
        self.closed = True
        self._body.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def test_a_file_over_the_size_limit_is_refused_from_its_size_unread_and_answered_by_mesh(ingest_stack, rows_factory):
    """The size, the time and the MESH metadata come with the one GetObject: a file over the limit is refused
    before a byte of it is read (its response closed, not downloaded), and, having come by MESH, is still
    answered by MESH."""
    service = ingest_stack.handler.service()
    service.settings = service.settings.model_copy(update={"max_file_bytes": 2**20})
    ingest_stack.rewire()
    bodies: list[WatchedBody] = []

    def watch(parsed, model, **_):
        if "Body" in parsed:
            bodies.append(WatchedBody(parsed["Body"]))
            parsed["Body"] = bodies[-1]

    ingest_stack.s3.meta.events.register("after-call.s3.GetObject", watch)
    body = to_bytes(rows_factory(5, today(), districts={LEEDS: 1}), "x.csv")
    body += b"\r\n" * (2**20 // 2)  # blank lines: just over 1 MB
    key = "inbound/RX2/mesh-BIG0001.csv"
    metadata = {"mesh-message-id": "BIG0001", "mesh-sender": "X26ABC2", "mesh-workflow-id": "BIRTHNOTIFY_FILES_1"}
    ingest_stack.s3.put_object(Bucket="test-inbound", Key=key, Body=body, Metadata=metadata)
    requests = inbound_requests(ingest_stack)

    assert ingest_stack.run() == [{"batchItemFailures": []}]

    assert requests == Counter({("GetObject", key): 1})
    assert [(watched.read_bytes, watched.closed) for watched in bodies] == [(0, True)]
    report = ingest_stack.report("RX2", "mesh-BIG0001.csv")
    assert report["file_error"]["code"] == "FILE_TOO_LARGE"
    assert report["file_error"]["message"] == "The file is over the 1 MB limit; split it."
    assert report["mesh"]["message_id"] == "BIG0001" and report["mesh"]["mailbox"] == "X26ABC2"
    assert all(ingest_stack.drain(url) == [] for url in ingest_stack.authority_queue_urls.values())


@pytest.mark.parametrize("gone", ["version", "key"])
def test_an_upload_gone_before_its_ingest_fails_its_message_with_nothing_sent_or_reported(
    ingest_stack, rows_factory, gone
):
    """The event names a version S3 no longer has (deleted by the trust, or by a lifecycle rule): the GetObject
    is refused, the message fails and is retried (then goes to the DLQ and its alarm), and nothing is forwarded
    or reported for it. Without versioning the event names no version, and the key is gone."""
    if gone == "key":
        ingest_stack.s3.put_bucket_versioning(Bucket="test-inbound", VersioningConfiguration={"Status": "Suspended"})
    ingest_stack.rewire()
    requests = inbound_requests(ingest_stack)
    body = to_bytes(rows_factory(5, today(), districts={LEEDS: 1}), "x.csv")
    key = ingest_stack.upload("RX1", "deleted.csv", body)
    version = ingest_stack.s3.head_object(Bucket="test-inbound", Key=key).get("VersionId")
    ingest_stack.s3.delete_object(
        Bucket="test-inbound", Key=key, **({"VersionId": version} if gone == "version" else {})
    )
    requests.clear()

    [response] = ingest_stack.run()

    assert len(response["batchItemFailures"]) == 1
    assert requests == Counter({("GetObject", key): 1})
    assert ingest_stack.s3.list_objects_v2(Bucket="test-reports").get("KeyCount", 0) == 0
    assert ingest_stack.drain(ingest_stack.authority_queue_urls[LEEDS]) == []
    assert ingest_stack.drain(ingest_stack.events_queue_url) == []
