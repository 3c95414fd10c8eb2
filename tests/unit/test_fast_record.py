"""The fast path for commonly written rows (domain/fast_record.py) against the contract's model: it never
accepts what the model rejects, and what it accepts is exactly what the model makes of the row."""

from __future__ import annotations

import re
from datetime import date, time

import pydantic
from birthnotify.domain.fast_record import fast_record
from birthnotify.domain.record import BirthNotification, nhs_number_checksum_ok
from birthnotify_cli.synthetic import Mix, SyntheticRows, load_postcodes_by_district
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_support import REGISTRY_PATH, ROOT
from pydantic import ValidationError

DAY = date(2026, 11, 20)


def _nhs_numbers() -> st.SearchStrategy[str]:
    def with_check_digit(nine: str) -> str:
        for last in "0123456789":
            if nhs_number_checksum_ok(nine + last):
                return nine + last
        return nine + "0"  # no valid check digit: an invalid number

    return st.from_regex(r"[0-9]{9}", fullmatch=True).map(with_check_digit)


COMMON = {
    "notification_id": st.from_regex(r"[A-Za-z0-9._/-]{1,64}", fullmatch=True),
    "notification_type": st.sampled_from(["NEW", "AMEND", "CANCEL"]),
    "original_notification_id": st.from_regex(r"[A-Za-z0-9._/-]{1,64}", fullmatch=True),
    "baby_nhs_number": _nhs_numbers(),
    "baby_date_of_birth": st.dates(date(1900, 1, 1), date(2100, 12, 31)).map(date.isoformat),
    "baby_time_of_birth": st.times().map(lambda t: t.strftime("%H:%M"))
    | st.times().map(lambda t: t.strftime("%H:%M:%S")),
    "baby_sex": st.sampled_from(["1", "2", "9", "X"]),
    "birth_weight_grams": st.integers(150, 7100).map(str),
    "gestation_weeks": st.integers(15, 50).map(str),
    "birth_order": st.integers(0, 9).map(str),
    "number_of_babies": st.integers(0, 9).map(str),
    "live_birth": st.sampled_from(["Y", "N"]),
    "mother_nhs_number": _nhs_numbers(),
    "mother_given_name": st.from_regex(r"[A-Za-z][A-Za-z '.-]{0,20}[a-z]", fullmatch=True),
    "mother_family_name": st.from_regex(r"[A-Za-z][A-Za-z '.-]{0,20}[a-z]", fullmatch=True),
    "mother_date_of_birth": st.dates(date(1900, 1, 1), date(2100, 12, 31)).map(date.isoformat),
    "address_line_1": st.from_regex(r"[0-9A-Za-z][0-9A-Za-z ,.'/&()-]{0,99}", fullmatch=True),
    "address_line_2": st.from_regex(r"[0-9A-Za-z][0-9A-Za-z ,.'/&()-]{0,99}", fullmatch=True),
    "address_line_3": st.from_regex(r"[0-9A-Za-z][0-9A-Za-z ,.'/&()-]{0,99}", fullmatch=True),
    "address_line_4": st.from_regex(r"[0-9A-Za-z][0-9A-Za-z ,.'/&()-]{0,99}", fullmatch=True),
    "postcode": st.from_regex(r"[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}", fullmatch=True),
    "residence_la_code": st.from_regex(r"[ENSWLM][0-9]{8}", fullmatch=True),
    "gp_practice_code": st.from_regex(r"[A-Z][0-9]{5}", fullmatch=True),
    "restricted": st.sampled_from(["Y", "N"]),
    "sharing_objection": st.sampled_from(["Y", "N"]),
}
OPTIONAL = {name for name, field in BirthNotification.model_fields.items() if not field.is_required()}

# Spellings the model accepts or rejects that the fast path must leave to it, and a few it may not expect.
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        " NEW",
        "new",
        "Amend ",
        "cancel",
        "y",
        "n",
        "yes",
        "true",
        "1",
        "0",
        "-1",
        "+3200",
        "3_200",
        "3200.0",
        " 3200",
        "٣٢٠٠",
        "3200 ",
        "1e3",
        "2026-02-30",
        "2026-2-05",
        "05/11/2026",
        "31/02/2026",
        "20261105",
        "2026-11-05T00:00",
        "1700000000",
        " 2026-11-05",
        "2026-W45-1",
        "24:00",
        "23:59:60",
        "7:05",
        "21:15:00.5",
        "21.15",
        " 21:15",
        "x",
        "ls1 4ap",
        "LS14AP",
        "LS1  4AP",
        "e08000035",
        " E08000035",
        "e31006",
        "999 728 6235",
        "999-728-6235",
        "9997286236",
        "１２３４５６７８９０",
        "Zoë",
        "Ngozi\nAdebayo",
        "Flat 2\r\n1 Street",
        "a\tb",
        "\u00a0Anna",
        "Anna\u200b",
        "\ud800",
        "\uffff",
        "x" * 101,
        "A" * 65,
        "O'Brien",
        "St. Mary's",
        "(none)",
    ]
)
ODD_VALUE = (
    ODD_TEXT
    | st.text(max_size=12)
    | st.integers(-10, 8000)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False, max_value=1e4, min_value=-1e4)
    | st.sampled_from([date(2026, 11, 5), time(21, 15), [], {}])
)

