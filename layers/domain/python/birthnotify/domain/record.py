"""The upload contract: one birth notification as a trust sends it, and the stable error codes a row
can fail with. docs/upload-contract.md and the JSON Schemas in docs/ are generated from this module."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from birthnotify.domain.codes import GSS_CODE, ODS_GP_PRACTICE


class ErrorCode(StrEnum):
    """Why a row (or a whole file) was rejected. Codes are stable: trusts may automate on them."""

    # row level
    REQUIRED = "REQUIRED"
    NOTIFICATION_ID_INVALID = "NOTIFICATION_ID_INVALID"
    NOTIFICATION_ID_DUPLICATE = "NOTIFICATION_ID_DUPLICATE"
    NOTIFICATION_TYPE_INVALID = "NOTIFICATION_TYPE_INVALID"
    ORIGINAL_ID_REQUIRED = "ORIGINAL_ID_REQUIRED"
    ORIGINAL_ID_UNEXPECTED = "ORIGINAL_ID_UNEXPECTED"
    NHS_NUMBER_FORMAT = "NHS_NUMBER_FORMAT"
    NHS_NUMBER_CHECKSUM = "NHS_NUMBER_CHECKSUM"
    DATE_INVALID = "DATE_INVALID"
    DATE_IN_FUTURE = "DATE_IN_FUTURE"
    BABY_TOO_OLD = "BABY_TOO_OLD"
    MOTHER_AGE_IMPLAUSIBLE = "MOTHER_AGE_IMPLAUSIBLE"
    TIME_INVALID = "TIME_INVALID"
    SEX_CODE_INVALID = "SEX_CODE_INVALID"
    NUMBER_INVALID = "NUMBER_INVALID"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    BIRTH_ORDER_EXCEEDS_BABIES = "BIRTH_ORDER_EXCEEDS_BABIES"
    FLAG_INVALID = "FLAG_INVALID"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    TEXT_CONTROL_CHARACTERS = "TEXT_CONTROL_CHARACTERS"
    TEXT_CHARACTERS_INVALID = "TEXT_CHARACTERS_INVALID"
    TEXT_INVALID = "TEXT_INVALID"
    POSTCODE_INVALID = "POSTCODE_INVALID"
    GSS_CODE_INVALID = "GSS_CODE_INVALID"
    ODS_CODE_INVALID = "ODS_CODE_INVALID"
    ROW_MALFORMED = "ROW_MALFORMED"
    ROW_DUPLICATE_FIELD = "ROW_DUPLICATE_FIELD"
    CORRECTION_BEFORE_ORIGINAL = "CORRECTION_BEFORE_ORIGINAL"
    REFERENCE_UNRESOLVED = "REFERENCE_UNRESOLVED"
    ROW_UNPROCESSABLE = "ROW_UNPROCESSABLE"
    # file level
    FILE_UNKNOWN_TRUST = "FILE_UNKNOWN_TRUST"
    FILE_BAD_LOCATION = "FILE_BAD_LOCATION"
    FILE_UNSUPPORTED_TYPE = "FILE_UNSUPPORTED_TYPE"
    FILE_EMPTY = "FILE_EMPTY"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    FILE_ENCODING = "FILE_ENCODING"
    FILE_NOT_GZIP = "FILE_NOT_GZIP"
    FILE_MISSING_COLUMNS = "FILE_MISSING_COLUMNS"
    FILE_NOT_CSV = "FILE_NOT_CSV"
    FILE_NOT_JSONL = "FILE_NOT_JSONL"
    FILE_DUPLICATE_COLUMNS = "FILE_DUPLICATE_COLUMNS"
    FILE_LINE_TOO_LONG = "FILE_LINE_TOO_LONG"
    FILE_DUPLICATE = "FILE_DUPLICATE"
    FILE_NOT_XML = "FILE_NOT_XML"
    FILE_XML_DTD_FORBIDDEN = "FILE_XML_DTD_FORBIDDEN"
    FILE_NOT_JSON = "FILE_NOT_JSON"
    FILE_NOT_BIRTH_NOTIFICATION = "FILE_NOT_BIRTH_NOTIFICATION"


ERROR_HELP: dict[ErrorCode, str] = {
    ErrorCode.REQUIRED: "The field is required and was empty or absent: fill it in.",
    ErrorCode.NOTIFICATION_ID_INVALID: "Use 1-64 letters, digits, '.', '_', '-' or '/'.",
    ErrorCode.NOTIFICATION_ID_DUPLICATE: "Another row of this file has the same notification_id; each row "
    "needs its own (send corrections as AMEND with original_notification_id).",
    ErrorCode.NOTIFICATION_TYPE_INVALID: "Use NEW, AMEND or CANCEL.",
    ErrorCode.ORIGINAL_ID_REQUIRED: "AMEND and CANCEL rows must give original_notification_id, the id of "
    "the NEW notification they change.",
    ErrorCode.ORIGINAL_ID_UNEXPECTED: "A NEW row must leave original_notification_id empty.",
    ErrorCode.NHS_NUMBER_FORMAT: "An NHS number has 10 digits (spaces and hyphens are allowed).",
    ErrorCode.NHS_NUMBER_CHECKSUM: "The NHS number fails the modulus 11 check digit: check it for a typo.",
    ErrorCode.DATE_INVALID: "Use a real date as YYYY-MM-DD (DD/MM/YYYY is also accepted).",
    ErrorCode.DATE_IN_FUTURE: "The date is after the day the file was uploaded.",
    ErrorCode.BABY_TOO_OLD: "The baby is older than the notification window allows at upload.",
    ErrorCode.MOTHER_AGE_IMPLAUSIBLE: "The mother's date of birth gives an age at the birth outside 10-65.",
    ErrorCode.TIME_INVALID: "Use a 24-hour time as HH:MM or HH:MM:SS.",
    ErrorCode.SEX_CODE_INVALID: "Use the NHS Data Dictionary phenotypic sex code: 1, 2, 9 or X.",
    ErrorCode.NUMBER_INVALID: "Use a whole number written with digits only: no units, sign, separators or "
    "decimal point.",
    ErrorCode.OUT_OF_RANGE: "The number is outside the plausible range given in the upload contract.",
    ErrorCode.BIRTH_ORDER_EXCEEDS_BABIES: "birth_order cannot be greater than number_of_babies.",
    ErrorCode.FLAG_INVALID: "Use Y or N (in JSON Lines, true or false also).",
    ErrorCode.TEXT_TOO_LONG: "The text is longer than the upload contract allows.",
    ErrorCode.TEXT_CONTROL_CHARACTERS: "The text contains control characters (tabs, line breaks ...).",
    ErrorCode.TEXT_CHARACTERS_INVALID: "The text contains characters that cannot be sent on (an unpaired "
    "surrogate, such as half of an emoji cut by an export, or a non-character such as U+FFFF): correct the text "
    "in the source system and export it as UTF-8 again.",
    ErrorCode.TEXT_INVALID: "Send text here, not a number, list or object.",
    ErrorCode.POSTCODE_INVALID: "Use a full UK postcode such as LS1 4AP.",
    ErrorCode.GSS_CODE_INVALID: "Use the ONS GSS code of the local authority, e.g. E08000035.",
    ErrorCode.ODS_CODE_INVALID: "Use the ODS code of the GP practice: a letter and five digits.",
    ErrorCode.ROW_MALFORMED: "The row is not a record (a JSON Lines row must be an object).",
    ErrorCode.ROW_DUPLICATE_FIELD: "The JSON object gives a field more than once: give each field once.",
    ErrorCode.CORRECTION_BEFORE_ORIGINAL: "An AMEND or CANCEL comes before the NEW notification it corrects in "
    "the same file: put corrections after the notification they change.",
    ErrorCode.REFERENCE_UNRESOLVED: "A reference in the bundle does not lead to a resource of the right kind in it: "
    "the notification is read by following references (MessageHeader.focus, the Communication's subject, the mother's "
    "link, the RelatedPerson's patient, each Observation's subject), so each must name an entry's fullUrl.",
    ErrorCode.ROW_UNPROCESSABLE: "The row could not be processed because of a fault on our side; it was not "
    "forwarded and the service's operators have been alerted. Send the row again in a new file once they "
    "confirm it is fixed.",
    ErrorCode.FILE_UNKNOWN_TRUST: "Upload under inbound/<your trust's ODS code>/; this code is not registered.",
    ErrorCode.FILE_BAD_LOCATION: "Upload files to inbound/<your trust's ODS code>/<file name>.",
    ErrorCode.FILE_UNSUPPORTED_TYPE: "Name the file .csv or .jsonl (rows), or .xml or .json (one FHIR birth "
    "notification bundle), each optionally followed by .gz.",
    ErrorCode.FILE_EMPTY: "The file has no records.",
    ErrorCode.FILE_TOO_LARGE: "Split the file: it is over the size limit.",
    ErrorCode.FILE_ENCODING: "Save the file as UTF-8.",
    ErrorCode.FILE_NOT_GZIP: "The name ends in .gz but the content is not gzip-compressed.",
    ErrorCode.FILE_MISSING_COLUMNS: "The header row lacks required columns (names are listed).",
    ErrorCode.FILE_NOT_CSV: "The file could not be read as CSV (check quoting).",
    ErrorCode.FILE_NOT_JSONL: "Every line of a .jsonl file must be one JSON object.",
    ErrorCode.FILE_DUPLICATE_COLUMNS: "A column of the upload contract appears more than once in the header.",
    ErrorCode.FILE_LINE_TOO_LONG: "A line is longer than any record can be (16 MB): records go one per line.",
    ErrorCode.FILE_DUPLICATE: "The file is identical to one already processed: nothing was forwarded again "
    "(the upload is reported with status DUPLICATE).",
    ErrorCode.FILE_NOT_XML: "A .xml file must be well-formed XML: one FHIR Bundle.",
    ErrorCode.FILE_XML_DTD_FORBIDDEN: "The XML declares a document type (<!DOCTYPE ...>), where entities and external "
    "references live; such files are refused unread. Send the bundle without a DOCTYPE (FHIR never needs one).",
    ErrorCode.FILE_NOT_JSON: "A .json file must be one JSON object (each key once): one FHIR Bundle.",
    ErrorCode.FILE_NOT_BIRTH_NOTIFICATION: "A .xml or .json file must be one FHIR message Bundle whose MessageHeader's "
    "event is pds-birth-notification-1 (a NEMS PDS Birth Notification).",
}


class NotificationType(StrEnum):
    NEW = "NEW"
    AMEND = "AMEND"
    CANCEL = "CANCEL"


def _fail(code: ErrorCode, detail: str | None = None) -> PydanticCustomError:
    # Messages never contain the rejected value: it may be personal data.
    return PydanticCustomError(code.value, detail or ERROR_HELP[code])


NOTIFICATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")
_NHS_SEPARATORS = str.maketrans("", "", " -")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SQS_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters an SQS message body cannot carry (its allowed set is #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD
#x10000-#x10FFFF): unpaired surrogates, U+FFFE and U+FFFF, and most control characters. Written as that set's
complement: the negated set compiled in 3 ms at every cold start, this one in 0.3 ms, and they match alike."""
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_UK_DATE = re.compile(r"^([0-9]{2})/([0-9]{2})/([0-9]{4})$")
_CLOCK = re.compile(r"^[0-9]{2}:[0-9]{2}(:[0-9]{2})?$")
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
_FLAGS = {"Y": True, "N": False}
_SEX_CODES = {"1", "2", "9", "X"}


