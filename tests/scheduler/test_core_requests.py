"""Given/when/then: every operator request and the events that answer it."""

from __future__ import annotations

from datetime import timedelta

from bus.events.base import DestinationStatus, TransferStatus
from bus.events.movers import TransferAbortRequested
from bus.events.orders import TransferOrdered
from bus.events.requests import (
    HoldRequested,
    HostActivationRequested,
    HostDeactivationRequested,
    HostPriorityChangeRequested,
    LifetimeExtensionRequested,
    PriorityChangeRequested,
    RequeueFailedRequested,
    RequeueRequested,
    RestartRequested,
    StandbyReleaseRequested,
    StopRequested,
)
from bus.events.transfers import (
    DestinationStatusChanged,
    HostActivated,
    HostDeactivated,
    HostPriorityChanged,
    HostSwitched,
    RequestDeclined,
    TransferHeld,
    TransferInterrupted,
    TransferLifetimeExtended,
    TransferPriorityChanged,
    TransferReleased,
    TransferRequeued,
    TransferStopped,
)
from tests.scheduler.factories import (
    T0,
    Scheduler,
    at,
    configured,
    destination,
    fail_running,
    host,
    kinds,
    of,
    ordered,
    ordered_ids,
    queued,
    request,
    started,
    succeeded,
)

D = DestinationStatus


def busy() -> tuple[Scheduler, list[TransferOrdered]]:
    """Destination with one connection: t1 running (ordered at T0), t2 waiting."""
    s = Scheduler(configured(destination(max_connections=1)), queued("t1"), queued("t2"))
    out = s.settle(T0)
    assert ordered_ids(out) == ["t1"]
    return s, ordered(out)


def test_graceful_destination_hold_lets_running_transfers_finish() -> None:
    """A graceful hold puts the destination on HOLD: running transfers finish, none start."""
    s, (order,) = busy()
    req = request(HoldRequested, at(1))
    out = s.given(req).settle(at(1))
    (held,) = of(out, DestinationStatusChanged)
    assert (held.new_status, held.actor, held.envelope.causation_id) == (
        D.HOLD,
        "admin",
        req.envelope.event_id,
    )
    assert of(out, TransferInterrupted) == []
    s.given(succeeded(order, at(2)))
    assert ordered(s.settle(at(2))) == []
    assert s.entry("t1").status == "DONE"


def test_immediate_destination_hold_interrupts_running_transfers() -> None:
    """An immediate hold interrupts what runs (INTR), requeues it and starts nothing."""
    s, _ = busy()
    out = s.given(request(HoldRequested, at(1), immediate=True)).settle(at(1))
    assert kinds(out)[:2] == ["DestinationStatusChanged", "TransferInterrupted"]
    assert of(out, TransferRequeued)
    assert ordered(out) == []
    assert s.entry("t1").status == "RETR"


def test_hold_of_a_queued_transfer() -> None:
    """Holding a queued transfer puts it in HOLD; the next one is ordered instead."""
    s = Scheduler(configured(destination(max_connections=1)), queued("t1"), queued("t2"))
    out = s.given(request(HoldRequested, transfer_id="t1")).settle(T0)
    assert [e.transfer_id for e in of(out, TransferHeld)] == ["t1"]
    assert ordered_ids(out) == ["t2"]


def test_graceful_hold_of_a_running_transfer_waits_for_its_end() -> None:
    """A graceful hold of a running transfer takes effect when its attempt ends (no retry)."""
    s, _ = busy()
    assert s.given(request(HoldRequested, at(1), transfer_id="t1")).settle(at(1)) == []
    out = fail_running(s, at(2))
    assert [e.transfer_id for e in of(out, TransferHeld)] == ["t1"]
    assert of(out, TransferRequeued) == []
    assert s.entry("t1").status == "HOLD"


