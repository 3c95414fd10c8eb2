"""The row rules a trust's file is judged by, one at a time, with the error codes trusts automate on."""

from __future__ import annotations

import random
import sys
from datetime import date, timedelta

import nhs_number
import pytest
from birthnotify.domain.reader import RawRow
from birthnotify.domain.record import (
    SQS_FORBIDDEN,
    BirthNotification,
    ErrorCode,
    nhs_number_checksum_ok,
    sqs_refuses,
)
from birthnotify.domain.validation import RowRules, RowValidator, ValidRow
from birthnotify_cli.synthetic import bad_checksum, synthetic_nhs_number

UPLOAD_DAY = date(2026, 11, 20)


def valid_row(**changes: str) -> dict[str, str]:
    number = synthetic_nhs_number(random.Random(3))
    row = {
        "notification_id": "BN-1",
        "notification_type": "NEW",
        "baby_nhs_number": number,
        "baby_date_of_birth": "2026-11-18",
        "baby_time_of_birth": "04:35",
        "baby_sex": "2",
        "birth_weight_grams": "3400",
        "gestation_weeks": "39",
        "birth_order": "1",
        "number_of_babies": "1",
        "live_birth": "Y",
        "mother_given_name": "Ada",
        "mother_family_name": "Lovelace",
        "mother_date_of_birth": "1995-03-02",
        "address_line_1": "1 Test Street",
        "postcode": "LS1 4AP",
        "restricted": "N",
        "sharing_objection": "N",
    }
    row.update(changes)
    return {key: value for key, value in row.items() if value != ""}


def codes(**changes: str) -> list[tuple[str | None, str]]:
    result = RowValidator(RowRules(UPLOAD_DAY, 366)).validate(RawRow(7, valid_row(**changes)))
    if not isinstance(result, list):
        return []
    assert all(error.row == 7 for error in result)
    return [(error.field, error.code.value) for error in result]


def warnings(**changes: str) -> tuple[BirthNotification, list[tuple[str | None, str]]]:
    result = RowValidator(RowRules(UPLOAD_DAY, 366)).validate(RawRow(7, valid_row(**changes)))
    assert isinstance(result, ValidRow), result
    assert all(warning.row == 7 and warning.notification_id == "BN-1" for warning in result.warnings)
    return result.record, [(warning.field, warning.code.value) for warning in result.warnings]


def test_checksum_agrees_with_the_nhs_number_library_on_random_numbers():
    rng = random.Random(11)
    checked = 0
    for _ in range(20000):
        digits = f"{rng.randrange(10**10):010d}"
        if nhs_number.REGION_SCOTLAND.contains_number(digits):
            continue  # the library also requires a CHI number to start with a date; only the checksum is ours
        checked += 1
        assert nhs_number_checksum_ok(digits) == nhs_number.is_valid(digits), digits
    assert checked > 10000


def test_synthetic_numbers_are_in_the_test_range_and_valid():
    rng = random.Random(2)
    numbers = [synthetic_nhs_number(rng) for _ in range(200)]
    assert all(n.startswith("999") and nhs_number.is_valid(n) for n in numbers)
    assert not any(nhs_number.is_valid(bad_checksum(n)) for n in numbers)


