"""The suite's guard against tests that straddle London midnight (tests/clock_support.py, run by conftest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from birthnotify.shared.clock import LONDON, london_day
from clock_support import LAST_SECONDS_OF_A_DAY, wait_out_the_day


def _slept(now: datetime) -> list[float]:
    slept: list[float] = []
    wait_out_the_day(now.astimezone(LONDON), sleep=slept.append)
    return slept


def test_a_test_starting_in_the_last_minutes_of_a_london_day_starts_the_next_day():
    for now in (
        datetime(2026, 11, 25, 23, 58, 30, tzinfo=UTC),  # GMT: London midnight is 00:00 UTC
        datetime(2026, 6, 30, 22, 59, 59, tzinfo=UTC),  # BST: London midnight is 23:00 UTC
    ):
        [seconds] = _slept(now)
        assert seconds <= LAST_SECONDS_OF_A_DAY + 1
        after = now + timedelta(seconds=seconds)
        assert london_day(after) != london_day(now)
        assert after.astimezone(LONDON).hour == 0


def test_a_test_starting_earlier_in_the_day_does_not_wait():
    for now in (
        datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 25, 23, 56, 59, tzinfo=UTC),  # 181 s before midnight
        datetime(2026, 6, 30, 23, 0, 1, tzinfo=UTC),  # just after a BST midnight
    ):
        assert _slept(now) == []
