"""Given/when/then: host retries, failover to the next host, cycles, hold after the retry
count, "next and stay" / "next and retry", and reset to the primary host."""

from __future__ import annotations

from typing import Any

from bus.events.base import DestinationStatus
from bus.events.config import Association, OnHostFailure
from bus.events.config_changes import AssociationChanged
from bus.events.transfers import (
    DestinationStatusChanged,
    HostSwitched,
    TransferRequeued,
    TransferStopped,
)
from consumers.scheduler.core import next_due
from tests.scheduler.factories import (
    SETTINGS,
    T0,
    Scheduler,
    at,
    configured,
    destination,
    env,
    fail_running,
    host,
    of,
    ordered,
    queued,
    succeeded,
)

D = DestinationStatus


def two_hosts(**kw: Any) -> Scheduler:
    """A destination (no max start) with primary h1 and backup h2, each retried once after 60 s,
    two cycles before hold, 30 s between cycles, and one queued transfer t1 ordered at T0."""
    dest = destination(max_start=0, **kw)
    s = Scheduler(configured(dest, host("h1"), host("h2")), queued("t1"))
    (order,) = ordered(s.settle(T0))
    assert order.host.id == "h1"
    return s


def to_backup(s: Scheduler) -> None:
    """h1 fails at 1 s and, retried at 61 s, again at 62 s: orders go to h2."""
    fail_running(s, at(seconds=1))
    assert ordered(s.settle(at(seconds=61)))
    out = fail_running(s, at(seconds=62))
    assert [o.host.id for o in ordered(out)] == ["h2"]


def statuses(events: list[Any], status: DestinationStatus) -> list[DestinationStatusChanged]:
    """The destination status changes to ``status`` among events."""
    return [e for e in of(events, DestinationStatusChanged) if e.new_status is status]


def test_failed_transfer_is_requeued_and_host_retried_after_its_frequency() -> None:
    """A retriable failure requeues the transfer (RETR) and waits the host's retry frequency."""
    s = two_hosts()
    out = fail_running(s, at(seconds=1))
    (requeue,) = of(out, TransferRequeued)
    assert requeue.reason.startswith(
        "Requeued by the scheduler after a transfer failure on host h1"
    )
    assert [e.until for e in statuses(out, D.RETR)] == [at(seconds=61)]
    assert ordered(s.settle(at(seconds=60))) == []
    assert next_due(s.state, at(seconds=1)) == at(seconds=61)
    (again,) = ordered(s.settle(at(seconds=61)))
    assert (again.host.id, again.attempt) == ("h1", 2)


def test_host_that_fails_its_retry_count_hands_over_to_the_next_host() -> None:
    """After its retry count a host is left for the next one in priority order."""
    s = two_hosts()
    fail_running(s, at(seconds=1))
    s.settle(at(seconds=61))
    out = fail_running(s, at(seconds=62))
    assert [(e.from_host, e.to_host) for e in of(out, HostSwitched)] == [("h1", "h2")]
    assert [(o.host.id, o.attempt) for o in ordered(out)] == [("h2", 3)]


def test_a_full_cycle_sleeps_the_retry_frequency_then_restarts_at_the_primary() -> None:
    """When every host has failed, the destination sleeps (IDLE) and starts over at the first."""
    s = two_hosts()
    to_backup(s)
    fail_running(s, at(seconds=63))  # h2 fails once: retry at 123 s
    assert ordered(s.settle(at(seconds=123)))
    out = fail_running(s, at(seconds=124))  # h2 again: cycle 1
    assert [(e.from_host, e.to_host) for e in of(out, HostSwitched)] == [("h2", "h1")]
    assert [e.until for e in statuses(out, D.IDLE)] == [at(seconds=154)]
    assert s.summary().cycle == 1
    assert ordered(s.settle(at(seconds=150))) == []
    (order,) = ordered(s.settle(at(seconds=154)))
    assert order.host.id == "h1"


def test_destination_goes_on_hold_failed_after_its_retry_count_of_cycles() -> None:
    """After retry-count cycles through all hosts the destination is HOLD "Failed" and stops."""
    s = two_hosts(retry_count=1)
    to_backup(s)
    fail_running(s, at(seconds=63))
    s.settle(at(seconds=123))
    out = fail_running(s, at(seconds=124))
    (held,) = statuses(out, D.HOLD)
    assert held.reason.startswith("Failed")
    assert ordered(s.settle(at(60))) == []
    assert s.summary().status is D.HOLD


def test_infinite_retry_count_never_holds() -> None:
    """With retry count -1 the destination keeps cycling and never goes on hold."""
    dest = destination(max_start=0, retry_count=-1, retry_frequency_ms=1000)
    s = Scheduler(configured(dest, host("h1", retry_count=0)), queued("t1"))
    s.settle(T0)
    for i in range(5):
        fail_running(s, at(seconds=10 * i + 1))
        assert ordered(s.settle(at(seconds=10 * i + 2)))
    assert s.summary().status is D.EXEC
    assert s.summary().cycle == 5


