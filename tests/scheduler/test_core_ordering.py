"""Given/when/then: queue order, connection limits, delayed transfers and active windows."""

from __future__ import annotations

from datetime import timedelta

from bus.events.base import DestinationStatus, TransferStatus
from bus.events.config import TimeWindow
from bus.events.transfers import DestinationStatusChanged
from consumers.scheduler.core import next_due
from tests.scheduler.factories import (
    SETTINGS,
    T0,
    Scheduler,
    at,
    configured,
    destination,
    host,
    of,
    ordered,
    ordered_ids,
    queued,
    succeeded,
)


def test_orders_by_priority_then_queue_time_then_id() -> None:
    """Lower priority number goes first, then the earlier queue time, then the smaller id."""
    s = Scheduler(
        configured(destination(max_connections=-1)),
        queued("c", priority=50, queue_time=at(-1)),
        queued("b", priority=50, queue_time=at(-2)),
        queued("a", priority=50, queue_time=at(-1)),
        queued("z", priority=10, queue_time=at(-0.5)),
    )
    assert ordered_ids(s.decide(T0)) == ["z", "b", "a", "c"]


def test_order_carries_attempt_host_target_and_group() -> None:
    """An order names the attempt (1 first), the current host, the target and the group."""
    s = Scheduler(configured(), queued("t1"))
    (order,) = ordered(s.decide(T0))
    assert (order.attempt, order.host.id, order.target, order.transfer_group) == (
        1,
        "h1",
        "t1.bin",
        "tg",
    )
    assert s.entry("t1").status == "EXEC"


def test_destination_max_connections_caps_running_transfers() -> None:
    """No more transfers run at once than the destination's max connections."""
    s = Scheduler(configured(destination(max_connections=2)), *[queued(f"t{i}") for i in range(5)])
    first = ordered(s.settle(T0))
    assert [o.transfer_id for o in first] == ["t0", "t1"]
    then = s.given(succeeded(first[0], at(1))).settle(at(1))
    assert ordered_ids(then) == ["t2"]


def test_host_max_connections_caps_running_transfers() -> None:
    """The current host's max connections caps parallel transfers even below the destination's."""
    s = Scheduler(
        configured(destination(max_connections=10), host("h1", max_connections=1)),
        queued("a"),
        queued("b"),
    )
    assert ordered_ids(s.settle(T0)) == ["a"]


def test_negative_max_connections_means_unlimited() -> None:
    """Max connections below zero (destination and host) put no cap on parallel transfers."""
    s = Scheduler(
        configured(destination(max_connections=-1), host("h1", max_connections=-1)),
        *[queued(f"t{i:02}") for i in range(30)],
    )
    assert len(ordered(s.settle(T0))) == 30


def test_future_transfer_waits_for_its_queue_time() -> None:
    """A transfer queued for later is not ordered before its queue time, and is at it."""
    s = Scheduler(configured(), queued("later", queue_time=at(10)))
    assert ordered(s.settle(T0)) == []
    assert next_due(s.state, T0) == at(10)
    assert ordered_ids(s.settle(at(10))) == ["later"]


def test_delayed_transfer_does_not_block_ready_ones() -> None:
    """A high-priority transfer in the future does not hold back a ready low-priority one."""
    s = Scheduler(
        configured(), queued("future", priority=0, queue_time=at(5)), queued("now", priority=90)
    )
    assert ordered_ids(s.settle(T0)) == ["now"]


def test_destination_status_running_then_idle() -> None:
    """The destination is announced running (EXEC) while it transfers and idle (WAIT) once
    the idle hold has passed after its last delivery."""
    s = Scheduler(configured(), queued("t1"))
    out = s.settle(T0)
    assert [e.new_status for e in of(out, DestinationStatusChanged)] == [DestinationStatus.EXEC]
    assert s.given(succeeded(ordered(out)[0], at(1))).settle(at(1)) == []
    out = s.settle(at(1) + SETTINGS.idle_hold)
    assert [e.new_status for e in of(out, DestinationStatusChanged)] == [DestinationStatus.WAIT]