def sqs_refuses(body: str) -> bool:
    """Whether a message body holds a character SQS refuses (``SQS_FORBIDDEN``)."""
    # Every such character is unprintable (a control character, a surrogate or a non-character), so a printable
    # body, nearly every one, needs no regex scan: one C loop, about twice as fast on the per-row path
    # (tests/unit/test_rules.py checks the premise over every code point).
    return not body.isprintable() and SQS_FORBIDDEN.search(body) is not None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _fail(ErrorCode.TEXT_INVALID)


def _notification_id(value: Any) -> str:
    text = _text(value).strip()
    if not NOTIFICATION_ID_PATTERN.match(text):
        raise _fail(ErrorCode.NOTIFICATION_ID_INVALID)
    return text


def _notification_type(value: Any) -> NotificationType:
    try:
        return NotificationType(_text(value).strip().upper())
    except ValueError:
        raise _fail(ErrorCode.NOTIFICATION_TYPE_INVALID) from None


def nhs_number_checksum_ok(digits: str) -> bool:
    """Modulus 11 check of a 10-digit NHS number (NHS Data Dictionary); tests hold it to the nhs-number
    package's answer, this form being ~15x faster on the per-row path."""
    d = digits.encode()
    # Weights 10..2 over the first nine digits; 48 * 54 removes the ASCII offset (54 = sum of weights).
    total = 10 * d[0] + 9 * d[1] + 8 * d[2] + 7 * d[3] + 6 * d[4] + 5 * d[5] + 4 * d[6] + 3 * d[7] + 2 * d[8] - 2592
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == d[9] - 48