def test_a_valid_row_is_accepted_and_normalised():
    number = valid_row()["baby_nhs_number"]
    valid = RowValidator(RowRules(UPLOAD_DAY, 366)).validate(
        RawRow(
            1,
            valid_row(
                baby_nhs_number=f"{number[:3]}-{number[3:6]}-{number[6:]}",
                postcode=" ls14ap ",
                mother_given_name="  Ada  ",
            ),
        )
    )
    assert isinstance(valid, ValidRow) and valid.warnings == ()
    record = valid.record
    assert (record.baby_nhs_number, record.postcode, record.mother_given_name) == (number, "LS1 4AP", "Ada")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"baby_nhs_number": "12345"}, [("baby_nhs_number", "NHS_NUMBER_FORMAT")]),
        ({"baby_nhs_number": ""}, [("baby_nhs_number", "REQUIRED")]),
        ({"baby_date_of_birth": "2026-02-30"}, [("baby_date_of_birth", "DATE_INVALID")]),
        ({"baby_date_of_birth": "2026-11-21"}, [("baby_date_of_birth", "DATE_IN_FUTURE")]),
        (
            {"baby_date_of_birth": (UPLOAD_DAY - timedelta(days=400)).isoformat()},
            [("baby_date_of_birth", "BABY_TOO_OLD")],
        ),
        ({"baby_sex": "F"}, [("baby_sex", "SEX_CODE_INVALID")]),
        ({"birth_weight_grams": "3.4kg"}, [("birth_weight_grams", "NUMBER_INVALID")]),
        ({"birth_weight_grams": "90000"}, [("birth_weight_grams", "OUT_OF_RANGE")]),
        ({"gestation_weeks": "60"}, [("gestation_weeks", "OUT_OF_RANGE")]),
        ({"birth_order": "3", "number_of_babies": "2"}, [("birth_order", "BIRTH_ORDER_EXCEEDS_BABIES")]),
        ({"live_birth": "maybe"}, [("live_birth", "FLAG_INVALID")]),
        ({"mother_family_name": "x" * 500}, [("mother_family_name", "TEXT_TOO_LONG")]),
        ({"address_line_1": "1 Test\x00Street"}, [("address_line_1", "TEXT_CONTROL_CHARACTERS")]),
        ({"postcode": "NOT A POSTCODE"}, [("postcode", "POSTCODE_INVALID")]),
        ({"residence_la_code": "LEEDS"}, [("residence_la_code", "GSS_CODE_INVALID")]),
        ({"notification_type": "UPDATE"}, [("notification_type", "NOTIFICATION_TYPE_INVALID")]),
        ({"notification_type": "AMEND"}, [("original_notification_id", "ORIGINAL_ID_REQUIRED")]),
        ({"original_notification_id": "BN-0"}, [("original_notification_id", "ORIGINAL_ID_UNEXPECTED")]),
    ],
)
def test_each_rule_rejects_with_its_own_code(changes, expected):
    assert codes(**changes) == expected


# Until issue 14 these rejected the row; an optional field that only describes the family is now left out.
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"mother_date_of_birth": "2020-01-01"}, [("mother_date_of_birth", "MOTHER_AGE_IMPLAUSIBLE")]),
        ({"mother_date_of_birth": "2027-01-01"}, [("mother_date_of_birth", "DATE_IN_FUTURE")]),
        ({"mother_date_of_birth": "1995-02-30"}, [("mother_date_of_birth", "DATE_INVALID")]),
        ({"baby_time_of_birth": "25:10"}, [("baby_time_of_birth", "TIME_INVALID")]),
        ({"gp_practice_code": "??"}, [("gp_practice_code", "ODS_CODE_INVALID")]),
        ({"mother_nhs_number": "1112223330"}, [("mother_nhs_number", "NHS_NUMBER_CHECKSUM")]),
        (
            {"mother_nhs_number": "12345", "gp_practice_code": "B8605"},
            [("mother_nhs_number", "NHS_NUMBER_FORMAT"), ("gp_practice_code", "ODS_CODE_INVALID")],
        ),
    ],
)
def test_an_invalid_optional_detail_is_left_out_with_a_warning_and_the_row_accepted(changes, expected):
    record, found = warnings(**changes)
    assert sorted(found) == sorted(expected)
    assert all(getattr(record, field) is None for field, _ in expected)
    assert record.baby_nhs_number == valid_row()["baby_nhs_number"] and record.postcode == "LS1 4AP"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"address_line_2": "Flat 2\x07"}, [("address_line_2", "TEXT_CONTROL_CHARACTERS")]),
        ({"residence_la_code": "LEEDS"}, [("residence_la_code", "GSS_CODE_INVALID")]),
    ],
)
def test_optional_fields_that_find_the_family_or_route_the_record_still_reject_it(changes, expected):
    assert codes(**changes) == expected


