"""Given/when/then: max start, max requeue, expiry, superseded attempts, interruptions and
vanished movers."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bus.events.base import DestinationStatus, TransferStatus
from bus.events.movers import MoverHeartbeat, MoverStopped
from bus.events.requests import StandbyReleaseRequested
from bus.events.transfers import (
    DestinationStatusChanged,
    TransferAbandoned,
    TransferExpired,
    TransferInterrupted,
    TransferRequeued,
)
from consumers.scheduler.core import SchedulerSettings, next_due
from tests.scheduler.factories import (
    SETTINGS,
    T0,
    Scheduler,
    at,
    configured,
    destination,
    env,
    fail_running,
    failed,
    host,
    interrupted,
    kinds,
    of,
    ordered,
    ordered_ids,
    queued,
    request,
    started,
    succeeded,
)


def flaky(**kw: object) -> Scheduler:
    """One transfer t1 on a destination with max start 2 and a host retried forever at once."""
    dest = destination(max_start=2, start_frequency_ms=600_000, **kw)  # type: ignore[arg-type]
    return Scheduler(
        configured(dest, host("h1", retry_count=100, retry_frequency_ms=0)), queued("t1")
    )


def test_max_start_delays_the_transfer_by_the_start_frequency() -> None:
    """After max-start attempts the transfer is requeued (RETR) until now + start frequency."""
    s = flaky()
    s.settle(T0)
    fail_running(s, at(seconds=1))  # second start
    out = fail_running(s, at(seconds=2))
    delayed = [e for e in of(out, TransferRequeued) if e.requeue_count == 1]
    assert len(delayed) == 1
    assert delayed[0].queue_time == at(seconds=2) + timedelta(minutes=10)
    assert delayed[0].reason == "Maximum start limit reached (delayed until 2026-11-27 12:10:02)"
    assert ordered(out) == []
    assert s.entry("t1").start_count == 0
    assert next_due(s.state, at(seconds=2)) == at(seconds=602)
    (order,) = ordered(s.settle(at(seconds=602)))
    assert order.attempt == 3


def test_max_requeue_fails_the_transfer() -> None:
    """Once a transfer has been delayed max-requeue times, the next delay fails it (FAIL)."""
    s = flaky(max_requeue=1)
    s.settle(T0)
    fail_running(s, at(seconds=1))
    fail_running(s, at(seconds=2))  # delayed once
    s.settle(at(seconds=602))
    fail_running(s, at(seconds=603))
    out = fail_running(s, at(seconds=604))
    (gave_up,) = of(out, TransferAbandoned)
    assert gave_up.reason == "Maximum requeue limit reached"
    assert s.entry("t1").status == "FAIL"


def test_zero_max_requeue_is_unlimited() -> None:
    """With max requeue 0 a transfer is delayed again and again, never failed."""
    s = flaky(max_requeue=0)
    now = T0
    s.settle(now)
    for _ in range(3):
        fail_running(s, now + timedelta(seconds=1))
        fail_running(s, now + timedelta(seconds=2))
        now = now + timedelta(seconds=602)
        s.settle(now)
    assert s.entry("t1").requeue_count == 3
    assert s.entry("t1").status == "EXEC"


def test_expired_transfer_fails_before_being_sent() -> None:
    """A queued transfer whose expiry passed is failed "File not transferred before expiration"."""
    s = Scheduler(
        configured(destination(), host("h1", max_connections=1)),
        queued("busy"),
        queued("t1", expiry=at(5)),
    )
    assert [o.transfer_id for o in ordered(s.settle(T0))] == ["busy"]
    assert next_due(s.state, T0) == at(5)
    out = s.settle(at(5))
    (gone,) = of(out, TransferExpired)
    assert (gone.transfer_id, gone.reason) == ("t1", "File not transferred before expiration")
    assert s.entry("t1").status == "FAIL"


def test_running_transfer_does_not_expire() -> None:
    """A transfer running when its expiry passes is left to finish."""
    s = Scheduler(configured(), queued("t1", expiry=at(5)))
    (order,) = ordered(s.settle(T0))
    assert of(s.settle(at(10)), TransferExpired) == []
    s.given(succeeded(order, at(11)))
    s.settle(at(11))
    assert s.entry("t1").status == "DONE"


def test_outcome_of_a_superseded_attempt_is_ignored() -> None:
    """A slow mover's success for attempt 1, after attempt 2 was ordered, changes nothing."""
    s = Scheduler(configured(destination(), host("h1", retry_frequency_ms=0)), queued("t1"))
    (first,) = ordered(s.settle(T0))
    s.given(interrupted(first, at(1)))
    (second,) = ordered(s.settle(at(1)))
    assert second.attempt == 2
    s.given(succeeded(first, at(2)), failed(first, at(2)))
    assert s.entry("t1").status == "EXEC"
    assert s.entry("t1").attempt == 2
    s.given(succeeded(second, at(3)))
    assert s.entry("t1").status == "DONE"


