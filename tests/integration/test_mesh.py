"""MESH as a way in and a way back, against a real MESH server (NHS England's mesh-sandbox, a child process
checking every auth token) and moto: a trust's mailbox sends, the scheduled mesh function stores and
acknowledges, ingest and notify answer, and the report comes back to the trust's mailbox. Faults are
injected where they happen in the cloud (a run that dies, MESH unreachable), never by imitating MESH."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from urllib.parse import quote

import pytest
from birthnotify.adapters.aws.mesh import MESH_LOCK
from birthnotify.adapters.lock import DynamoRunLock
from birthnotify.adapters.mesh import MeshMailbox, S3InboundWriter
from birthnotify_cli.lambda_shim import LambdaContext
from birthnotify_cli.mesh_sandbox import MeshSandbox
from ingest_support import to_bytes
from mesh_support import FILES_WORKFLOW, NEMS_WORKFLOW, REPORTS_WORKFLOW, STRANGER_MAILBOX, TRUST_MAILBOX
from notify_support import find_personal, personal_values

TRUST = "RX2"  # sends from TRUST_MAILBOX
LEEDS = "E08000035"
KENT = "E10000016"
AN_HOUR = 3600


class RunDied(BaseException):  # noqa: N818
    """Stands for the invocation ending (a timeout, the container stopped) at the point it is raised: nothing
    in the function handles it."""


def a_file(rows_factory, count: int = 20, *, rejected: int = 0, seed: int = 7) -> tuple[list[dict], bytes]:
    rows = rows_factory(count, date.today(), districts={LEEDS: 1.0}, seed=seed)
    for row in rows[:rejected]:
        row["baby_nhs_number"] = "123"
    return rows, to_bytes(rows, "births.csv")


def forwarded_to_leeds(mesh_stack) -> list[dict]:
    return mesh_stack.ingest.drain(mesh_stack.ingest.authority_queue_urls[LEEDS])


def through_the_pipeline(mesh_stack) -> None:
    """ingest on the S3 events the mesh function's writes caused, then notify on the file events."""
    for response in mesh_stack.ingest.run():
        assert response == {"batchItemFailures": []}
    for response in mesh_stack.notify.run():
        assert response == {"batchItemFailures": []}


def test_a_file_sent_from_a_trusts_mailbox_reaches_its_authority_and_its_report_goes_back_to_that_mailbox(
    mesh_stack, rows_factory
):
    rows, body = a_file(rows_factory, 20, rejected=2)
    name = "naissances été 2026-11.csv"  # a name MESH carries as given; S3 metadata is ASCII
    message_id = mesh_stack.send(body, file_name=name, local_id="WEALD-2026-11-25-01")

    run = mesh_stack.run()

    assert run["stored"] == [message_id] and run["quarantined"] == {} and run["left"] == 0
    assert mesh_stack.inbox() == []  # acknowledged: MESH no longer offers it
    key = f"inbound/{TRUST}/mesh-{message_id}.csv"
    stored = mesh_stack.objects("inbound/")
    assert list(stored) == [key] and stored[key]["versions"] == 1
    assert mesh_stack.content(key) == body
    assert stored[key]["head"]["Metadata"] == {
        "mesh-message-id": message_id,
        "mesh-sender": TRUST_MAILBOX,
        "mesh-workflow-id": FILES_WORKFLOW,
        "mesh-local-id": "WEALD-2026-11-25-01",
        "mesh-file-name": quote(name, safe=""),
    }

    through_the_pipeline(mesh_stack)

    report = mesh_stack.ingest.report(TRUST, f"mesh-{message_id}.csv")
    assert report["outcome"]["forwarded"] == 18 and report["outcome"]["rejected"] == 2
    assert report["mesh"] == {
        "message_id": message_id,
        "mailbox": TRUST_MAILBOX,
        "workflow_id": FILES_WORKFLOW,
        "local_id": "WEALD-2026-11-25-01",
    }
    assert len(forwarded_to_leeds(mesh_stack)) == 18
    # The report and the rejected rows come back to the mailbox the file came from, under the report workflow,
    # naming the trust's message as their local id.
    back = {message.file_name: message for message in mesh_stack.read(TRUST_MAILBOX, REPORTS_WORKFLOW)}
    assert set(back) == {f"report-{message_id}.json", f"rejected-rows-{message_id}.csv"}
    assert all(message.local_id == message_id and message.workflow_id == REPORTS_WORKFLOW for message in back.values())
    assert json.loads(back[f"report-{message_id}.json"].body) == report
    rejected = list(csv.DictReader(io.StringIO(back[f"rejected-rows-{message_id}.csv"].body.decode())))
    assert [row["row"] for row in rejected] == ["1", "2"] and {row["code"] for row in rejected} == {"NHS_NUMBER_FORMAT"}
    assert (
        mesh_stack.ingest.rejected_csv(TRUST, f"mesh-{message_id}.csv")
        == back[f"rejected-rows-{message_id}.csv"].body.decode()
    )
    # The trust's email receipt says so too; nothing of a person is in the subject MESH carries.
    [receipt] = [email for email in mesh_stack.notify.sent() if email.to == ["information@weald-medway.example.nhs.uk"]]
    assert f"message {message_id}" in receipt.text and TRUST_MAILBOX in receipt.text
    assert not find_personal(" ".join(m.subject or "" for m in back.values()), personal_values(rows))

    # A redelivered file event (SQS is at-least-once) sends nothing back a second time.
    event = mesh_stack.ingest.sqs  # the notify run above consumed the queue: put the same event again
    event.send_message(
        QueueUrl=mesh_stack.ingest.events_queue_url,
        MessageBody=json.dumps(
            {k: v for k, v in report.items() if k not in ("errors", "ignored_columns", "ignored_names_not_listed")}
        ),
    )
    mesh_stack.notify.run()
    assert mesh_stack.read(TRUST_MAILBOX, REPORTS_WORKFLOW) == []