RESPELLINGS = [
    str.lower,
    str.upper,
    str.title,
    lambda s: f" {s}",
    lambda s: f"{s} ",
    lambda s: f"{s}\n",
    lambda s: f"\u00a0{s}",
    lambda s: f"{s}\u200b",
    lambda s: s.replace(" ", ""),
    lambda s: s.replace(" ", "  "),
    lambda s: s.replace("-", "/"),
    lambda s: s.replace(":", "."),
    lambda s: s[:-1],
    lambda s: s + s[-1:],
    lambda s: f"{s}\t",
    lambda s: f"0{s}",
]


@st.composite
def rows(draw: st.DrawFn) -> dict[str, object]:
    """A commonly written row, often with some fields spelled otherwise, wrong, or left out."""
    row: dict[str, object] = {}
    for name, strategy in COMMON.items():
        if name in OPTIONAL and draw(st.booleans()):
            continue
        row[name] = draw(strategy)
    for name in draw(st.lists(st.sampled_from(sorted(COMMON)), max_size=3, unique=True)):
        choice = draw(st.integers(0, 4))
        if choice == 0:
            row.pop(name, None)
        elif choice == 1:
            row[name] = draw(ODD_VALUE)
        else:  # the common spelling, changed a little
            row[name] = draw(st.sampled_from(RESPELLINGS))(draw(COMMON[name]))
    return row


@settings(
    max_examples=2000, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(rows())
def test_the_fast_path_never_accepts_what_the_model_rejects_and_yields_identical_values(row):
    fast = fast_record(row)
    try:
        model = BirthNotification.model_validate(row)
    except ValidationError:
        assert fast is None
        return
    if fast is None:
        return  # an unusual spelling (or an invalid row): the model decides
    assert type(fast) is BirthNotification
    assert fast == model
    assert fast.model_dump_json() == model.model_dump_json()  # the same values, the same order
    assert fast.model_fields_set == model.model_fields_set
    assert fast.model_dump(exclude_unset=True) == model.model_dump(exclude_unset=True)


def test_the_fast_path_takes_commonly_written_rows():
    postcodes = load_postcodes_by_district(REGISTRY_PATH.parent / "postcodes.csv")
    generator = SyntheticRows(postcodes, DAY, seed=3, mix=Mix(invalid=0, withheld=0.02, held=0.02, amend_cancel=0.05))
    written = [{name: value for name, value in row.items() if value} for row in generator.rows(500)]
    taken = [row for row in written if fast_record(row) is not None]
    assert len(taken) >= 0.95 * len(written)
    assert all(fast_record(row) == BirthNotification.model_validate(row) for row in taken)


def test_the_pydantic_internals_the_fast_path_sets_are_those_of_the_pinned_version():
    """fast_record builds the record as BaseModel.model_construct does (its __dict__, fields set, extra and
    private slots): a new pydantic may change that, so it is pinned and compared with model_construct."""
    pinned = re.search(
        r"^pydantic==(\S+)$", (ROOT / "layers" / "dependencies" / "requirements.txt").read_text(), re.MULTILINE
    )
    assert pinned and pydantic.VERSION == pinned[1], "re-check domain/fast_record.py against this pydantic"
    written = {
        "notification_id": "N-1",
        "notification_type": "NEW",
        "baby_nhs_number": "9997286235",
        "baby_date_of_birth": "2026-10-28",
        "baby_sex": "2",
        "birth_weight_grams": "3200",
        "gestation_weeks": "40",
        "birth_order": "1",
        "number_of_babies": "1",
        "live_birth": "Y",
        "mother_given_name": "Orla",
        "mother_family_name": "Gill",
        "address_line_1": "1 Canal Street",
        "postcode": "LS1 4AP",
        "restricted": "N",
        "sharing_objection": "N",
    }
    fast = fast_record(written)
    assert fast is not None
    constructed = BirthNotification.model_construct(
        **dict(BirthNotification.model_validate(written)), _fields_set=set(written)
    )
    for slot in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"):
        assert getattr(fast, slot) == getattr(constructed, slot), slot
    assert list(fast.__dict__) == list(constructed.__dict__)  # the model's field order too
    assert fast.model_copy(update={"baby_sex": "1"}).baby_sex == "1" and hash(fast) == hash(constructed)
