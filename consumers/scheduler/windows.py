"""Active time windows of a destination: UTC minutes of the day, optionally limited to ISO
weekdays, possibly crossing midnight.

Rules kept here: ``end_minute`` is exclusive; ``end < start`` crosses midnight and the weekday
list then names the day the window *opens* (a Friday 22:00-02:00 window covers Saturday
00:00-02:00); ``start == end`` is a whole day. No windows at all means always open.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from bus.events.config import TimeWindow

_DAY = 1440


def _day_ok(window: TimeWindow, weekday: int) -> bool:
    return not window.weekdays or weekday in window.weekdays


def _inside(window: TimeWindow, minute: int, weekday: int) -> bool:
    start, end = window.start_minute, window.end_minute
    yesterday = 7 if weekday == 1 else weekday - 1
    if start < end:
        return start <= minute < end and _day_ok(window, weekday)
    if start == end:  # a whole day from start to start
        return (minute >= start and _day_ok(window, weekday)) or (
            minute < start and _day_ok(window, yesterday)
        )
    return (minute >= start and _day_ok(window, weekday)) or (
        minute < end and _day_ok(window, yesterday)
    )


def is_open(windows: Sequence[TimeWindow], now: datetime) -> bool:
    """Whether ``now`` (UTC) falls in one of the windows (no windows: always)."""
    if not windows:
        return True
    minute = now.hour * 60 + now.minute
    weekday = now.isoweekday()
    return any(_inside(w, minute, weekday) for w in windows)


def next_opening(windows: Sequence[TimeWindow], now: datetime) -> datetime | None:
    """The first time after ``now`` at which a window opens (None when there is none)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    best: datetime | None = None
    for window in windows:
        for days in range(8):  # a weekly pattern repeats within 8 days
            day = midnight + timedelta(days=days)
            if not _day_ok(window, day.isoweekday()):
                continue
            opening = day + timedelta(minutes=window.start_minute)
            if opening > now:
                if best is None or opening < best:
                    best = opening
                break
    return best
