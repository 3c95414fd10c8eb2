"""Turns a raw row into a validated notification or a list of row errors (no values echoed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from birthnotify.domain.messages import RowError
from birthnotify.domain.reader import RawRow
from birthnotify.domain.record import (
    ERROR_HELP,
    NOTIFICATION_ID_PATTERN,
    BirthNotification,
    ErrorCode,
    cross_field_errors,
)
from birthnotify.domain.seen import SeenIds

# pydantic's own error types, for the few checks the model leaves to pydantic itself.
_PYDANTIC_CODES = {
    "missing": ErrorCode.REQUIRED,
    "literal_error": ErrorCode.SEX_CODE_INVALID,
    "int_parsing": ErrorCode.NUMBER_INVALID,
    "int_type": ErrorCode.NUMBER_INVALID,
    "int_from_float": ErrorCode.NUMBER_INVALID,
    "greater_than_equal": ErrorCode.OUT_OF_RANGE,
    "less_than_equal": ErrorCode.OUT_OF_RANGE,
}
# pydantic's messages for these say what is allowed ("greater than or equal to 200"), never the input.
_PYDANTIC_MESSAGE_KEPT = frozenset({"greater_than_equal", "less_than_equal"})
_KNOWN_CODES = frozenset(code.value for code in ErrorCode)


@dataclass(frozen=True)
class RowRules:
    """The context a row is judged in: the day the trust uploaded it and the notification window."""

    upload_day: date
    max_baby_age_days: int


class RowValidator:
    """Validates rows of one file, rejecting repeated notification ids within it."""

    def __init__(self, rules: RowRules) -> None:
        self._rules = rules
        self._seen_ids = SeenIds()

    def validate(self, raw: RawRow) -> BirthNotification | list[RowError]:
        """The notification, or every error found in the row."""
        notification_id = _safe_id(raw.values.get("notification_id"))
        errors: list[RowError] = []
        if notification_id is not None:
            # Every well-formed id counts, valid row or not: a later row reusing it is still a duplicate.
            if self._seen_ids.add(notification_id):
                errors.append(self._error(raw.row, notification_id, "notification_id",
                                          ErrorCode.NOTIFICATION_ID_DUPLICATE, None))
        if raw.problems:  # what the reader found makes the values unreliable: report that, not their checks
            errors.extend(RowError(row=raw.row, notification_id=notification_id, field=problem.field,
                                   code=problem.code, message=problem.message) for problem in raw.problems)
            return errors
        try:
            record = BirthNotification.model_validate(raw.values)
        except ValidationError as exc:
            errors.extend(_row_error(raw.row, notification_id, error) for error in exc.errors(include_input=False))
            return errors
        for field, code, detail in cross_field_errors(record, self._rules.upload_day, self._rules.max_baby_age_days):
            errors.append(self._error(raw.row, notification_id, field, code, detail))
        return errors or record

    @staticmethod
    def _error(row: int, notification_id: str | None, field: str, code: ErrorCode, detail: str | None) -> RowError:
        return RowError(row=row, notification_id=notification_id, field=field, code=code,
                        message=detail or ERROR_HELP[code])


def _safe_id(value: object) -> str | None:
    """The trust's notification id, only when it is well formed (so a mis-keyed value is not echoed)."""
    if isinstance(value, str) and NOTIFICATION_ID_PATTERN.match(value):
        return value
    return None


def _row_error(row: int, notification_id: str | None, error: ErrorDetails) -> RowError:
    kind = error["type"]
    code = ErrorCode(kind) if kind in _KNOWN_CODES else _PYDANTIC_CODES.get(kind, ErrorCode.TEXT_INVALID)
    field = str(error["loc"][0]) if error["loc"] else None
    message = error["msg"] if kind in _KNOWN_CODES or kind in _PYDANTIC_MESSAGE_KEPT else ERROR_HELP[code]
    return RowError(row=row, notification_id=notification_id, field=field, code=code, message=message)
