"""Turns a raw row into a validated notification or a list of row errors (no values echoed).

An optional field that only describes the family (``DROPPABLE_FIELDS``) and is present but invalid does
not cost the row: the field is left out, the trust is warned, and the row goes on without it. Every other
problem rejects the row, and a rejected row lists every problem it has, warnings' fields included, so one
correction fixes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from birthnotify.domain.fast_record import fast_record
from birthnotify.domain.messages import RowError, RowWarning
from birthnotify.domain.problems import RowProblem
from birthnotify.domain.reader import RawRow
from birthnotify.domain.record import (
    DROPPABLE_FIELDS,
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
LEFT_OUT = "The value was left out and the row accepted without it."


@dataclass(frozen=True)
class RowRules:
    """The context a row is judged in: the day the trust uploaded it and the notification window."""

    upload_day: date
    max_baby_age_days: int


@dataclass(frozen=True, slots=True)
class ValidRow:
    """An accepted row: the notification, and the optional fields left out of it (as warnings)."""

    record: BirthNotification
    warnings: tuple[RowWarning, ...] = ()


class RowValidator:
    """Validates rows of one file, rejecting repeated notification ids within it."""

    def __init__(self, rules: RowRules) -> None:
        self._rules = rules
        self.seen_ids = SeenIds()
        """The well-formed notification ids seen so far (a resumed run restores them)."""

    def validate(self, raw: RawRow) -> ValidRow | list[RowError]:
        """The notification (with any warnings), or every error found in the row."""
        notification_id = _safe_id(raw.values.get("notification_id"))
        issues: list[RowProblem] = []
        if notification_id is not None:
            # Every well-formed id counts, valid row or not: a later row reusing it is still a duplicate.
            if self.seen_ids.add(notification_id):
                issues.append(_problem("notification_id", ErrorCode.NOTIFICATION_ID_DUPLICATE, None))
        unread: set[str | None] = set()
        values = raw.values
        if raw.problems or raw.field_problems:  # the reader found something (rare: most rows skip this)
            issues += raw.problems
            if _blocking(raw.problems):
                # What the reader found makes the values unreliable: report that, not their checks.
                return self._rejected(raw, notification_id, issues)
            issues += raw.field_problems
            unread = {problem.field for problem in (*raw.problems, *raw.field_problems)}
            values = _without(values, unread)
        try:
            # Most rows are written the common way, checked natively; the model takes the rest.
            record = fast_record(values) or BirthNotification.model_validate(values)
        except ValidationError as exc:
            found = [_issue(error) for error in exc.errors(include_input=False)]
            issues += [issue for issue in found if issue.field not in unread]  # already reported as unreadable
            if _blocking(issues):
                return self._rejected(raw, notification_id, issues)
            try:  # only optional fields that can be left out are wrong: leave them out
                record = BirthNotification.model_validate(_without(values, {issue.field for issue in found}))
            except ValidationError:  # cannot happen (the other fields passed), but never accept unchecked
                return self._rejected(raw, notification_id, issues)
        if _blocking(issues):
            return self._rejected(raw, notification_id, issues)
        for field, code, detail in cross_field_errors(record, self._rules.upload_day, self._rules.max_baby_age_days):
            issues.append(_problem(field, code, detail))
        if _blocking(issues):
            return self._rejected(raw, notification_id, issues)
        if not issues:  # most rows: nothing left out, nothing to warn of
            return ValidRow(record)
        left_out = {issue.field for issue in issues if issue.field and getattr(record, issue.field) is not None}
        if left_out:  # a value that passed alone but not with the rest (a mother's implausible age)
            record = record.model_copy(update=dict.fromkeys(left_out))
        name = _namer(raw)
        return ValidRow(
            record,
            tuple(
                RowWarning(
                    row=raw.row,
                    notification_id=notification_id,
                    field=name(issue.field),
                    code=issue.code,
                    message=f"{issue.message} {LEFT_OUT}",
                )
                for issue in issues
            ),
        )

    @staticmethod
    def _rejected(raw: RawRow, notification_id: str | None, issues: Iterable[RowProblem]) -> list[RowError]:
        name = _namer(raw)
        return [
            RowError(
                row=raw.row,
                notification_id=notification_id,
                field=name(issue.field),
                code=issue.code,
                message=issue.message,
            )
            for issue in issues
        ]


def _blocking(issues: Iterable[RowProblem]) -> bool:
    return any(issue.field not in DROPPABLE_FIELDS for issue in issues)


def _without(values: dict[str, object], fields: set[str | None]) -> dict[str, object]:
    return {name: value for name, value in values.items() if name not in fields} if fields else values


def _namer(raw: RawRow) -> Callable[[str | None], str | None]:
    """How the file names a field: a bundle by its element, a CSV or JSON Lines file by the contract's name."""
    locations = raw.locations
    if not locations:
        return lambda field: field
    return lambda field: locations.get(field, field) if field else field


def _problem(field: str, code: ErrorCode, detail: str | None) -> RowProblem:
    return RowProblem(code, detail or ERROR_HELP[code], field)


def _safe_id(value: object) -> str | None:
    """The trust's notification id, only when it is well formed (so a mis-keyed value is not echoed)."""
    if isinstance(value, str) and NOTIFICATION_ID_PATTERN.match(value):
        return value
    return None


def _issue(error: ErrorDetails) -> RowProblem:
    kind = error["type"]
    code = ErrorCode(kind) if kind in _KNOWN_CODES else _PYDANTIC_CODES.get(kind, ErrorCode.TEXT_INVALID)
    field = str(error["loc"][0]) if error["loc"] else None
    message = error["msg"] if kind in _KNOWN_CODES or kind in _PYDANTIC_MESSAGE_KEPT else ERROR_HELP[code]
    return RowProblem(code, message, field)
