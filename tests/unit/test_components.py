"""The pipeline's parts on their own: the router, the batch sender, the tally and the row reader."""

from __future__ import annotations

import csv
import io
import tomllib
from datetime import date

import pytest
from birthnotify.adapters.sqs import MAX_BATCH_BYTES, BatchSender, SendFailed
from birthnotify.application.pipeline import Sent, Tally
from birthnotify.application.ports import Outgoing
from birthnotify.domain.messages import HeldReason, RowError, WithheldReason
from birthnotify.domain.postcodes import PostcodeDirectory
from birthnotify.domain.reader import FileKind, RowReader, scan_file
from birthnotify.domain.record import BirthNotification, ErrorCode, NotificationType
from birthnotify.domain.registry import Registry, load_registry
from birthnotify.domain.routing import Forward, Hold, Router, Withhold
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district
from botocore.exceptions import ClientError
from ingest_support import REGISTRY_PATH

REGISTRY = load_registry(REGISTRY_PATH)
POSTCODES = PostcodeDirectory.load(REGISTRY_PATH.parent / "postcodes.csv", REGISTRY.postcode_directory)
BY_DISTRICT = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
DAY = date(2026, 11, 20)
LEEDS, KENT, MAIDSTONE, SEVENOAKS, CAMDEN, YORK, MANCHESTER = (
    "E08000035",
    "E10000016",
    "E07000110",
    "E07000111",
    "E09000007",
    "E06000014",
    "E08000003",
)
CARDIFF, EDINBURGH, SCOTTISH_BORDERS, NORTHUMBERLAND = "W06000015", "S12000036", "S12000026", "E06000057"
CUMBRIA, CARLISLE, SOUTH_LAKELAND, CUMBERLAND, WESTMORLAND = (
    "E10000006",
    "E07000028",
    "E07000031",
    "E06000063",
    "E06000064",
)
NOT_LISTED = "LS99 9ZZ"  # an English postcode the directory does not have


def record(**changes: str) -> BirthNotification:
    row = next(
        SyntheticRows(
            BY_DISTRICT,
            DAY,
            seed=1,
            mix=Mix(invalid=0, withheld=0, held=0, amend_cancel=0),
        ).rows(1)
    )
    row.update(postcode=BY_DISTRICT[LEEDS][0], residence_la_code="")
    row.update(changes)
    return BirthNotification.model_validate({k: v for k, v in row.items() if v})


# -- router -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(REGISTRY, POSTCODES, DAY)


def decided(router: Router, **changes: str) -> tuple[str, str | None]:
    decision = router.decide(record(**changes))
    if isinstance(decision, Forward):
        return "forward", decision.authority.gss_code
    if isinstance(decision, Hold):
        return decision.reason.value, decision.gss_code
    assert isinstance(decision, Withhold)
    return decision.reason.value, None


