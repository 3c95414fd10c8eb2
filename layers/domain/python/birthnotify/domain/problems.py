"""What can be wrong with an upload as it is read: the whole file, or one record (before its values are
judged by the contract). Messages never quote the file's content."""

from __future__ import annotations

from dataclasses import dataclass

from birthnotify.domain.record import ErrorCode


class FileRejected(Exception):
    """A problem with the whole file. The message is safe to show the trust (no file content)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why a record, or one of its fields, cannot be validated as it stands; becomes a row error (or, for
    an optional field that is left out, a warning)."""

    code: ErrorCode
    message: str
    field: str | None = None