def test_interrupted_transfer_is_requeued_never_forgotten() -> None:
    """An interrupted attempt (INTR) is requeued by the scheduler and ordered again."""
    s = Scheduler(configured(), queued("t1"))
    (order,) = ordered(s.settle(T0))
    s.given(interrupted(order, at(1)))
    assert s.entry("t1").status == "INTR"
    out = s.settle(at(1))
    assert kinds(out)[:3] == ["TransferRequeued", "TransferScheduled", "TransferOrdered"]
    assert of(out, TransferRequeued)[0].reason.startswith(
        "Requeued by the scheduler after an interruption"
    )


def test_vanished_mover_interrupts_and_requeues_its_transfers() -> None:
    """Without a heartbeat for the mover timeout, its running transfers are INTR then requeued."""
    s = Scheduler(configured(), queued("t1"))
    (order,) = ordered(s.settle(T0))
    s.given(started(order, at(seconds=1), mover="m9"))
    s.settle(at(seconds=1))
    timeout = SETTINGS.mover_timeout
    assert next_due(s.state, at(seconds=2), SETTINGS) == at(seconds=1) + timeout
    assert s.settle(at(seconds=1) + timeout - timedelta(seconds=1)) == []
    out = s.settle(at(seconds=1) + timeout)
    (intr,) = of(out, TransferInterrupted)
    assert intr.mover_id == "m9"
    assert "vanished" in intr.reason
    assert of(out, TransferRequeued)
    assert ordered(out)[0].attempt == 2


def test_heartbeat_keeps_a_mover_alive() -> None:
    """A mover that keeps sending heartbeats keeps its transfers."""
    s = Scheduler(configured(), queued("t1"))
    (order,) = ordered(s.settle(T0))
    s.given(started(order, at(seconds=1), mover="m9"))
    beat = MoverHeartbeat(
        envelope=env(at(seconds=25)),
        mover_id="m9",
        transfer_group="tg",
        capacity=4,
        running=1,
        started_at=T0,
    )
    s.given(beat)
    assert s.settle(at(seconds=40)) == []


def test_stopped_mover_leaves_nothing_running() -> None:
    """A mover that stopped without reporting a transfer has it interrupted and requeued."""
    s = Scheduler(configured(), queued("t1"))
    (order,) = ordered(s.settle(T0))
    s.given(started(order, at(seconds=1), mover="m9"))
    s.given(MoverStopped(envelope=env(at(seconds=2)), mover_id="m9", transfer_group="tg"))
    out = s.settle(at(seconds=2))
    assert kinds(out)[:2] == ["TransferInterrupted", "TransferRequeued"]


def beat(mover: str, when: datetime, group: str = "tg") -> MoverHeartbeat:
    return MoverHeartbeat(
        envelope=env(when), mover_id=mover, transfer_group=group, capacity=4, running=0,
        started_at=T0,
    )  # fmt: skip


