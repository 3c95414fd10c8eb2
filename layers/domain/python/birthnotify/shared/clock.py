"""Time as the service reckons it: instants in UTC, days in England."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


def utc_now() -> datetime:
    return datetime.now(UTC)


def london_day(moment: datetime) -> date:
    """The calendar day in England of an instant (an upload at 00:30 BST belongs to that day)."""
    return moment.astimezone(LONDON).date()