def terminated(district: str) -> str:
    rows = csv.DictReader((REGISTRY_PATH.parent / "postcodes.csv").open(newline=""))
    return next(row["pcds"] for row in rows if row["lad25cd"] == district and row["doterm"])


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, ("forward", LEEDS)),
        ({"postcode": BY_DISTRICT[MAIDSTONE][0]}, ("forward", KENT)),  # a district's postcode: its county
        ({"residence_la_code": MAIDSTONE, "postcode": BY_DISTRICT[MAIDSTONE][0]}, ("forward", KENT)),
        ({"residence_la_code": MAIDSTONE, "postcode": BY_DISTRICT[SEVENOAKS][0]}, ("forward", KENT)),  # one county
        ({"residence_la_code": CAMDEN, "postcode": BY_DISTRICT[CAMDEN][0]}, ("forward", CAMDEN)),
        ({"postcode": BY_DISTRICT[CARDIFF][0]}, ("forward", CARDIFF)),  # Wales
        ({"residence_la_code": CARDIFF, "postcode": BY_DISTRICT[CARDIFF][5]}, ("forward", CARDIFF)),
        ({"postcode": terminated(LEEDS)}, ("forward", LEEDS)),  # a terminated postcode still routes
        ({"postcode": BY_DISTRICT[YORK][0]}, ("NO_AGREEMENT", YORK)),  # its agreement lapsed
        # Councils that run children's services but are not in the registry: held, naming them.
        ({"postcode": BY_DISTRICT[MANCHESTER][0]}, ("NO_AGREEMENT", MANCHESTER)),
        ({"residence_la_code": MANCHESTER, "postcode": "ZZ99 3VZ"}, ("NO_AGREEMENT", MANCHESTER)),
        ({"postcode": BY_DISTRICT[NORTHUMBERLAND][0]}, ("NO_AGREEMENT", NORTHUMBERLAND)),  # TD15: Berwick, England
        # Ended councils: a former Cumbria district's code goes to its one successor; Cumbria's own code (split
        # in two) is decided by the postcode, and held, naming Cumbria, when the postcode cannot decide.
        ({"postcode": BY_DISTRICT[CARLISLE][0]}, ("NO_AGREEMENT", CUMBERLAND)),
        ({"residence_la_code": SOUTH_LAKELAND, "postcode": "ZZ99 3VZ"}, ("NO_AGREEMENT", WESTMORLAND)),
        ({"residence_la_code": CUMBRIA, "postcode": BY_DISTRICT[CARLISLE][1]}, ("NO_AGREEMENT", CUMBERLAND)),
        ({"residence_la_code": CUMBRIA, "postcode": BY_DISTRICT[SOUTH_LAKELAND][0]}, ("NO_AGREEMENT", WESTMORLAND)),
        ({"residence_la_code": CUMBRIA, "postcode": NOT_LISTED}, ("AMBIGUOUS_SUCCESSOR", CUMBRIA)),
        ({"residence_la_code": CUMBRIA, "postcode": "ZZ99 3VZ"}, ("AMBIGUOUS_SUCCESSOR", CUMBRIA)),
        ({"residence_la_code": CUMBRIA}, ("RESIDENCE_CONFLICT", None)),  # a Leeds postcode
        ({"residence_la_code": CARLISLE, "postcode": BY_DISTRICT[SOUTH_LAKELAND][0]}, ("RESIDENCE_CONFLICT", None)),
        # Outside this service, by code or postcode: held, never rejected.
        ({"postcode": BY_DISTRICT[EDINBURGH][0]}, ("OUTSIDE_SERVICE", None)),  # in the directory
        ({"postcode": BY_DISTRICT[SCOTTISH_BORDERS][0]}, ("OUTSIDE_SERVICE", None)),  # TD1: only the directory knows
        ({"postcode": "AB1 0AA"}, ("OUTSIDE_SERVICE", None)),  # Aberdeen, not in the directory: by its area
        ({"postcode": "BT1 1AA"}, ("OUTSIDE_SERVICE", None)),
        ({"postcode": "GY1 1AA"}, ("OUTSIDE_SERVICE", None)),
        ({"postcode": "JE2 3AB"}, ("OUTSIDE_SERVICE", None)),
        ({"postcode": "IM1 1AA"}, ("OUTSIDE_SERVICE", None)),
        ({"postcode": "G1 1AA"}, ("OUTSIDE_SERVICE", None)),
        ({"postcode": "TD9 9ZZ"}, ("POSTCODE_NOT_FOUND", None)),  # TD crosses the border: the area cannot say
        ({"residence_la_code": EDINBURGH, "postcode": BY_DISTRICT[EDINBURGH][1]}, ("OUTSIDE_SERVICE", None)),
        ({"residence_la_code": "N09000003", "postcode": "BT1 1AA"}, ("OUTSIDE_SERVICE", None)),
        ({"residence_la_code": "L99999999", "postcode": "ZZ99 3VZ"}, ("OUTSIDE_SERVICE", None)),
        ({"residence_la_code": "M99999999", "postcode": NOT_LISTED}, ("OUTSIDE_SERVICE", None)),
        ({"residence_la_code": EDINBURGH}, ("RESIDENCE_CONFLICT", None)),  # a Leeds postcode
        ({"residence_la_code": LEEDS, "postcode": "EH1 1AA"}, ("RESIDENCE_CONFLICT", None)),
        # Codes and postcodes nobody knows.
        ({"postcode": "ZZ99 3VZ"}, ("PSEUDO_POSTCODE", None)),
        ({"postcode": "ZZ99 3VZ", "residence_la_code": LEEDS}, ("forward", LEEDS)),  # the trust named the council
        ({"postcode": NOT_LISTED}, ("POSTCODE_NOT_FOUND", None)),
        ({"postcode": NOT_LISTED, "residence_la_code": "E07999999"}, ("NO_AUTHORITY", None)),
        ({"residence_la_code": "E07999999"}, ("RESIDENCE_CONFLICT", None)),  # a Leeds postcode
        ({"residence_la_code": KENT}, ("RESIDENCE_CONFLICT", None)),  # a Leeds postcode
        ({"live_birth": "N", "restricted": "Y", "sharing_objection": "Y"}, ("STILLBIRTH", None)),
        ({"restricted": "Y", "sharing_objection": "Y"}, ("RESTRICTED", None)),
        ({"sharing_objection": "Y", "postcode": "ZZ99 3VZ"}, ("SHARING_OBJECTION", None)),  # withholding first
    ],
)
def test_the_router_decides_by_council_code_postcode_and_flags(router, changes, expected):
    assert decided(router, **changes) == expected


