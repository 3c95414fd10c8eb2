"""The emails composed from file-processed events: who they go to and what they say, in text and HTML."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from birthnotify.application.notify.compose import Composer, EmailKind
from birthnotify.domain.councils import Councils
from birthnotify.domain.messages import (
    AuthorityCounts,
    FileError,
    FileOutcome,
    FileProcessedEvent,
    FileStatus,
    HeldCount,
    HeldReason,
)
from birthnotify.domain.record import ErrorCode
from birthnotify.domain.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
RAW = tomllib.loads((ROOT / "config" / "registry.toml").read_text(encoding="utf-8"))
OPERATORS = RAW["operator_emails"]
COUNCILS = Councils.load(ROOT / "config" / "authorities-england-wales.csv")
SHA = "ab12cd34ef56" + "0" * 52


def registry(trust_name: str | None = None) -> Registry:
    raw = {**RAW, "trusts": [dict(t) for t in RAW["trusts"]]}
    if trust_name:
        raw["trusts"][0]["name"] = trust_name
    return Registry.model_validate(raw, context={"councils": COUNCILS})


def composer(reg: Registry | None = None, guide: str = "https://example.nhs.uk/guide") -> Composer:
    return Composer(reg or registry(), "test", guide, "reports-bucket")


def event(trust: str | None = "RX1", key: str = "inbound/RX1/may.csv", **outcome) -> FileProcessedEvent:
    return FileProcessedEvent(
        event_id=f"{trust}:{SHA}",
        status=FileStatus.PROCESSED,
        trust_ods_code=trust,
        trust_name=None,
        bucket="inbound",
        key=key,
        sha256=SHA,
        processed_at=datetime(2026, 5, 1, 9, tzinfo=UTC),
        outcome=FileOutcome(**outcome),
        report_key="reports/RX1/may.csv.json",
    )


def leeds(new: int = 1, amend: int = 0, cancel: int = 0) -> AuthorityCounts:
    return AuthorityCounts(
        gss_code="E08000035",
        name="Leeds City Council",
        agreement_id="LEEDS-BN-2026",
        new=new,
        amend=amend,
        cancel=cancel,
    )


def test_every_value_is_escaped_in_the_html_part_and_left_as_written_in_the_text_part():
    reg = registry('St Mary\'s & <b onmouseover="x">Trust</b> $heading')
    [receipt, waiting] = composer(reg).for_event(event(rows_in=2, forwarded=2, authorities=[leeds(2)]))
    name = reg.trust("RX1").name
    assert name in waiting.text and name in waiting.subject and "$heading" in waiting.text
    assert "&lt;b onmouseover=&quot;x&quot;&gt;Trust&lt;/b&gt;" in waiting.html and "<b " not in waiting.html
    assert "St Mary&#x27;s &amp;" in waiting.html
    assert f"<title>{waiting.subject}</title>" not in waiting.html  # the title is escaped too


def test_the_consumer_guide_is_a_link_in_html_without_the_sentence_s_full_stop():
    [_, waiting] = composer(guide="https://example.nhs.uk/guide?a=1&b=2").for_event(
        event(rows_in=1, forwarded=1, authorities=[leeds()])
    )
    assert (
        '<a href="https://example.nhs.uk/guide?a=1&amp;b=2">https://example.nhs.uk/guide?a=1&amp;b=2</a>'
        in waiting.html
    )
    assert "How to: https://example.nhs.uk/guide?a=1&b=2" in waiting.text


@pytest.mark.parametrize(
    ("new", "amend", "cancel", "subject"),
    [
        (1, 0, 0, "1 birth notification waiting from Northgate Teaching Hospitals NHS Trust"),
        (3, 2, 1, "6 birth notifications waiting from Northgate Teaching Hospitals NHS Trust"),
    ],
)
def test_an_authority_hears_the_counts_trust_reference_and_agreement(new, amend, cancel, subject):
    [_, waiting] = composer().for_event(
        event(rows_in=new + amend + cancel, forwarded=new + amend + cancel, authorities=[leeds(new, amend, cancel)])
    )
    assert waiting.kind is EmailKind.AUTHORITY_WAITING
    assert waiting.recipients == ("childrens-centres@leeds.example.gov.uk",)
    assert waiting.subject == subject
    assert f"  - {new} new\n  - {amend} amended" in waiting.text and f"  - {cancel} cancelled" in waiting.text
    assert "Northgate Teaching Hospitals NHS Trust (RX1) sent a file (reference ab12cd34ef56)" in waiting.text
    assert "under sharing agreement LEEDS-BN-2026" in waiting.text
    assert "may.csv" not in waiting.text  # the file name goes to the trust only


def test_a_digest_authority_gets_no_email_per_file():
    camden = AuthorityCounts(
        gss_code="E09000007", name="London Borough of Camden", agreement_id="CAMDEN-SFL-2026", new=4
    )
    emails = composer().for_event(event(rows_in=4, forwarded=4, authorities=[camden]))
    assert [e.kind for e in emails] == [EmailKind.TRUST_RECEIPT]


def test_held_records_alert_the_operators_and_a_lapsed_authority_only():
    held = [
        HeldCount(
            reason="NO_AGREEMENT", authority_gss_code="E06000014", authority_name="City of York Council", count=2
        ),
        HeldCount(reason="NO_AUTHORITY", count=1),
        HeldCount(reason="POSTCODE_NOT_FOUND", count=1),
    ]
    emails = composer().for_event(event(rows_in=4, held=4, held_by_reason=held))
    alerts = [e for e in emails if e.kind is EmailKind.HELD_ALERT]
    assert [a.recipients for a in alerts] == [tuple(OPERATORS), ("healthy-child@york.example.gov.uk",)]
    assert "2: the council has no sharing agreement in force" in alerts[0].text
    assert "postcode is not in the postcode directory" in alerts[0].text
    assert alerts[1].subject == "Birth notifications held: no sharing agreement in force"


def test_every_held_reason_is_explained_and_a_council_outside_the_registry_is_named_to_operators_only():
    # Manchester runs children's services but is not in the registry: operators learn whom to approach.
    held = [HeldCount(reason=reason, count=1) for reason in HeldReason if reason is not HeldReason.NO_AGREEMENT]
    held.append(
        HeldCount(
            reason="NO_AGREEMENT", authority_gss_code="E08000003", authority_name="Manchester City Council", count=3
        )
    )
    emails = composer().for_event(event(rows_in=len(held) + 2, held=len(held) + 2, held_by_reason=held))
    [receipt, alert] = emails
    assert alert.kind is EmailKind.HELD_ALERT and alert.recipients == tuple(OPERATORS)
    assert (
        "3: the council has no sharing agreement in force (it may have lapsed, or never been made) "
        "(Manchester City Council)" in alert.text
    )
    assert "outside this service" in alert.text and "does not say which successor" in alert.text
    assert "held, the council code and the postcode lead to different councils: 1" in receipt.text


def test_a_rejected_file_s_receipt_says_why_and_how_to_fix_it():
    rejected = event().model_copy(
        update={
            "status": FileStatus.REJECTED,
            "file_error": FileError(code=ErrorCode.FILE_ENCODING, message="The file is not valid UTF-8."),
        }
    )
    [receipt] = composer().for_event(rejected)
    assert receipt.subject == "File not accepted: may.csv" and receipt.recipients == (
        "maternity-data@northgate.example.nhs.uk",
    )
    assert "Reason: The file is not valid UTF-8." in receipt.text and "Save the file as UTF-8." in receipt.text


@pytest.mark.parametrize(
    ("trust", "key", "to_trust"),
    [
        (None, "inbound/RX1/2026/smith-may.csv", True),  # a subfolder of the trust's own folder
        (None, "smith-may.csv", False),  # outside inbound/
        ("RQQ", "inbound/RQQ/smith-may.csv", False),  # an unregistered folder
    ],
)
def test_a_refused_upload_reaches_its_trust_or_else_the_operators_without_its_name(trust, key, to_trust):
    refused = event(trust, key).model_copy(
        update={
            "status": FileStatus.REJECTED,
            "sha256": None,
            "event_id": "rejected:" + "9f" * 32,
            "file_error": FileError(code=ErrorCode.FILE_BAD_LOCATION, message="Upload files to inbound/<ODS>/<name>."),
            "report_key": f"reports/{trust or '_unattributed'}/smith-may.csv.json",
        }
    )
    [email] = composer().for_event(refused)
    if to_trust:
        assert email.kind is EmailKind.TRUST_RECEIPT and email.subject == "File not accepted: smith-may.csv"
    else:
        assert email.kind is EmailKind.UNATTRIBUTED_FILE and email.recipients == tuple(OPERATORS)
        assert "smith" not in email.subject + email.text + email.html
        assert "reference 9f9f9f9f9f9f" in email.text and "FILE_BAD_LOCATION" in email.text


def test_a_digest_names_its_day_trusts_and_agreements():
    authority = registry().authority("E09000007")
    digest = composer().digest(authority, date(2026, 5, 1), 5, 1, 0, 2, ["B Trust", "A Trust"], ["CAMDEN-SFL-2026"])
    assert digest.subject == "Daily digest: 6 birth notifications waiting"
    assert "digest for 01 May 2026" in digest.text
    assert "From 2 files sent by A Trust, B Trust under sharing agreement CAMDEN-SFL-2026" in digest.text
    assert digest.key == "digest:E09000007:2026-05-01"