def _nhs_number(value: Any) -> str:
    digits = value.translate(_NHS_SEPARATORS) if isinstance(value, str) else _text(value)
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise _fail(ErrorCode.NHS_NUMBER_FORMAT)
    if not nhs_number_checksum_ok(digits):
        raise _fail(ErrorCode.NHS_NUMBER_CHECKSUM)
    return digits


def _date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    text = _text(value).strip()
    try:
        # Only the two documented shapes: date.fromisoformat alone would also take week dates (2026-W45-1).
        if _ISO_DATE.match(text):
            return date.fromisoformat(text)
        if uk := _UK_DATE.match(text):
            return date(int(uk[3]), int(uk[2]), int(uk[1]))
    except ValueError:
        pass
    raise _fail(ErrorCode.DATE_INVALID)


def _time(value: Any) -> time:
    text = _text(value).strip()
    if _CLOCK.match(text):
        try:
            return time.fromisoformat(text)
        except ValueError:
            pass
    raise _fail(ErrorCode.TIME_INVALID)


def _sex(value: Any) -> str:
    code = _text(value).strip().upper()
    if code not in _SEX_CODES:
        raise _fail(ErrorCode.SEX_CODE_INVALID)
    return code


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    flag = _FLAGS.get(_text(value).strip().upper())
    if flag is None:
        raise _fail(ErrorCode.FLAG_INVALID)
    return flag