def test_a_message_from_a_mailbox_no_trust_has_is_quarantined_acknowledged_and_reported_by_its_id_only(
    mesh_stack, rows_factory
):
    rows, body = a_file(rows_factory, 5)
    name = f"{rows[0]['mother_family_name']} {rows[0]['baby_nhs_number']}.csv"  # a name a person could be found by
    message_id = mesh_stack.send(body, sender=STRANGER_MAILBOX, file_name=name)

    run = mesh_stack.run()

    assert run["quarantined"] == {message_id: "UNKNOWN_SENDER"} and run["stored"] == []
    assert mesh_stack.inbox() == []  # acknowledged: it does not jam the inbox
    assert list(mesh_stack.objects()) == [f"quarantine/mesh-{message_id}"]  # nothing under inbound/: no ingest
    assert mesh_stack.content(f"quarantine/mesh-{message_id}") == body  # kept as received, for the operators
    assert mesh_stack.ingest.run() == []
    through_the_pipeline(mesh_stack)
    [alert] = [email for email in mesh_stack.notify.sent() if "quarantined" in email.subject]
    assert alert.to == ["birth-notifications-ops@example.nhs.uk"]
    assert message_id in alert.subject and STRANGER_MAILBOX in alert.text and "UNKNOWN_SENDER" in alert.text
    assert rows[0]["mother_family_name"] not in alert.everything and name not in alert.everything
    assert not find_personal(alert.everything, personal_values(rows))
    assert mesh_stack.read(STRANGER_MAILBOX) == []  # nothing is sent to a mailbox no trust has


def test_mesh_saying_a_report_was_not_collected_is_set_aside_for_the_operators(mesh_stack):
    mesh_stack.undelivered("9C3B1F0E5A7D4E2B8F6A1C3D5E7F9A0B")

    run = mesh_stack.run()

    [(message_id, reason)] = run["quarantined"].items()
    assert reason == "NOT_A_DATA_MESSAGE" and mesh_stack.inbox() == []  # it does not wait in the inbox for ever
    through_the_pipeline(mesh_stack)
    [alert] = [email for email in mesh_stack.notify.sent() if "quarantined" in email.subject]
    assert message_id in alert.subject and "a MESH report, not a file" in alert.text
    assert "from MESH itself" in alert.text
    assert "Tell the trust its report is waiting" in alert.text


