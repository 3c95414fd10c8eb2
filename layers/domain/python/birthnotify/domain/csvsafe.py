"""CSV cells that a spreadsheet will not run as a formula."""

from __future__ import annotations

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "|")


def spreadsheet_safe(value: object) -> str:
    """The value as text, prefixed with ' when a spreadsheet would read it as a formula (OWASP advice)."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_STARTS) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