def test_a_held_record_names_the_council_by_the_registry_or_the_councils_data(router):
    manchester = router.decide(record(postcode=BY_DISTRICT[MANCHESTER][0]))
    assert isinstance(manchester, Hold) and manchester.name == "Manchester City Council"
    cumbria = router.decide(record(residence_la_code=CUMBRIA, postcode="ZZ99 3VZ"))
    assert isinstance(cumbria, Hold) and cumbria.name == "Cumbria County Council"
    york = router.decide(record(postcode=BY_DISTRICT[YORK][0]))
    assert isinstance(york, Hold) and york.name == REGISTRY.authority(YORK).name


def test_an_ended_councils_code_reaches_its_registered_successor():
    raw = tomllib.loads(REGISTRY_PATH.read_text())
    cardiff = next(a for a in raw["authorities"] if a["gss_code"] == CARDIFF)
    raw["authorities"] = [
        *raw["authorities"],
        {**cardiff, "gss_code": CUMBERLAND, "agreements": [{**cardiff["agreements"][0], "id": "CUMBERLAND-2026"}]},
    ]
    registry = Registry.model_validate(raw, context={"councils": REGISTRY.councils_data})
    router = Router(registry, POSTCODES, DAY)
    assert registry.authority(CUMBERLAND).name == "Cumberland Council"  # from the councils data
    assert decided(router, postcode=BY_DISTRICT[CARLISLE][0]) == ("forward", CUMBERLAND)
    assert decided(router, residence_la_code=CARLISLE, postcode="ZZ99 3VZ") == ("forward", CUMBERLAND)
    assert decided(router, residence_la_code=CUMBRIA, postcode=BY_DISTRICT[CARLISLE][0]) == ("forward", CUMBERLAND)
    assert decided(router, residence_la_code=CUMBRIA, postcode=BY_DISTRICT[SOUTH_LAKELAND][0]) == (
        "NO_AGREEMENT",
        WESTMORLAND,
    )


