"""The suite's guard against tests that straddle London midnight (used by tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from birthnotify.shared.clock import LONDON

LAST_SECONDS_OF_A_DAY = 180
"""Longer than any test takes, its module's fixtures included (the slowest take well under a minute)."""


def wait_out_the_day(now: datetime | None = None, sleep: Callable[[float], None] = time.sleep) -> float:
    """Sleep past London midnight when it is less than LAST_SECONDS_OF_A_DAY away; returns the seconds slept.

    The functions read the real clock, as do the tests that check them (a file is processed on a London day; a
    digest covers the days before today): a test that straddled midnight would see two days and fail for no
    fault of the code. Waiting out the last minutes of a day before each test starts keeps every test within
    one day, whenever the suite runs."""
    now = now or datetime.now(LONDON)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = (midnight - now).total_seconds()
    if left >= LAST_SECONDS_OF_A_DAY:
        return 0.0
    sleep(left + 1)
    return left + 1