def test_next_and_retry_returns_to_the_primary_after_a_success() -> None:
    """ "Next and retry": a success on the backup sends the next orders to the primary again."""
    s = two_hosts(on_host_failure=OnHostFailure.NEXT_AND_RETRY, max_connections=1)
    s.given(queued("t2"))
    to_backup(s)
    order = s.entry("t1")
    assert order.host_id == "h2"
    s.given(succeeded_entry(s, "t1", at(seconds=63)))
    out = s.settle(at(seconds=63))
    assert [(e.from_host, e.to_host) for e in of(out, HostSwitched)] == [("h2", "h1")]
    assert [(o.transfer_id, o.host.id) for o in ordered(out)] == [("t2", "h1")]


def test_next_and_stay_keeps_the_backup_after_a_success() -> None:
    """ "Next and stay": after a success on the backup, the next orders stay on the backup."""
    s = two_hosts(on_host_failure=OnHostFailure.NEXT_AND_STAY, max_connections=1)
    s.given(queued("t2"))
    to_backup(s)
    s.given(succeeded_entry(s, "t1", at(seconds=63)))
    out = s.settle(at(seconds=63))
    assert of(out, HostSwitched) == []
    assert [(o.transfer_id, o.host.id) for o in ordered(out)] == [("t2", "h2")]


def test_reset_to_the_primary_after_the_reset_frequency() -> None:
    """On a backup, the destination returns to the primary reset-frequency after leaving it."""
    s = two_hosts(on_host_failure=OnHostFailure.NEXT_AND_STAY, reset_frequency_ms=600_000)
    to_backup(s)  # left h1 at 62 s
    s.given(succeeded_entry(s, "t1", at(seconds=63)))
    s.settle(at(seconds=63))
    s.settle(at(seconds=63) + SETTINGS.idle_hold)  # idle: WAIT
    assert next_due(s.state, at(seconds=80)) == at(seconds=662)
    out = s.settle(at(seconds=662))
    assert [(e.from_host, e.to_host, e.reason) for e in of(out, HostSwitched)] == [
        ("h2", "h1", "Reset to the primary host after the reset frequency")
    ]
    assert s.summary().current_host == "h1"


def test_parallel_attempts_failing_together_count_once() -> None:
    """Attempts already running when a host failed do not each count as a new failure."""
    s = Scheduler(
        configured(destination(max_start=0), host("h1"), host("h2")), queued("a"), queued("b")
    )
    assert len(ordered(s.settle(T0))) == 2
    out = fail_running(s, at(seconds=1))
    assert s.summary().failures["h1"].count == 1
    assert of(out, HostSwitched) == []
    assert len(of(out, TransferRequeued)) == 2


def test_unclassed_permanent_error_of_an_older_mover_stops_the_transfer() -> None:
    """A non-retriable failure of a class not in the table, from a mover that did not say whose
    problem it was, reads as the file's (as it did then): STOP, no host failure counted."""
    s = two_hosts()
    out = fail_running(s, at(seconds=1), retriable=False)
    (stop,) = of(out, TransferStopped)
    assert stop.reason.startswith("Unrecoverable error of the file itself (on host h1)")
    assert s.entry("t1").status == "STOP"
    assert s.summary().failures == {}


def test_no_usable_host_puts_the_destination_in_no_hosts() -> None:
    """A destination without an active dissemination host is FAIL (NoHosts) and orders nothing."""
    s = Scheduler(configured(destination(), host("h1", active=False)), queued("t1"))
    out = s.settle(T0)
    assert ordered(out) == []
    assert [e.new_status for e in of(out, DestinationStatusChanged)] == [D.FAIL]


def test_association_priority_orders_the_host_list() -> None:
    """The association with the lower priority number is the primary host."""
    s = Scheduler(configured(destination(), host("h1"), host("h2")), queued("t1"))
    s.given(
        AssociationChanged(
            envelope=env(), association=Association(destination="dest", host="h2", priority=-1)
        )
    )
    (order,) = ordered(s.settle(T0))
    assert order.host.id == "h2"


def succeeded_entry(s: Scheduler, tid: str, when: Any) -> Any:
    """The running attempt of ``tid`` succeeded at ``when``."""
    from bus.events.transfers import TransferSucceeded, Verification

    e = s.entry(tid)
    return TransferSucceeded(
        envelope=env(when),
        transfer_id=tid,
        destination=e.destination,
        attempt=e.attempt,
        host_id=e.host_id or "",
        mover_id="m1",
        remote_path=e.target,
        bytes_sent=e.size,
        duration_ms=1,
        bytes_per_second=1.0,
        verification=Verification.SIZE,
    )


_ = succeeded