def test_a_rejected_row_lists_its_invalid_optional_details_too_so_one_correction_fixes_it():
    assert sorted(codes(baby_sex="F", gp_practice_code="??")) == [
        ("baby_sex", "SEX_CODE_INVALID"),
        ("gp_practice_code", "ODS_CODE_INVALID"),
    ]


def test_a_warning_never_echoes_the_value():
    secret = "Zebedee-Quixote"  # noqa: S105 (a made-up value, not a password)
    result = RowValidator(RowRules(UPLOAD_DAY, 366)).validate(RawRow(1, valid_row(gp_practice_code=secret)))
    assert isinstance(result, ValidRow) and len(result.warnings) == 1
    assert secret not in result.warnings[0].model_dump_json()


def test_every_problem_in_a_row_is_reported_not_just_the_first():
    found = codes(baby_sex="F", postcode="nope", gestation_weeks="")
    assert sorted(found) == [
        ("baby_sex", "SEX_CODE_INVALID"),
        ("gestation_weeks", "REQUIRED"),
        ("postcode", "POSTCODE_INVALID"),
    ]


def test_a_repeated_notification_id_is_rejected_even_after_an_invalid_first_row():
    validator = RowValidator(RowRules(UPLOAD_DAY, 366))
    assert isinstance(validator.validate(RawRow(1, valid_row(baby_sex="F"))), list)
    [error] = validator.validate(RawRow(2, valid_row()))
    assert error.code is ErrorCode.NOTIFICATION_ID_DUPLICATE and error.notification_id == "BN-1"


def test_error_messages_never_echo_the_value():
    secret = "Zebedee-Quixote"  # noqa: S105 (a made-up name, not a password)
    result = RowValidator(RowRules(UPLOAD_DAY, 366)).validate(
        RawRow(
            1, valid_row(mother_family_name=secret * 40, address_line_1=f"{secret}\x07", baby_nhs_number=f"{secret}1")
        )
    )
    assert isinstance(result, list) and len(result) == 3
    assert all(secret not in error.model_dump_json() for error in result)


def test_the_duplicate_id_index_is_exact():
    from birthnotify.domain.validation import SeenIds

    seen = SeenIds()
    ids = [f"BN{n:08d}" for n in range(200_000)]
    assert not any(seen.add(i) for i in ids)
    assert all(seen.add(i) for i in ids[::997])
    assert not seen.add("BN0000000")  # a prefix of a stored id is a different id
    assert not seen.add("N00000001")  # so is a suffix


def test_every_character_sqs_refuses_is_unprintable_so_a_printable_body_skips_the_scan():
    # The premise of sqs_refuses' shortcut, over every code point of this Python's Unicode database.
    printable_but_refused = [
        code for code in range(sys.maxunicode + 1) if chr(code).isprintable() and SQS_FORBIDDEN.search(chr(code))
    ]
    assert printable_but_refused == []
    for body in ('{"a":"caf\u00e9 \u2013 ok"}', "tab\there", "nul\x00", "lone \ud800", "\ufffe", "\x1f"):
        assert sqs_refuses(body) == (SQS_FORBIDDEN.search(body) is not None)
    assert sqs_refuses("line\x0bbreak") and not sqs_refuses("line\r\nbreak")


def _sqs_allows(code_point: int) -> bool:
    """SQS's allowed characters in a message body, as its documentation lists them."""
    return (
        code_point in (0x9, 0xA, 0xD)
        or 0x20 <= code_point <= 0xD7FF
        or 0xE000 <= code_point <= 0xFFFD
        or 0x10000 <= code_point <= 0x10FFFF
    )


def test_sqs_forbidden_finds_exactly_the_characters_sqs_refuses_over_every_code_point():
    wrong = [hex(c) for c in range(0x110000) if bool(SQS_FORBIDDEN.search(chr(c))) is _sqs_allows(c)]
    assert not wrong, wrong[:10]