def test_immediate_hold_of_a_running_transfer_interrupts_it() -> None:
    """An immediate hold of a running transfer interrupts it, asks the movers to abandon the
    attempt, then holds it."""
    s, _ = busy()
    out = s.given(request(HoldRequested, at(1), transfer_id="t1", immediate=True)).settle(at(1))
    assert kinds(out)[:3] == ["TransferInterrupted", "TransferAbortRequested", "TransferHeld"]
    (interrupted,), (abort,) = of(out, TransferInterrupted), of(out, TransferAbortRequested)
    assert (abort.transfer_id, abort.attempt, abort.mover_id) == ("t1", 1, None)
    assert abort.envelope.causation_id == interrupted.envelope.event_id
    assert s.entry("t1").status == "HOLD"
    assert ordered_ids(out) == ["t2"]


def test_abort_names_the_mover_that_started_the_attempt() -> None:
    """Stopping a transfer a mover has started asks that mover (by id) to abandon it."""
    s, (order,) = busy()
    s.given(started(order, at(1), mover="m1"))
    out = s.given(request(StopRequested, at(1), transfer_id="t1")).settle(at(1))
    (abort,) = of(out, TransferAbortRequested)
    assert (abort.transfer_id, abort.attempt, abort.mover_id) == ("t1", 1, "m1")


def test_graceful_hold_and_queued_stop_abort_nothing() -> None:
    """Nothing running is interrupted by a graceful hold or the stop of a queued transfer:
    no mover is asked to abandon anything."""
    s, _ = busy()
    out = s.given(request(HoldRequested, at(1))).settle(at(1))
    out += s.given(request(StopRequested, at(1), transfer_id="t2")).settle(at(1))
    assert of(out, TransferAbortRequested) == []


def test_restart_of_a_failed_destination_resumes_from_the_primary() -> None:
    """Restarting a destination on HOLD "Failed" (RSTR) forgets its cycles and orders again."""
    dest = destination(max_start=0, retry_count=1)
    s = Scheduler(configured(dest, host("h1", retry_count=0)), queued("t1"))
    s.settle(T0)
    fail_running(s, at(1))
    assert s.summary().status is D.HOLD
    out = s.given(request(RestartRequested, at(2))).settle(at(2))
    assert [e.new_status for e in of(out, DestinationStatusChanged)] == [D.RSTR, D.EXEC]
    assert [o.host.id for o in ordered(out)] == ["h1"]
    assert s.summary().cycle == 0
    assert not s.summary().exhausted


def test_graceful_destination_restart_lets_running_transfers_finish() -> None:
    """A graceful restart (RSTR) interrupts nothing: the running attempt ends as it would."""
    s, (order,) = busy()
    out = s.given(request(RestartRequested, at(1))).settle(at(1))
    assert of(out, DestinationStatusChanged)[0].new_status is D.RSTR
    assert of(out, TransferInterrupted) == []
    s.given(succeeded(order, at(2)))
    s.settle(at(2))
    assert s.entry("t1").status == "DONE"


def test_immediate_destination_restart_interrupts_and_requeues_running_transfers() -> None:
    """An immediate restart interrupts the running attempts (INTR), requeues them and orders
    them again, from the primary host."""
    s, (order,) = busy()
    out = s.given(request(RestartRequested, at(1), immediate=True)).settle(at(1))
    assert kinds(out)[:2] == ["DestinationStatusChanged", "TransferInterrupted"]
    (interrupted,) = of(out, TransferInterrupted)
    assert (interrupted.transfer_id, interrupted.reason) == ("t1", "Restarted by admin")
    assert of(out, TransferRequeued)
    again = [o for o in ordered(out) if o.transfer_id == "t1"]
    assert [o.attempt for o in again] == [order.attempt + 1]


def test_restart_of_a_running_transfer_interrupts_and_reorders_it() -> None:
    """Restarting a running transfer interrupts the attempt and orders a new one."""
    s, _ = busy()
    out = s.given(request(RestartRequested, at(1), transfer_id="t1")).settle(at(1))
    assert kinds(out)[:3] == ["TransferInterrupted", "TransferAbortRequested", "TransferRequeued"]
    assert [(o.transfer_id, o.attempt) for o in ordered(out)] == [("t1", 2)]