@pytest.mark.parametrize("name", ["births.xlsx", None])
def test_a_file_whose_name_the_pipeline_cannot_read_is_quarantined_not_ingested(mesh_stack, name):
    message_id = mesh_stack.send(b"PK\x03\x04 a workbook", file_name=name)

    run = mesh_stack.run()

    assert run["quarantined"] == {message_id: "UNREADABLE_FILE_NAME"}
    assert list(mesh_stack.objects()) == [f"quarantine/mesh-{message_id}"] and mesh_stack.inbox() == []
    through_the_pipeline(mesh_stack)
    [alert] = [email for email in mesh_stack.notify.sent() if "quarantined" in email.subject]
    assert "Weald and Medway" in alert.text and "UNREADABLE_FILE_NAME" in alert.text


def test_nems_bundles_sent_under_the_nems_workflow_reach_their_authorities_and_are_answered_by_mesh(
    mesh_stack, tmp_path
):
    from birthnotify_cli.demo import demo_bundles

    example, generated, _ = demo_bundles(tmp_path, seed=5)  # NHS Digital's published example (Leeds); one for Kent
    # NEMS names none (MESH then calls it <message id>.dat): XML, as NEMS delivers it. A name gives the extension.
    unnamed = mesh_stack.send(example.read_bytes(), workflow_id=NEMS_WORKFLOW, file_name=None)
    named = mesh_stack.send(generated.read_bytes(), workflow_id=NEMS_WORKFLOW, file_name=generated.name)

    run = mesh_stack.run()

    assert sorted(run["stored"]) == sorted([unnamed, named]) and run["quarantined"] == {}
    assert set(mesh_stack.objects("inbound/")) == {
        f"inbound/{TRUST}/mesh-{unnamed}.xml",
        f"inbound/{TRUST}/mesh-{named}.json.gz",
    }
    through_the_pipeline(mesh_stack)
    [to_leeds] = forwarded_to_leeds(mesh_stack)
    assert to_leeds["notification_id"] == "85b9d933-b3e2-41a7-a8f2-f5ee7be4ee82"  # the example's own id
    assert len(mesh_stack.ingest.drain(mesh_stack.ingest.authority_queue_urls[KENT])) == 1
    back = {m.file_name: json.loads(m.body) for m in mesh_stack.read(TRUST_MAILBOX, REPORTS_WORKFLOW)}
    assert set(back) == {f"report-{unnamed}.json", f"report-{named}.json"}  # no rows rejected: no CSV
    for message_id in (unnamed, named):
        report = back[f"report-{message_id}.json"]
        assert report["outcome"]["rows_in"] == report["outcome"]["forwarded"] == 1
        assert report["mesh"]["message_id"] == message_id and report["mesh"]["workflow_id"] == NEMS_WORKFLOW


def test_a_gzip_compressed_message_is_stored_with_gz_added_and_ingested(mesh_stack, rows_factory):
    import gzip

    _, body = a_file(rows_factory, 10)
    message_id = mesh_stack.send(gzip.compress(body), file_name="births.csv")  # a client that compresses

    mesh_stack.run()

    assert list(mesh_stack.objects("inbound/")) == [f"inbound/{TRUST}/mesh-{message_id}.csv.gz"]
    through_the_pipeline(mesh_stack)
    assert mesh_stack.ingest.report(TRUST, f"mesh-{message_id}.csv.gz")["outcome"]["forwarded"] == 10


NO_METRICS = pytest.mark.filterwarnings("ignore:No application metrics to publish")
"""A run that dies (a BaseException) publishes no metrics, as a killed invocation would not."""