def _digits(value: Any) -> int:
    """A whole number as the contract writes it: ASCII digits (or a JSON integer), nothing else. pydantic
    alone would also take 3_200, +3200 and 3200.0."""
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _fail(ErrorCode.NUMBER_INVALID)


_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def _bounded_text(max_length: int, fold_line_breaks: bool = False) -> BeforeValidator:
    def check(value: Any) -> str:
        text = _text(value).strip()
        if fold_line_breaks:
            # Exports often keep a multi-line address in one quoted field: "1 Test Street\nFlat 2".
            text = _LINE_BREAKS.sub(", ", text)
        if not text.isprintable():  # rare: one cheap test keeps the common case fast
            if _CONTROL.search(text):
                raise _fail(ErrorCode.TEXT_CONTROL_CHARACTERS)
            if SQS_FORBIDDEN.search(text):
                raise _fail(ErrorCode.TEXT_CHARACTERS_INVALID)
        if len(text) > max_length:
            raise _fail(ErrorCode.TEXT_TOO_LONG, f"At most {max_length} characters.")
        if not text:
            raise _fail(ErrorCode.REQUIRED)
        return text

    return BeforeValidator(check)


def normalise_postcode(value: str) -> str | None:
    """``"ls14ap"`` -> ``"LS1 4AP"``; None when it is not a UK postcode shape."""
    compact = value.replace(" ", "").upper()
    match = _POSTCODE.match(compact)
    return f"{match[1]} {match[2]}" if match else None


def _postcode(value: Any) -> str:
    postcode = normalise_postcode(_text(value))
    if postcode is None:
        raise _fail(ErrorCode.POSTCODE_INVALID)
    return postcode


def _code(pattern: re.Pattern[str], code: ErrorCode) -> BeforeValidator:
    def check(value: Any) -> str:
        text = _text(value).strip().upper()
        if not pattern.match(text):
            raise _fail(code)
        return text

    return BeforeValidator(check)