def test_stop_of_a_destination_interrupts_and_stops_ordering() -> None:
    """Stopping a destination (STOP) interrupts its running transfers and orders nothing more."""
    s, _ = busy()
    out = s.given(request(StopRequested, at(1))).settle(at(1))
    assert [e.new_status for e in of(out, DestinationStatusChanged)] == [D.STOP]
    assert len(of(out, TransferInterrupted)) == 1
    assert ordered(out) == []
    assert ordered(s.settle(at(60))) == []


def test_stop_of_a_transfer() -> None:
    """Stopping a queued transfer makes it STOP and it is never ordered."""
    s = Scheduler(configured(), queued("t1"))
    out = s.given(request(StopRequested, transfer_id="t1", reason="not needed")).settle(T0)
    (stop,) = of(out, TransferStopped)
    assert (stop.reason, stop.actor) == ("not needed", "admin")
    assert ordered(out) == []


def test_requeue_of_a_delivered_transfer_sends_it_again() -> None:
    """Requeueing a DONE transfer puts it back (RETR) and orders a new attempt."""
    s, (order,) = busy()
    (t2,) = ordered(s.given(succeeded(order, at(1))).settle(at(1)))
    out = s.given(request(RequeueRequested, at(2), transfer_id="t1")).settle(at(2))
    (requeue,) = of(out, TransferRequeued)
    assert (requeue.actor, requeue.queue_time) == ("admin", at(2))
    s.given(succeeded(t2, at(3)))  # t2 finishes, then t1 goes again
    assert [(o.transfer_id, o.attempt) for o in ordered(s.settle(at(3)))] == [("t1", 2)]


def test_requeue_of_a_running_transfer_waits_for_its_end() -> None:
    """A requeue of a running transfer is answered once its attempt has ended."""
    s, (order,) = busy()
    assert s.given(request(RequeueRequested, at(1), transfer_id="t1")).settle(at(1)) == []
    s.given(succeeded(order, at(2)))
    out = s.settle(at(2))
    assert [e.transfer_id for e in of(out, TransferRequeued)] == ["t1"]


def test_requeue_all_failed_transfers() -> None:
    """Requeue-all-failed puts every FAIL and STOP transfer of the destination back in the queue."""
    one = host("h1", max_connections=1)
    s = Scheduler(
        configured(destination(), one), queued("a"), queued("b"), queued("c", expiry=at(0.25))
    )
    s.given(request(StopRequested, transfer_id="a")).settle(T0)  # a: STOP by the operator
    assert s.entry("b").status is TransferStatus.EXEC
    fail_running(s, at(0.5), retriable=False)  # b: STOP after an unrecoverable error; c expires
    assert [s.entry(t).status for t in "abc"] == ["STOP", "STOP", "FAIL"]
    out = s.given(request(RequeueFailedRequested, at(2))).settle(at(2))
    assert sorted(e.transfer_id for e in of(out, TransferRequeued)) == ["a", "b", "c"]
    assert ordered_ids(out) == ["a"]


def test_change_of_priority_reorders_the_queue() -> None:
    """Raising a transfer's priority (lower number) puts it first in the queue."""
    s = Scheduler(configured(destination(max_connections=1)), queued("a"), queued("b"))
    out = s.given(request(PriorityChangeRequested, transfer_id="b", priority=1)).settle(T0)
    (change,) = of(out, TransferPriorityChanged)
    assert (change.old_priority, change.new_priority) == (99, 1)
    assert ordered_ids(out) == ["b"]


def test_extended_lifetime_keeps_a_transfer_from_expiring() -> None:
    """Extending a transfer's lifetime moves its expiry; it does not fail at the old one."""
    s = Scheduler(
        configured(destination(), host("h1", max_connections=1)),
        queued("busy"),
        queued("t1", expiry=at(5)),
    )
    s.settle(T0)
    out = s.given(
        request(LifetimeExtensionRequested, at(1), transfer_id="t1", expiry_time=at(600))
    ).settle(at(1))
    (ext,) = of(out, TransferLifetimeExtended)
    assert (ext.old_expiry_time, ext.new_expiry_time) == (at(5), at(600))
    assert s.settle(at(10)) == []
    assert s.entry("t1").status == "WAIT"


