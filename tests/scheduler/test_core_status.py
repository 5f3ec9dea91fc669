"""The destination's status over a burst of short transfers: coalesced, not flapping."""

from __future__ import annotations

from datetime import datetime, timedelta

from bus.events.base import DestinationStatus as D
from bus.events.transfers import DestinationStatusChanged
from consumers.scheduler.core import next_due
from tests.scheduler.factories import (
    SETTINGS,
    Scheduler,
    at,
    configured,
    of,
    ordered,
    queued,
    started,
    succeeded,
)

SHORT = timedelta(milliseconds=50)  # how long each delivery takes


def deliver(s: Scheduler, tid: str, when: datetime) -> list[DestinationStatusChanged]:
    """One file queued at ``when`` and delivered ``SHORT`` later (a timer due by then is
    decided first, as the runner does); the status changes decided meanwhile."""
    out = []
    if next_due(s.state, when, SETTINGS) == when:
        out += s.settle(when)
    s.given(queued(tid, queue_time=when, when=when))
    decided = s.settle(when)
    (order,) = ordered(decided)
    s.given(started(order, when), succeeded(order, when + SHORT))
    out += decided + s.settle(when + SHORT)
    return of(out, DestinationStatusChanged)


def test_a_burst_of_fifty_short_transfers_is_one_exec() -> None:
    """Given a destination, when 50 files arrive 200 ms apart and each is delivered before
    the next arrives, then the destination turns EXEC once and never flips back to WAIT."""
    s = Scheduler(configured())
    changes = []
    for i in range(50):
        changes += deliver(s, f"t{i:02}", at(ms=i * 200))
    assert [c.new_status for c in changes] == [D.EXEC]


def test_a_real_idle_period_still_shows_wait() -> None:
    """Given a burst just delivered, when nothing more arrives for the idle hold, then the
    destination turns WAIT "Idle" at the hold's end (a timer, no new event needed), and a
    file arriving afterwards turns it EXEC again."""
    s = Scheduler(configured())
    for i in range(5):
        deliver(s, f"t{i}", at(ms=i * 200))
    last = at(ms=4 * 200) + SHORT
    assert s.summary().status is D.EXEC
    due = next_due(s.state, last, SETTINGS)
    assert due == last + SETTINGS.idle_hold
    (change,) = of(s.settle(due), DestinationStatusChanged)
    assert (change.old_status, change.new_status, change.reason) == (D.EXEC, D.WAIT, "Idle")
    later = due + SETTINGS.idle_hold
    assert [c.new_status for c in deliver(s, "late", later)] == [D.EXEC]


def test_files_further_apart_than_the_hold_show_wait_between_them() -> None:
    """Given files arriving further apart than the idle hold, then each gap is a real idle
    period: the destination shows WAIT between them."""
    s = Scheduler(configured())
    changes = []
    for i in range(3):
        changes += deliver(s, f"t{i}", at() + i * 2 * SETTINGS.idle_hold)
    assert [c.new_status for c in changes] == [D.EXEC, D.WAIT, D.EXEC, D.WAIT, D.EXEC]
