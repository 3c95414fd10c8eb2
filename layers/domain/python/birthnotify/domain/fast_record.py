"""A fast path for rows written the common way: the contract's checks as pydantic-core's own constraints.

``BirthNotification`` (record.py) is the contract, with Python validators that accept every documented
spelling (any case, surrounding spaces, DD/MM/YYYY dates, spaced NHS numbers, JSON Lines values) and say
what is wrong. Most rows use one spelling only: ids as they are, codes and flags upper-case, ISO dates,
plain digits, text without surrounding spaces or unusual characters, postcodes already normalised. Here
those spellings are checked natively (patterns, pydantic's own date, time, integer, boolean and enum
parsing, chained after a pattern so nothing else is taken), and a row that passes becomes the same
``BirthNotification`` the model would have made. Anything else returns None, and the caller validates
with the model, which accepts the unusual spellings and produces the errors.

tests/unit/test_fast_record.py shows with hypothesis that this path never accepts what the model rejects
and yields identical values, and pins the pydantic internals used below to the pinned pydantic version.
"""

from __future__ import annotations

from datetime import date, time
from typing import Annotated, Any, NotRequired, cast

from pydantic import ConfigDict, GetPydanticSchema, TypeAdapter, ValidationError
from pydantic_core import core_schema
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from birthnotify.domain.record import BirthNotification, NotificationType, nhs_number_checksum_ok

_ID = r"^[A-Za-z0-9._/-]{1,64}$"
# Text the model keeps exactly as given: no surrounding spaces, no line breaks, nothing unprintable.
_TEXT = r"^[A-Za-z0-9'.,&/()-](?:[A-Za-z0-9 '.,&/()-]{0,98}[A-Za-z0-9'.,&/()-])?$"
_POSTCODE = r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$"
_GSS = r"^(?:[ENSW][0-9]{8}|[LM]99999999)$"
_GP = r"^[A-Z][0-9]{5}$"


def _pattern(pattern: str) -> GetPydanticSchema:
    return GetPydanticSchema(lambda _type, _handler: core_schema.str_schema(pattern=pattern))


def _chain(pattern: str, then: core_schema.CoreSchema) -> GetPydanticSchema:
    """A string matching ``pattern``, then parsed by pydantic-core (so only that spelling is parsed)."""
    return GetPydanticSchema(
        lambda _type, _handler: core_schema.chain_schema([core_schema.str_schema(pattern=pattern), then])
    )


Id = Annotated[str, _pattern(_ID)]
Text = Annotated[str, _pattern(_TEXT)]
NhsDigits = Annotated[str, _pattern(r"^[0-9]{10}$")]
IsoDate = Annotated[date, _chain(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", core_schema.date_schema())]
Clock = Annotated[time, _chain(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?$", core_schema.time_schema())]
YesNo = Annotated[bool, _chain(r"^[YN]$", core_schema.bool_schema())]


def _digits(low: int, high: int) -> GetPydanticSchema:
    return _chain(r"^[0-9]{1,9}$", core_schema.int_schema(ge=low, le=high))


class _CommonSpelling(TypedDict):
    __pydantic_config__ = ConfigDict(extra="ignore", hide_input_in_errors=True)  # type: ignore[misc]

    notification_id: Id
    notification_type: NotificationType
    original_notification_id: NotRequired[Id]
    baby_nhs_number: NhsDigits
    baby_date_of_birth: IsoDate
    baby_time_of_birth: NotRequired[Clock]
    baby_sex: Annotated[str, _pattern(r"^[129X]$")]
    birth_weight_grams: Annotated[int, _digits(200, 7000)]
    gestation_weeks: Annotated[int, _digits(20, 45)]
    birth_order: Annotated[int, _digits(1, 8)]
    number_of_babies: Annotated[int, _digits(1, 8)]
    live_birth: YesNo
    mother_nhs_number: NotRequired[NhsDigits]
    mother_given_name: Text
    mother_family_name: Text
    mother_date_of_birth: NotRequired[IsoDate]
    address_line_1: Text
    address_line_2: NotRequired[Text]
    address_line_3: NotRequired[Text]
    address_line_4: NotRequired[Text]
    postcode: Annotated[str, _pattern(_POSTCODE)]
    residence_la_code: NotRequired[Annotated[str, _pattern(_GSS)]]
    gp_practice_code: NotRequired[Annotated[str, _pattern(_GP)]]
    restricted: YesNo
    sharing_objection: YesNo


_VALIDATOR = TypeAdapter(_CommonSpelling)
_UNSET = dict.fromkeys(BirthNotification.model_fields)
"""Every field of the model, in its order, as None: what a field the row left out holds."""
assert all(field.default is None for field in BirthNotification.model_fields.values() if not field.is_required())
assert _CommonSpelling.__required_keys__ | _CommonSpelling.__optional_keys__ <= _UNSET.keys()
_new_record = object.__new__
_set = object.__setattr__


def fast_record(values: dict[str, Any]) -> BirthNotification | None:
    """The notification, when every value is written the common way and passes; None otherwise (the
    model then decides, and says what is wrong)."""
    try:
        checked = cast(dict[str, Any], _VALIDATOR.validate_python(values))
    except ValidationError:
        return None
    if not nhs_number_checksum_ok(checked["baby_nhs_number"]):
        return None
    mother = checked.get("mother_nhs_number")
    if mother is not None and not nhs_number_checksum_ok(mother):
        return None
    # What BaseModel.model_construct does, without its per-field Python loop (pinned by a test).
    record = _new_record(BirthNotification)
    fields = _UNSET.copy()
    fields.update(checked)  # a key already there keeps its place: the model's order (~1 us less than a loop)
    _set(record, "__dict__", fields)
    _set(record, "__pydantic_fields_set__", set(checked))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record