NotificationId = Annotated[str, BeforeValidator(_notification_id)]
NhsNumber = Annotated[str, BeforeValidator(_nhs_number)]
CalendarDate = Annotated[date, BeforeValidator(_date)]
ClockTime = Annotated[time, BeforeValidator(_time)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Name = Annotated[str, _bounded_text(100)]
AddressLine = Annotated[str, _bounded_text(100, fold_line_breaks=True)]
Postcode = Annotated[str, BeforeValidator(_postcode)]
GssCode = Annotated[str, _code(GSS_CODE, ErrorCode.GSS_CODE_INVALID)]
GpPracticeCode = Annotated[str, _code(ODS_GP_PRACTICE, ErrorCode.ODS_CODE_INVALID)]
SexCode = Annotated[Literal["1", "2", "9", "X"], BeforeValidator(_sex)]
# Ranges are checked by pydantic-core; its error types map to OUT_OF_RANGE in validation.py.
Grams = Annotated[int, BeforeValidator(_digits), Field(ge=200, le=7000)]
Weeks = Annotated[int, BeforeValidator(_digits), Field(ge=20, le=45)]
BabyCount = Annotated[int, BeforeValidator(_digits), Field(ge=1, le=8)]

MOTHER_AGE_YEARS = (10, 65)


class BirthNotification(BaseModel):
    """One row of an upload file: a birth as the trust records it.

    Empty values count as absent. Exactly these forms are accepted: flags Y or N, in any case (JSON Lines:
    also true or false); dates YYYY-MM-DD or DD/MM/YYYY; times HH:MM or HH:MM:SS; whole numbers as digits
    only (JSON Lines: also JSON integers); codes and postcodes in any case.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    notification_id: NotificationId = Field(
        description="The trust's unique id for this notification: 1-64 of A-Z a-z 0-9 . _ - /, unique in the file."
    )
    notification_type: Annotated[NotificationType, BeforeValidator(_notification_type)] = Field(
        description="NEW, AMEND (replaces an earlier notification) or CANCEL (withdraws one)."
    )
    original_notification_id: NotificationId | None = Field(
        None, description="For AMEND and CANCEL: the notification_id of the NEW notification they change."
    )
    baby_nhs_number: NhsNumber = Field(
        description="10 digits with a modulus 11 check digit; spaces and hyphens are removed."
    )
    baby_date_of_birth: CalendarDate = Field(
        description="YYYY-MM-DD (or DD/MM/YYYY); not after the upload day "
        "and within the notification window (366 days by default)."
    )
    baby_time_of_birth: ClockTime | None = Field(None, description="24-hour HH:MM[:SS].")
    baby_sex: SexCode = Field(
        description="NHS Data Dictionary person phenotypic sex: 1 male, 2 female, 9 indeterminate, X not known."
    )
    birth_weight_grams: Grams = Field(description="Whole grams in digits (3200): no units.")
    gestation_weeks: Weeks = Field(description="Completed weeks of gestation.")
    birth_order: BabyCount = Field(description="1 for a single birth or first-born; not more than number_of_babies.")
    number_of_babies: BabyCount = Field(description="Babies born in this delivery.")
    live_birth: Flag = Field(description="Y or N; N for a stillbirth: such records are withheld, never forwarded.")
    mother_nhs_number: NhsNumber | None = Field(None, description="As baby_nhs_number.")
    mother_given_name: Name = Field(description="At most 100 characters, no control characters.")
    mother_family_name: Name = Field(description="At most 100 characters, no control characters.")
    mother_date_of_birth: CalendarDate | None = Field(
        None, description="YYYY-MM-DD (or DD/MM/YYYY); the mother's age at the birth must be 10-65."
    )
    address_line_1: AddressLine = Field(
        description="Residence address, at most 100 characters; line breaks inside a line become ', '."
    )
    address_line_2: AddressLine | None = Field(None, description="As address_line_1.")
    address_line_3: AddressLine | None = Field(None, description="As address_line_1.")
    address_line_4: AddressLine | None = Field(None, description="As address_line_1.")
    postcode: Postcode = Field(
        description="UK postcode of the baby's residence, any case and spacing, normalised to 'LS1 4AP'."
    )
    residence_la_code: GssCode | None = Field(
        None,
        description="ONS GSS code of the council where the baby lives, e.g. E08000035; optional when "
        "the postcode resolves. A district (E07) routes to its county, an ended council's code to its successor. "
        "Codes of Scotland (S...), Northern Ireland (N...), the Channel Islands (L99999999) and the Isle of Man "
        "(M99999999) are accepted, and such records held as outside this service.",
    )
    gp_practice_code: GpPracticeCode | None = Field(
        None, description="ODS code of the registered GP practice: a letter and five digits."
    )
    restricted: Flag = Field(description="Y or N; Y for a PDS-restricted (flagged sensitive) record: withheld.")
    sharing_objection: Flag = Field(description="Y or N; Y when a parent objected to sharing: withheld.")


def cross_field_errors(
    record: BirthNotification, upload_day: date, max_baby_age_days: int
) -> list[tuple[str, ErrorCode, str | None]]:
    """Rules that involve more than one field or the upload day, each as (field to fix, code, detail)."""
    errors: list[tuple[str, ErrorCode, str | None]] = []
    if record.notification_type is NotificationType.NEW:
        if record.original_notification_id is not None:
            errors.append(("original_notification_id", ErrorCode.ORIGINAL_ID_UNEXPECTED, None))
    elif record.original_notification_id is None:
        errors.append(("original_notification_id", ErrorCode.ORIGINAL_ID_REQUIRED, None))
    if record.birth_order > record.number_of_babies:
        errors.append(("birth_order", ErrorCode.BIRTH_ORDER_EXCEEDS_BABIES, None))
    if record.baby_date_of_birth > upload_day:
        errors.append(("baby_date_of_birth", ErrorCode.DATE_IN_FUTURE, None))
    elif record.baby_date_of_birth < upload_day - timedelta(days=max_baby_age_days):
        errors.append(
            ("baby_date_of_birth", ErrorCode.BABY_TOO_OLD, f"More than {max_baby_age_days} days before upload.")
        )
    mother_dob = record.mother_date_of_birth
    if mother_dob is not None:
        if mother_dob > upload_day:
            errors.append(("mother_date_of_birth", ErrorCode.DATE_IN_FUTURE, None))
        else:
            age_years = (record.baby_date_of_birth - mother_dob).days / 365.25
            if not MOTHER_AGE_YEARS[0] <= age_years <= MOTHER_AGE_YEARS[1]:
                errors.append(("mother_date_of_birth", ErrorCode.MOTHER_AGE_IMPLAUSIBLE, None))
    return errors


RECORD_FIELDS: tuple[str, ...] = tuple(BirthNotification.model_fields)
REQUIRED_FIELDS: frozenset[str] = frozenset(n for n, f in BirthNotification.model_fields.items() if f.is_required())
CONTROL_FIELDS: frozenset[str] = frozenset(
    {
        "notification_id",
        "notification_type",
        "original_notification_id",
        "live_birth",
        "restricted",
        "sharing_objection",
    }
)
"""Fields that steer the pipeline; the identifiers travel in every message's envelope, the flags never."""
SHAREABLE_FIELDS: frozenset[str] = frozenset(RECORD_FIELDS) - CONTROL_FIELDS
"""Fields a sharing agreement may allow."""
DROPPABLE_FIELDS: frozenset[str] = frozenset(
    {"baby_time_of_birth", "mother_nhs_number", "mother_date_of_birth", "gp_practice_code"}
)
"""Optional fields left out, with a warning, when present but invalid (``DROPPABLE_RULE``)."""
DROPPABLE_RULE = (
    "These optional fields describe the family but neither find it nor steer the record. One that is present but "
    "invalid (its format, or a check such as the mother's age at the birth) is left out and the row accepted, with "
    "a warning in the trust's report: a family must not lose support over a detail the receiving council's "
    "agreement may not even include. The other optional fields are never left out silently: address lines say "
    "where the family is (a partial address can send a visitor to the wrong door), residence_la_code routes the "
    "record and original_notification_id says what it corrects; a problem with one of them rejects the row."
)
