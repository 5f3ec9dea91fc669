"""The core is pure and restartable: same inputs, same decisions; state rebuilt from its
entries decides the same; decide visits only what changed yet equals a full scan."""

from __future__ import annotations

from bus.events.base import DestinationStatus
from bus.events.orders import TransferOrdered
from bus.events.requests import HoldRequested
from bus.events.transfers import DestinationStatusChanged, TransferHeld, TransferRequeued
from consumers.scheduler.core import SchedulerState, decide, evolve, next_due
from tests.scheduler.factories import (
    SETTINGS,
    T0,
    Scheduler,
    at,
    configured,
    destination,
    fail_running,
    failed,
    host,
    of,
    ordered,
    queued,
    request,
    succeeded,
)


def world(s: Scheduler) -> Scheduler:
    """Three destinations with queued, delayed and failing transfers."""
    for name in ("a", "b", "c"):
        s.given(configured(destination(name), host(f"{name}-h1"), host(f"{name}-h2")))
        s.given(*[queued(f"{name}{i}", name, priority=i % 3) for i in range(4)])
        s.given(queued(f"{name}-later", name, queue_time=at(5)))
    s.settle(T0)
    fail_running(s, at(seconds=1))
    return s


def test_deciding_twice_without_evolving_gives_the_same_events() -> None:
    """decide on an unchanged state at the same time returns identical events (same ids)."""
    s = world(Scheduler())
    first = decide(s.state, SETTINGS, at(seconds=61))
    second = decide(s.state, SETTINGS, at(seconds=61))
    assert first
    assert first == second


def test_restored_state_decides_like_the_live_one() -> None:
    """A state rebuilt from its persisted entries and summaries decides the same events."""
    s = world(Scheduler())
    live = s.state
    rebuilt = SchedulerState.restore(
        transfers=live.transfers.values(),
        summaries=[rt.summary for rt in live.destinations.values()],
        destinations=[rt.config for rt in live.destinations.values() if rt.config],
        hosts=live.hosts.values(),
        associations=[
            (d, h, p) for d, rt in live.destinations.items() for h, p in rt.associations.items()
        ],
    )
    for now in (at(seconds=61), at(5)):
        expected = decide(live, SETTINGS, now)
        assert decide(rebuilt, SETTINGS, now) == expected
        for ev in expected:
            evolve(live, ev)
            evolve(rebuilt, ev)


def test_dirty_tracking_equals_a_full_scan() -> None:
    """Visiting only changed or due destinations decides what visiting all of them would."""
    s = world(Scheduler())
    full = world(Scheduler())
    for now in (at(seconds=61), at(seconds=62), at(5), at(6)):
        full.state.dirty.update(full.state.destinations)  # the full scan
        assert s.decide(now) == full.decide(now)


def test_replaying_the_log_rebuilds_the_same_entries() -> None:
    """Replaying every input and decision event into a fresh state gives equal entries."""
    s = world(Scheduler())
    replayed = SchedulerState()
    for ev in s.log:
        evolve(replayed, ev)
    assert replayed.transfers == s.state.transfers
    assert {k: v.summary for k, v in replayed.destinations.items()} == {
        k: v.summary for k, v in s.state.destinations.items()
    }


def test_a_decision_consumed_back_after_the_transfer_moved_on_is_ignored() -> None:
    """A requeue read again from the log after the transfer was reordered changes nothing."""
    s = Scheduler(configured(destination(), host("h1", retry_frequency_ms=0)), queued("t1"))
    s.settle(T0)
    out = fail_running(s, at(seconds=1))
    (requeue,) = of(out, TransferRequeued)
    assert s.entry("t1").status == "EXEC"
    before = s.entry("t1")
    s.given(requeue)  # the same decision, delivered again
    assert s.entry("t1") == before


def test_a_destination_status_consumed_back_later_is_ignored() -> None:
    """An old destination status change read again does not undo the newer one."""
    s = Scheduler(configured(), queued("t1"))
    first = of(s.settle(T0), DestinationStatusChanged)
    s.given(succeeded(s_order(s), at(1)))
    assert s.settle(at(1) + SETTINGS.idle_hold)  # WAIT once idle
    s.given(queued("t2", when=at(2), queue_time=at(2)))
    s.settle(at(2))
    assert s.summary().status is DestinationStatus.EXEC
    s.given(*first)
    assert s.summary().status is DestinationStatus.EXEC


def s_order(s: Scheduler) -> TransferOrdered:
    """The last order decided."""
    return [e for e in s.log if isinstance(e, TransferOrdered)][-1]


def test_pending_request_survives_a_restore() -> None:
    """A graceful hold waiting for a running attempt is persisted and still applies after it."""
    s = Scheduler(configured(), queued("t1"))
    (order,) = ordered(s.settle(T0))
    s.given(request(HoldRequested, at(1), transfer_id="t1"))
    assert s.settle(at(1)) == []
    live = s.state
    restored = Scheduler()
    restored.state = SchedulerState.restore(
        transfers=live.transfers.values(),
        summaries=[live.summary(name) for name in live.destinations],
        destinations=[rt.config for rt in live.destinations.values() if rt.config],
        hosts=live.hosts.values(),
        associations=[("dest", "h1", 0)],
        requests=live.pending_requests(),
    )
    restored.given(failed(order, at(2)))
    assert [e.transfer_id for e in of(restored.settle(at(2)), TransferHeld)] == ["t1"]


def test_next_due_is_none_when_nothing_waits() -> None:
    """With nothing queued, the scheduler has no reason to wake up."""
    s = Scheduler(configured())
    s.settle(T0)
    assert next_due(s.state, T0) is None