@NO_METRICS
def test_a_run_that_dies_between_the_write_and_the_acknowledgement_delivers_nothing_twice(
    mesh_stack, rows_factory, sqs_clock, monkeypatch
):
    _, body = a_file(rows_factory, 30, rejected=1)
    message_id = mesh_stack.send(body)

    def dies(self, message_id):
        raise RunDied

    with monkeypatch.context() as dying:
        dying.setattr(MeshMailbox, "acknowledge", dies)
        with pytest.raises(RunDied):
            mesh_stack.run()
    assert mesh_stack.inbox() == [message_id]  # not acknowledged: MESH offers it again
    key = f"inbound/{TRUST}/mesh-{message_id}.csv"
    assert mesh_stack.objects()[key]["versions"] == 1
    through_the_pipeline(mesh_stack)  # the pipeline took the stored file meanwhile
    first = forwarded_to_leeds(mesh_stack)
    assert len(first) == 29

    sqs_clock.advance(AN_HOUR)  # long past SQS's five-minute deduplication window
    retry = mesh_stack.run()

    assert retry["already_stored"] == [message_id] and retry["stored"] == []
    assert mesh_stack.inbox() == []
    assert mesh_stack.objects()[key]["versions"] == 1  # the object was not written again: no second S3 event
    through_the_pipeline(mesh_stack)
    assert forwarded_to_leeds(mesh_stack) == []
    back = mesh_stack.read(TRUST_MAILBOX, REPORTS_WORKFLOW)
    assert sorted(m.file_name for m in back) == [f"rejected-rows-{message_id}.csv", f"report-{message_id}.json"]


@NO_METRICS
def test_the_same_message_written_twice_is_answered_as_a_duplicate_with_nothing_forwarded_again(
    mesh_stack, rows_factory, sqs_clock, monkeypatch
):
    """Were a retry to write the object again (a second version, a second S3 event), ingest's content
    idempotency on [trust, sha256] forwards nothing again, however late the event comes."""
    _, body = a_file(rows_factory, 25)
    message_id = mesh_stack.send(body)
    with monkeypatch.context() as dying:
        dying.setattr(MeshMailbox, "acknowledge", lambda self, message_id: (_ for _ in ()).throw(RunDied()))
        with pytest.raises(RunDied):
            mesh_stack.run()
    through_the_pipeline(mesh_stack)
    assert len(forwarded_to_leeds(mesh_stack)) == 25
    sqs_clock.advance(AN_HOUR)

    monkeypatch.setattr(S3InboundWriter, "holds", lambda self, key, message_id: False)  # the check missed
    mesh_stack.run()

    key = f"inbound/{TRUST}/mesh-{message_id}.csv"
    assert mesh_stack.objects()[key]["versions"] == 2
    through_the_pipeline(mesh_stack)
    assert forwarded_to_leeds(mesh_stack) == []
    reports = mesh_stack.ingest.reports(TRUST, f"mesh-{message_id}.csv")
    assert [r["status"] for r in reports] == ["PROCESSED", "DUPLICATE"]
    back = [json.loads(m.body)["status"] for m in mesh_stack.read(TRUST_MAILBOX, REPORTS_WORKFLOW)]
    assert sorted(back) == ["DUPLICATE", "PROCESSED"]


def test_mesh_down_fails_the_run_without_acknowledging_anything_and_the_next_run_takes_it_all(
    mesh_stack, rows_factory, tmp_path
):
    """A sandbox that keeps its messages in files, stopped (MESH unreachable) and started again."""
    _, body = a_file(rows_factory, 10)
    with MeshSandbox(store_dir=tmp_path / "store", log_path=tmp_path / "sandbox.log") as sandbox:
        port = sandbox.port
        mesh_stack.sandbox, mesh_stack_sandbox = sandbox, mesh_stack.sandbox
        mesh_stack.point_at(sandbox.url)
        message_id = mesh_stack.send(body)
    assert not sandbox.running

    with pytest.raises(Exception, match="Connection refused|Max retries exceeded"):
        mesh_stack.run()
    assert mesh_stack.objects() == {}

    with MeshSandbox(port=port, store_dir=tmp_path / "store", log_path=tmp_path / "sandbox.log") as again:
        mesh_stack.sandbox = again
        assert mesh_stack.inbox() == [message_id]  # nothing was acknowledged
        assert mesh_stack.run()["stored"] == [message_id]
        assert mesh_stack.inbox() == []
    mesh_stack.sandbox = mesh_stack_sandbox
    assert mesh_stack.content(f"inbound/{TRUST}/mesh-{message_id}.csv") == body