def test_no_transfer_server_orders_nothing_until_a_mover_is_back() -> None:
    """Given the only mover of the group stopped while running t1, when the scheduler visits,
    then t1 is interrupted and requeued, the destination is RETR "No Transfer Server available"
    and nothing is ordered; when a mover of the group sends a heartbeat, t1 is ordered again."""
    s = Scheduler(configured(), queued("t1"))
    s.given(beat("m9", T0))
    (order,) = ordered(s.settle(T0))
    s.given(started(order, at(seconds=1), mover="m9"))
    s.given(MoverStopped(envelope=env(at(seconds=2)), mover_id="m9", transfer_group="tg"))
    out = s.settle(at(seconds=2))
    assert kinds(out)[:2] == ["TransferInterrupted", "TransferRequeued"]
    assert ordered(out) == []
    assert s.summary().status is DestinationStatus.RETR
    assert of(out, DestinationStatusChanged)[-1].reason == "No Transfer Server available"
    assert s.settle(at(seconds=30)) == []  # still nobody: nothing more is said
    s.given(beat("m10", at(seconds=31)))
    (again,) = ordered(s.settle(at(seconds=31)))
    assert (again.transfer_id, again.attempt) == ("t1", 2)
    assert s.summary().status is DestinationStatus.EXEC


def test_silent_movers_count_as_gone_and_other_groups_do_not_matter() -> None:
    """A group whose movers are all silent past the mover timeout gets no orders; a live mover
    of another group does not help it; a group never heard of is ordered as usual (its orders
    wait in its topic for the first mover)."""
    s = Scheduler(configured(), queued("t1"))
    s.given(beat("m9", T0))
    s.given(beat("other", at(seconds=30), group="elsewhere"))
    later = at(seconds=1) + SETTINGS.mover_timeout
    out = s.settle(later)
    assert ordered(out) == []
    assert of(out, DestinationStatusChanged)[-1].reason == "No Transfer Server available"
    fresh = Scheduler(configured(), queued("t1"))
    fresh.given(beat("other", T0, group="elsewhere"))
    assert ordered_ids(fresh.settle(T0)) == ["t1"]


def test_destination_status_is_retrying_while_waiting_for_the_host() -> None:
    """While the current host waits for its retry, the destination is RETR with an until."""
    s = Scheduler(configured(), queued("t1"))
    s.settle(T0)
    fail_running(s, at(seconds=1))
    assert s.summary().status is DestinationStatus.RETR


def test_settings_bound_orders_per_visit() -> None:
    """One visit orders at most max_orders_per_visit; the rest follow at the next visit."""
    from consumers.scheduler.core import SchedulerState, decide, evolve

    state = SchedulerState()
    for ev in [
        *configured(destination(max_connections=-1), host("h1", max_connections=-1)),
        *[queued(f"t{i:02}") for i in range(10)],
    ]:
        evolve(state, ev)
    out = decide(state, SchedulerSettings(max_orders_per_visit=4), T0)
    assert len(ordered(out)) == 4


def test_standby_transfer_released_after_its_expiry_fails() -> None:
    """A standby transfer released after its expiry is failed, not sent."""
    s = Scheduler(configured(), queued("t1", status=TransferStatus.HOLD, expiry=at(5)))
    s.settle(at(6))
    out = s.given(request(StandbyReleaseRequested, at(7), transfer_id="t1")).settle(at(7))
    assert of(out, TransferExpired)
    assert ordered(out) == []


def test_transfer_requeued_after_its_expiry_fails() -> None:
    """A transfer still running at its expiry that then fails is expired, not retried."""
    s = Scheduler(
        configured(destination(), host("h1", retry_frequency_ms=0)), queued("t1", expiry=at(5))
    )
    s.settle(T0)
    assert s.settle(at(5)) == []
    out = fail_running(s, at(6))
    assert of(out, TransferExpired)
    assert ordered(out) == []