def test_an_agreement_is_judged_on_the_processing_day():
    kent = REGISTRY.authority(KENT)
    starts = min(a.valid_from for a in kent.agreements)
    before = Router(REGISTRY, POSTCODES, date.fromordinal(starts.toordinal() - 1))
    assert decided(before, postcode=BY_DISTRICT[MAIDSTONE][0]) == ("NO_AGREEMENT", KENT)


# -- batch sender ----------------------------------------------------------------------------------------


class RecordingSqs:
    """Accepts everything except what ``refuse`` names (entry ids per call), or raises ``error``."""

    def __init__(self, refuse=lambda call, entries: set(), error: Exception | None = None, sender_fault=False):
        self.calls: list[list[dict]] = []
        self.refuse = refuse
        self.error = error
        self.sender_fault = sender_fault

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        self.calls.append(Entries)
        if self.error is not None:
            raise self.error
        refused = self.refuse(len(self.calls), Entries)
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e["Id"] not in refused],
            "Failed": [{"Id": i, "SenderFault": self.sender_fault, "Code": "InternalError"} for i in refused],
        }


def message(n: int, group: str | None = None, size: int = 10) -> Outgoing[int]:
    return Outgoing("x" * size, n, group_id=group, deduplication_id=f"d{n}" if group else None)


def test_messages_go_ten_to_a_batch_and_each_acceptance_is_reported_once():
    sqs, accepted = RecordingSqs(), []
    sender = BatchSender(sqs, accepted.append, sleep=lambda s: None)
    for n in range(25):
        sender.add("q", message(n, group=f"g{n}"))
    sender.flush()
    assert [len(call) for call in sqs.calls] == [10, 10, 5]
    assert sorted(accepted) == list(range(25)) and sender.stats.requests == 3 and sender.stats.accepted == 25