def test_a_run_takes_at_most_its_budget_and_leaves_the_rest_for_the_next(mesh_stack, rows_factory, monkeypatch):
    monkeypatch.setenv("MESH_MAX_MESSAGES", "2")
    mesh_stack.handler.service.cache_clear()
    sent = [mesh_stack.send(a_file(rows_factory, 3, seed=seed)[1]) for seed in (1, 2, 3)]

    first = mesh_stack.run()

    assert len(first["stored"]) == 2 and first["left"] == 1
    assert mesh_stack.inbox() == [m for m in sent if m not in first["stored"]]

    class OutOfTime(LambdaContext):
        """Plenty of time when the run starts, too little before its first message."""

        calls = 0

        def get_remaining_time_in_millis(self) -> int:
            self.calls += 1
            return 900_000 if self.calls == 1 else 10_000

    left = mesh_stack.inbox()
    late = mesh_stack.run(OutOfTime(function_name="mesh"))
    assert late["stored"] == [] and late["left"] == 1 and mesh_stack.inbox() == left
    assert mesh_stack.run()["stored"] == left and mesh_stack.inbox() == []


def test_two_runs_never_work_at_once(mesh_stack, rows_factory):
    import boto3

    message_id = mesh_stack.send(a_file(rows_factory, 3)[1])
    table = mesh_stack.handler.service().ports.lock._table_name
    running = DynamoRunLock(boto3.client("dynamodb"), table, MESH_LOCK)
    assert running.acquire("a run still going", 600)

    skipped = mesh_stack.run()

    assert skipped["skipped"] and mesh_stack.inbox() == [message_id]
    running.release("a run still going")
    assert mesh_stack.run()["stored"] == [message_id]
    # A run that died keeps the lease only until it expires.
    crashed = DynamoRunLock(boto3.client("dynamodb"), table, MESH_LOCK, clock=lambda: 0)
    assert crashed.acquire("a run that died long ago", 600)
    assert not mesh_stack.run()["skipped"]


def test_a_report_mesh_cannot_take_is_retried_and_each_document_is_sent_once(mesh_stack, rows_factory):
    _, body = a_file(rows_factory, 12, rejected=3)
    message_id = mesh_stack.send(body)
    mesh_stack.run()
    assert all(r == {"batchItemFailures": []} for r in mesh_stack.ingest.run())
    working = mesh_stack.sandbox.url
    mesh_stack.point_at("http://127.0.0.1:9")  # nothing listens there: MESH unreachable for the notifier

    [failed] = mesh_stack.notify.run()

    assert len(failed["batchItemFailures"]) == 1  # retried by SQS (then its DLQ and alarm)
    assert mesh_stack.notify.waiting_events()
    mesh_stack.point_at(working)
    through_the_pipeline(mesh_stack)
    back = mesh_stack.read(TRUST_MAILBOX, REPORTS_WORKFLOW)
    assert sorted(m.file_name for m in back) == [f"rejected-rows-{message_id}.csv", f"report-{message_id}.json"]
    # The emails of the first attempt were sent then, and not again.
    receipts = [e for e in mesh_stack.notify.sent() if e.to == ["information@weald-medway.example.nhs.uk"]]
    assert len(receipts) == 1


def test_an_upload_that_names_a_mailbox_in_its_metadata_gets_no_report_by_mesh(mesh_stack, rows_factory):
    """Anyone who can upload to a folder can set metadata: a report goes back by MESH only to the folder's own
    trust's registered mailbox, so RX1 cannot have its report (or anyone's) sent to RX2's mailbox."""
    _, body = a_file(rows_factory, 5)
    mesh_stack.ingest.s3.put_object(
        Bucket=mesh_stack.bucket,
        Key="inbound/RX1/mesh-FAKE123.csv",
        Body=body,
        Metadata={"mesh-message-id": "FAKE123", "mesh-sender": TRUST_MAILBOX, "mesh-workflow-id": FILES_WORKFLOW},
    )
    through_the_pipeline(mesh_stack)
    report = mesh_stack.ingest.report("RX1", "mesh-FAKE123.csv")
    assert report["status"] == "PROCESSED" and report["mesh"] is None
    assert mesh_stack.read(TRUST_MAILBOX) == []
