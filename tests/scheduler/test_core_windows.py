"""Active time windows on their own: minutes of the day in UTC, weekdays, midnight crossing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus.events.config import TimeWindow
from consumers.scheduler.windows import is_open, next_opening

FRIDAY_NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def w(start: str, end: str, *days: int) -> TimeWindow:
    """A window from HH:MM to HH:MM on ISO weekdays (none = every day)."""
    sh, sm = map(int, start.split(":"))
    eh, em = map(int, end.split(":"))
    return TimeWindow(start_minute=sh * 60 + sm, end_minute=eh * 60 + em, weekdays=days)


@pytest.mark.parametrize(
    ("window", "when", "expected"),
    [
        (w("11:00", "13:00"), "2026-11-27T12:00", True),
        (w("11:00", "12:00"), "2026-11-27T12:00", False),  # end is exclusive
        (w("12:00", "13:00"), "2026-11-27T12:00", True),  # start is inclusive
        (w("22:00", "02:00"), "2026-11-27T23:30", True),
        (w("22:00", "02:00"), "2026-11-28T01:59", True),
        (w("22:00", "02:00"), "2026-11-28T02:00", False),
        (w("08:00", "08:00"), "2026-11-27T03:00", True),  # start == end: the whole day
        (w("09:00", "17:00", 1, 2, 3, 4, 5), "2026-11-28T10:00", False),  # Saturday
        (w("09:00", "17:00", 6), "2026-11-28T10:00", True),
        (w("23:00", "01:00", 5), "2026-11-28T00:30", True),  # opened on Friday
        (w("23:00", "01:00", 6), "2026-11-28T00:30", False),
    ],
)
def test_is_open(window: TimeWindow, when: str, expected: bool) -> None:
    """A window is open from its start (inclusive) to its end (exclusive) on its days."""
    at = datetime.fromisoformat(when).replace(tzinfo=UTC)
    assert is_open((window,), at) is expected


def test_no_windows_means_always_open() -> None:
    """A destination without windows may always transfer."""
    assert is_open((), FRIDAY_NOON)


def test_several_windows_any_of_them_opens() -> None:
    """With several windows, being inside one is enough."""
    assert is_open((w("01:00", "02:00"), w("11:30", "12:30")), FRIDAY_NOON)


def test_next_opening_is_the_earliest_start_after_now() -> None:
    """The next opening is the nearest window start in the future, across days and weekdays."""
    windows = (w("18:00", "19:00", 1), w("06:00", "07:00"))
    assert next_opening(windows, FRIDAY_NOON) == datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    assert next_opening((w("18:00", "19:00", 1),), FRIDAY_NOON) == datetime(
        2026, 11, 30, 18, 0, tzinfo=UTC
    )