def test_nothing_is_ordered_outside_the_active_window() -> None:
    """Outside its active windows a destination waits (SCHE) until the next opening."""
    window = TimeWindow(start_minute=13 * 60, end_minute=14 * 60)
    s = Scheduler(configured(destination(active_windows=(window,))), queued("t1"))
    out = s.settle(T0)
    assert ordered(out) == []
    (status,) = of(out, DestinationStatusChanged)
    assert (status.new_status, status.until) == (DestinationStatus.SCHE, at(60))
    assert next_due(s.state, T0) == at(60)
    assert ordered_ids(s.settle(at(60))) == ["t1"]


def test_window_crossing_midnight_is_open_after_midnight() -> None:
    """A 22:00-02:00 window is open at 01:00 the next day and closed at 03:00."""
    window = TimeWindow(start_minute=22 * 60, end_minute=2 * 60)
    one_am = T0.replace(hour=1) + timedelta(days=1)
    s = Scheduler(
        configured(destination(active_windows=(window,))),
        queued("t1", when=one_am, queue_time=one_am),
    )
    assert ordered_ids(s.settle(one_am)) == ["t1"]
    three_am = one_am.replace(hour=3)
    s2 = Scheduler(
        configured(destination(active_windows=(window,))),
        queued("t1", when=three_am, queue_time=three_am),
    )
    assert ordered(s2.settle(three_am)) == []


def test_weekday_window_waits_for_its_day() -> None:
    """A Monday-only window keeps a Friday transfer until Monday at the window's start."""
    monday_9 = T0.replace(hour=9) + timedelta(days=3)
    window = TimeWindow(start_minute=9 * 60, end_minute=10 * 60, weekdays=(1,))
    s = Scheduler(
        configured(destination(active_windows=(window,))), queued("t1", expiry=at(60 * 24 * 7))
    )
    assert ordered(s.settle(T0)) == []
    assert next_due(s.state, T0) == monday_9
    assert ordered_ids(s.settle(monday_9)) == ["t1"]


def test_weekday_of_a_midnight_crossing_window_is_its_opening_day() -> None:
    """A Friday 23:00-01:00 window is open on Saturday 00:30 but not on Friday 00:30."""
    window = TimeWindow(start_minute=23 * 60, end_minute=60, weekdays=(5,))
    saturday = T0.replace(hour=0, minute=30) + timedelta(days=1)
    friday = T0.replace(hour=0, minute=30)
    s = Scheduler(
        configured(destination(active_windows=(window,))),
        queued("t1", when=saturday, queue_time=saturday),
    )
    assert ordered_ids(s.settle(saturday)) == ["t1"]
    s2 = Scheduler(
        configured(destination(active_windows=(window,))),
        queued("t1", when=friday, queue_time=friday),
    )
    assert ordered(s2.settle(friday)) == []


def test_standby_transfer_is_held_until_released() -> None:
    """A transfer queued on standby (HOLD) is never ordered by itself."""
    s = Scheduler(configured(), queued("t1", status=TransferStatus.HOLD))
    assert ordered(s.settle(at(60))) == []
    assert s.entry("t1").status == "HOLD"


def test_transfers_of_an_undefined_destination_wait_for_its_definition() -> None:
    """Transfers queued before their destination is defined are ordered once it is."""
    s = Scheduler(queued("t1"))
    assert s.settle(T0) == []
    assert ordered_ids(s.given(configured()).settle(T0)) == ["t1"]


def test_inactive_destination_orders_nothing() -> None:
    """A destination that is not active orders nothing and says why (INIT)."""
    s = Scheduler(configured(destination(active=False)), queued("t1"))
    out = s.settle(T0)
    assert ordered(out) == []
    assert [e.new_status for e in of(out, DestinationStatusChanged)] == [DestinationStatus.INIT]