def test_release_of_a_standby_transfer() -> None:
    """Releasing a held (standby) transfer puts it in the queue (WAIT) and it is ordered."""
    s = Scheduler(
        configured(),
        queued("t1", status=TransferStatus.HOLD),
        queued("t2", status=TransferStatus.HOLD),
    )
    out = s.given(request(StandbyReleaseRequested, transfer_id="t1")).settle(T0)
    assert [e.transfer_id for e in of(out, TransferReleased)] == ["t1"]
    assert ordered_ids(out) == ["t1"]


def test_release_of_every_standby_transfer_of_a_destination() -> None:
    """Releasing without a transfer id releases every held transfer of the destination."""
    s = Scheduler(
        configured(),
        queued("t1", status=TransferStatus.HOLD),
        queued("t2", status=TransferStatus.HOLD),
    )
    out = s.given(request(StandbyReleaseRequested)).settle(T0)
    assert sorted(e.transfer_id for e in of(out, TransferReleased)) == ["t1", "t2"]


def test_moot_request_is_declined_at_once() -> None:
    """Releasing a transfer that is not held is answered RequestDeclined (the request as its
    cause, the reason in words) and forgotten."""
    s = Scheduler(configured(), queued("t1"))
    s.settle(T0)
    asked = request(StandbyReleaseRequested, at(1), transfer_id="t1")
    out = s.given(asked).settle(at(1))
    assert of(out, TransferReleased) == []
    (declined,) = of(out, RequestDeclined)
    assert declined.envelope.causation_id == asked.envelope.event_id
    assert (declined.transfer_id, declined.request) == ("t1", StandbyReleaseRequested.AVRO_NAME)
    assert "nothing to release" in declined.reason
    assert s.state.destinations["dest"].requests == {}


def test_requeue_failed_with_nothing_failed_is_declined() -> None:
    """Requeue-failed on a destination with no failed transfer is declined, saying so."""
    s = Scheduler(configured(), queued("t1"))
    s.settle(T0)
    out = s.given(request(RequeueFailedRequested, at(1))).settle(at(1))
    (declined,) = of(out, RequestDeclined)
    assert declined.reason == "nothing to requeue: no failed or stopped transfer at dest"


def test_deactivated_host_is_left_for_the_next_one() -> None:
    """Deactivating the current host announces it and moves the orders to the next host."""
    s = Scheduler(configured(destination(), host("h1"), host("h2")), queued("t1"))
    out = s.given(request(HostDeactivationRequested, host_id="h1")).settle(T0)
    assert kinds(out)[:2] == ["HostDeactivated", "HostSwitched"]
    assert [(e.from_host, e.to_host) for e in of(out, HostSwitched)] == [("h1", "h2")]
    assert [o.host.id for o in ordered(out)] == ["h2"]


def test_activated_host_is_used_again() -> None:
    """Activating a deactivated host puts it back in the host list."""
    s = Scheduler(configured(destination(), host("h1")), queued("t1"))
    s.given(request(HostDeactivationRequested, host_id="h1")).settle(T0)
    assert s.summary().status is D.FAIL
    out = s.given(request(HostActivationRequested, at(1), host_id="h1")).settle(at(1))
    assert of(out, HostActivated)
    assert [o.host.id for o in ordered(out)] == ["h1"]
    assert of(out, HostDeactivated) == []


def test_change_of_host_priority_changes_the_primary() -> None:
    """Giving the backup a lower priority number makes it the host orders go to."""
    s = Scheduler(configured(destination(), host("h1"), host("h2")), queued("t1"))
    out = s.given(request(HostPriorityChangeRequested, host_id="h2", priority=-5)).settle(T0)
    (change,) = of(out, HostPriorityChanged)
    assert (change.old_priority, change.new_priority) == (1, -5)
    assert [o.host.id for o in ordered(out)] == ["h2"]


def test_requests_wait_for_no_clock() -> None:
    """Answers are stamped with the decision time, not a wall clock."""
    s = Scheduler(configured(), queued("t1"))
    out = s.given(request(StopRequested, transfer_id="t1")).settle(T0 + timedelta(hours=3))
    assert {e.envelope.occurred_at for e in out} == {T0 + timedelta(hours=3)}