def test_transfers_delayed_before_a_recovery_are_rescheduled_at_once() -> None:
    """Reschedule after recovery: once a retried transfer gets through, a transfer delayed by
    max start while the host was failing is requeued for now instead of waiting out the start
    frequency, and is ordered again."""
    dest = destination(max_connections=1, max_start=2, start_frequency_ms=600_000)
    s = Scheduler(
        configured(dest, host("h1", retry_count=100, retry_frequency_ms=0)),
        queued("t1", queue_time=T0),
        queued("t2", queue_time=T0 + timedelta(milliseconds=1)),
    )
    assert ordered_ids(s.settle(T0)) == ["t1"]
    fail_running(s, at(seconds=1))  # t1 started twice: delayed by the start frequency
    out = fail_running(s, at(seconds=2))
    assert s.entry("t1").queue_time == at(seconds=2) + timedelta(minutes=10)
    assert ordered_ids(out) == ["t2"]
    (retry,) = ordered(fail_running(s, at(seconds=3)))  # t2 fails once, is ordered again
    assert (retry.transfer_id, retry.attempt) == ("t2", 2)

    s.given(succeeded(retry, at(seconds=4)))
    out = s.settle(at(seconds=4))

    (rescheduled,) = of(out, TransferRequeued)
    assert rescheduled.transfer_id == "t1"
    assert rescheduled.queue_time == at(seconds=4)
    assert rescheduled.reason == (
        "Rescheduled after the destination recovered at 2026-11-27 12:00:04"
    )
    assert ordered_ids(out) == ["t1"]


def test_a_first_time_success_reschedules_nothing() -> None:
    """A success at the first attempt is no recovery: a delayed transfer keeps its queue time."""
    dest = destination(max_connections=1, max_start=2, start_frequency_ms=600_000)
    s = Scheduler(
        configured(dest, host("h1", retry_count=100, retry_frequency_ms=0)),
        queued("t1", queue_time=T0),
    )
    s.settle(T0)
    fail_running(s, at(seconds=1))
    fail_running(s, at(seconds=2))  # t1 delayed for ten minutes
    s.given(queued("t2", queue_time=at(seconds=3), when=at(seconds=3)))
    (first,) = ordered(s.settle(at(seconds=3)))
    assert (first.transfer_id, first.attempt) == ("t2", 1)
    s.given(succeeded(first, at(seconds=4)))
    assert of(s.settle(at(seconds=4)), TransferRequeued) == []
    assert s.entry("t1").queue_time == at(seconds=2) + timedelta(minutes=10)


def test_finished_transfers_are_forgotten_an_hour_after_their_expiry() -> None:
    """Purge: a delivered transfer stays known until its expiry plus the purge delay, then the
    scheduler forgets it and its stored file (memory follows the live transfers only)."""
    s = Scheduler(configured(), queued("t1", expiry=at(minutes=10)))
    (order,) = ordered(s.settle(T0))
    s.given(succeeded(order, at(seconds=1)))
    s.settle(at(seconds=1))
    assert s.entry("t1").status == "DONE"
    s.settle(at(minutes=10))
    assert "t1" in s.state.transfers  # expired, but within the purge delay
    assert next_due(s.state, at(minutes=10, seconds=1)) == at(minutes=70)
    s.settle(at(minutes=70))
    assert "t1" not in s.state.transfers
    assert "df-t1" not in s.state.file_refs


def test_a_file_with_a_live_transfer_is_not_forgotten() -> None:
    """Purging one finished transfer of a data file keeps the file while another transfer of
    it (an alias) is still known."""
    s = Scheduler(configured(), queued("t1", expiry=at(minutes=10)))
    (order,) = ordered(s.settle(T0))
    s.given(succeeded(order, at(seconds=1)))
    alias = replace(queued("t2", expiry=T0 + timedelta(days=1)), data_file_id="df-t1")
    s.given(alias)
    assert s.state.file_refs["df-t1"] == 2
    s.settle(at(minutes=70))
    assert "t1" not in s.state.transfers
    assert s.state.file_refs["df-t1"] == 1


def test_a_hosts_max_connections_hold_across_the_destinations_sharing_it() -> None:
    """Given two destinations on one host allowing one connection, when both have a transfer,
    then only one is ordered; when it succeeds, the other destination's transfer is ordered."""
    shared = host("h1", max_connections=1)
    s = Scheduler(
        *configured(destination("d1"), shared),
        *configured(destination("d2"), shared),
        queued("t1", "d1"),
        queued("t2", "d2"),
    )
    (first,) = ordered(s.settle(T0))
    s.given(succeeded(first, at(seconds=1)))
    (second,) = ordered(s.settle(at(seconds=1)))
    assert {first.transfer_id, second.transfer_id} == {"t1", "t2"}