def test_two_messages_of_one_group_never_share_a_batch_and_big_bodies_split_batches():
    sqs = RecordingSqs()
    sender = BatchSender(sqs, lambda tag: None, sleep=lambda s: None)
    sender.add("q", message(1, "baby-a"))
    sender.add("q", message(2, "baby-b"))
    sender.add("q", message(3, "baby-a"))  # the AMEND of 1: a new batch, so a retry cannot reorder them
    sender.flush()
    assert [[e["MessageGroupId"] for e in call] for call in sqs.calls] == [["baby-a", "baby-b"], ["baby-a"]]
    big = RecordingSqs()
    sender = BatchSender(big, lambda tag: None, sleep=lambda s: None)
    for n in range(3):
        sender.add("q", message(n, size=MAX_BATCH_BYTES // 2 - 10))
    sender.flush()
    assert [len(call) for call in big.calls] == [2, 1]


def test_only_refused_entries_are_sent_again_and_lasting_refusal_raises_with_nothing_unaccepted_reported():
    sqs, accepted = RecordingSqs(refuse=lambda call, entries: {"0", "1"} if call == 1 else set()), []
    sender = BatchSender(sqs, accepted.append, sleep=lambda s: None)
    for n in range(5):
        sender.add("q", message(n))
    sender.flush()
    assert [len(call) for call in sqs.calls] == [5, 2] and sorted(accepted) == list(range(5))

    stuck, accepted = RecordingSqs(refuse=lambda call, entries: {"0"}), []
    sender = BatchSender(stuck, accepted.append, max_attempts=3, sleep=lambda s: None)
    for n in range(3):
        sender.add("q", message(n))
    with pytest.raises(SendFailed) as failed:
        sender.flush()
    assert failed.value.unsent == 1 and sorted(accepted) == [1, 2] and len(stuck.calls) == 3


def test_a_sender_fault_is_not_retried_and_a_client_error_is():
    faulty = RecordingSqs(refuse=lambda call, entries: {"0"}, sender_fault=True)
    sender = BatchSender(faulty, lambda tag: None, sleep=lambda s: None)
    sender.add("q", message(0))
    with pytest.raises(SendFailed):
        sender.flush()
    assert len(faulty.calls) == 1
    down = RecordingSqs(error=ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessageBatch"))
    sender = BatchSender(down, lambda tag: None, max_attempts=4, sleep=lambda s: None)
    sender.add("q", message(0))
    with pytest.raises(SendFailed, match="ServiceUnavailable"):
        sender.flush()
    assert len(down.calls) == 4


# -- tally ---------------------------------------------------------------------------------------------


def test_the_tally_counts_each_outcome_where_it_went_and_balances():
    router = Router(REGISTRY, POSTCODES, DAY)
    tally = Tally()
    leeds = router.decide(record())
    york = router.decide(record(postcode=BY_DISTRICT[YORK][0]))
    tally.rows_in = 5
    tally.accepted(Sent(1, leeds, NotificationType.NEW))
    tally.accepted(Sent(2, leeds, NotificationType.AMEND))
    tally.accepted(Sent(3, york, NotificationType.NEW))
    tally.withhold(WithheldReason.STILLBIRTH)
    tally.reject(
        [
            RowError(row=5, code=ErrorCode.POSTCODE_INVALID, field="postcode", message="m"),
            RowError(row=5, code=ErrorCode.DATE_INVALID, field="baby_date_of_birth", message="m"),
        ]
    )
    outcome = tally.outcome()
    assert outcome.balanced and (outcome.forwarded, outcome.held, outcome.withheld, outcome.rejected) == (2, 1, 1, 1)
    [leeds_counts] = outcome.authorities
    assert (leeds_counts.gss_code, leeds_counts.new, leeds_counts.amend) == (LEEDS, 1, 1)
    [held] = outcome.held_by_reason
    assert (held.reason, held.authority_gss_code, held.count) == (HeldReason.NO_AGREEMENT, YORK, 1)
    assert outcome.rejected_by_code == {ErrorCode.POSTCODE_INVALID: 1, ErrorCode.DATE_INVALID: 1}
    assert [RowError.model_validate_json(line).code for line in tally.row_errors()] == [
        ErrorCode.POSTCODE_INVALID,
        ErrorCode.DATE_INVALID,
    ]


# -- row reader ----------------------------------------------------------------------------------------


def read(body: bytes, name: str = "f.csv") -> tuple[list, RowReader]:
    kind = FileKind.from_name(name)
    facts = scan_file(lambda: io.BytesIO(body), kind, 2**20)
    reader = RowReader(io.BytesIO(body), kind, facts, 2**20)
    return list(reader), reader


def test_the_reader_numbers_records_not_lines_and_names_ignored_columns():
    from birthnotify.domain.record import REQUIRED_FIELDS

    header = ["Ward", *sorted(REQUIRED_FIELDS)]
    line = ["W1", *("x" for _ in REQUIRED_FIELDS)]
    body = (
        "\ufeff"
        + ",".join(header).upper()
        + "\r\n\r\n"
        + ",".join(line)
        + "\r\n"
        + ",".join(f'"{v} \n"' for v in line)
        + "\n\n"
        + ",".join(line[:3])
        + "\r\n"
    )
    rows, reader = read(body.encode())
    assert [r.row for r in rows] == [1, 2, 3]
    assert rows[0].values["notification_id"] == "x" and "ward" not in rows[0].values
    assert rows[1].values["notification_id"] == "x" and rows[1].problems == ()  # stripped, line break and all
    assert rows[2].problems[0].code is ErrorCode.ROW_MALFORMED
    assert reader.ignored_columns == ["ward"]


def test_json_lines_keep_types_and_drop_empty_values():
    rows, _ = read(
        b'{"notification_id": " N1 ", "birth_order": 1, "live_birth": true, "postcode": ""}\n\n[1, 2]\n', "f.jsonl"
    )
    assert rows[0].values == {"notification_id": "N1", "birth_order": 1, "live_birth": True}
    assert rows[1].row == 2 and rows[1].problems[0].message == "The line is not one JSON object."
