"""Given/when/then: failures classed by whose problem they are. The host's (a wrong password, a
permission, a missing directory, a refused connection) count against the host, fail over and,
after the destination's cycles, hold the destination with the reason while the files stay
queued; only the file's own problem (its object missing at the store) ends a transfer; a
transient one is requeued later, counted against nobody."""

from __future__ import annotations

from typing import Any

import pytest

from bus.events.base import DestinationStatus, TransferStatus
from bus.events.requests import RestartRequested
from bus.events.transfers import (
    DestinationStatusChanged,
    Fault,
    HostSwitched,
    TransferAbandoned,
    TransferExpired,
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
    of,
    ordered,
    queued,
    request,
    succeeded,
)

D = DestinationStatus
S = TransferStatus
WRONG_PASSWORD: dict[str, Any] = {
    "error": "AuthenticationFailed",
    "message": "connect sftp://ops@h1:22/in: Permission denied",
    "retriable": False,
    "fault": Fault.HOST,
}
HOST_ERRORS = [
    ("AuthenticationFailed", False),
    ("PermissionDenied", False),
    ("NotFound", False),
    ("ConnectionLost", True),
]


def only_host(transfers: int = 3) -> Scheduler:
    """One host (no retry of its own), two cycles before hold, two connections, no max start;
    ``transfers`` queued and (up to) the first two ordered at T0."""
    dest = destination(max_start=0, retry_count=2, retry_frequency_ms=30_000)
    s = Scheduler(
        configured(dest, host("h1", retry_count=0)),
        [queued(f"t{i}") for i in range(1, transfers + 1)],
    )
    assert len(ordered(s.settle(T0))) == min(2, transfers)
    return s


def statuses(s: Scheduler) -> dict[str, S]:
    return {tid: e.status for tid, e in s.state.transfers.items()}


@pytest.mark.parametrize(("error", "retriable"), HOST_ERRORS)
def test_a_host_error_fails_over_to_the_next_host(error: str, retriable: bool) -> None:
    """A wrong password (or permission, missing directory, refused connection) on host A is
    the host's: the transfer is requeued, not stopped, and its next attempt goes to host B."""
    dest = destination(max_start=0)
    s = Scheduler(configured(dest, host("h1", retry_count=0), host("h2")), queued("t1"))
    s.settle(T0)
    out = fail_running(s, at(seconds=1), error=error, retriable=retriable, fault=Fault.HOST)
    assert of(out, TransferStopped) == []
    (requeue,) = of(out, TransferRequeued)
    assert f"on host h1: {error}" in requeue.reason
    assert [(e.from_host, e.to_host) for e in of(out, HostSwitched)] == [("h1", "h2")]
    assert [(o.transfer_id, o.host.id, o.attempt) for o in ordered(out)] == [("t1", "h2", 2)]


def test_wrong_password_on_the_only_host_holds_the_destination_not_the_files() -> None:
    """On the only host, a wrong password retried for the destination's cycles puts the
    destination on hold (HOLD "Failed") naming the host and the error, and every transfer
    is still queued: none is stopped or failed."""
    s = only_host()
    out = fail_running(s, at(seconds=1), **WRONG_PASSWORD)  # cycle 1: sleep 30 s
    (sleeping,) = [e for e in of(out, DestinationStatusChanged) if e.new_status is D.IDLE]
    assert "AuthenticationFailed" in sleeping.reason
    assert ordered(s.settle(at(seconds=30))) == []
    assert len(ordered(s.settle(at(seconds=31)))) == 2
    out = fail_running(s, at(seconds=32), **WRONG_PASSWORD)  # cycle 2 of 2: hold
    (held,) = of(out, DestinationStatusChanged)
    assert held.new_status is D.HOLD
    assert held.reason == (
        "Failed: every host failed, 2 cycle(s); last error on host h1: AuthenticationFailed:"
        " connect sftp://ops@h1:22/in: Permission denied"
    )
    assert of(out, TransferStopped) == of(out, TransferAbandoned) == []
    assert statuses(s) == {"t1": S.RETR, "t2": S.RETR, "t3": S.WAIT}
    assert ordered(s.settle(at(minutes=30))) == []  # held until an operator restarts it
    assert s.summary().status is D.HOLD


def test_held_destination_restarted_delivers_every_queued_file() -> None:
    """Once the password is put right and the destination restarted, the queued files go out
    from the primary host again and all arrive."""
    s = only_host()
    fail_running(s, at(seconds=1), **WRONG_PASSWORD)
    s.settle(at(seconds=31))
    fail_running(s, at(seconds=32), **WRONG_PASSWORD)
    assert s.summary().status is D.HOLD
    out = s.given(request(RestartRequested, at(minutes=5))).settle(at(minutes=5))
    assert [e.new_status for e in of(out, DestinationStatusChanged)] == [D.RSTR, D.EXEC]
    now = at(minutes=5)
    while set(statuses(s).values()) != {S.DONE}:
        orders = ordered(out)
        assert orders, statuses(s)
        assert {o.host.id for o in orders} == {"h1"}
        s.given([succeeded(order, now) for order in orders])
        out = s.settle(now)
    assert s.summary().last_error == ""


def test_files_delayed_by_max_start_while_held_go_out_after_the_restart() -> None:
    """Transfers that reached their max start on the refused host are delayed when the
    destination restarts, and due again as soon as the first delivery gets through: the
    restart does not leave them waiting the start frequency."""
    dest = destination(max_start=2, retry_count=2, retry_frequency_ms=30_000)
    s = Scheduler(configured(dest, host("h1", retry_count=0)), [queued(f"t{i}") for i in "123"])
    s.settle(T0)
    fail_running(s, at(seconds=1), **WRONG_PASSWORD)
    s.settle(at(seconds=31))
    fail_running(s, at(seconds=32), **WRONG_PASSWORD)
    assert s.summary().status is D.HOLD
    out = s.given(request(RestartRequested, at(minutes=5))).settle(at(minutes=5))
    assert {e.transfer_id for e in of(out, TransferRequeued)} == {"t1", "t2"}  # max start
    (first,) = ordered(out)
    out = s.given(succeeded(first, at(minutes=5, seconds=1))).settle(at(minutes=5, seconds=1))
    rescheduled = [e for e in of(out, TransferRequeued) if e.reason.startswith("Rescheduled")]
    assert {e.transfer_id for e in rescheduled} == {"t1", "t2"}
    assert sorted(o.transfer_id for o in ordered(out)) == ["t1", "t2"]


def test_missing_object_at_the_store_ends_the_transfer_and_blames_no_host() -> None:
    """The file's own problem (its object missing in the store and every replica) stops that
    transfer; the host counts no failure and the destination goes on delivering."""
    s = only_host()
    out = fail_running(
        s,
        at(seconds=1),
        error="ObjectNotFound",
        message="no object 0a1b in local or its replicas",
        retriable=False,
        fault=Fault.FILE,
    )
    assert {e.transfer_id for e in of(out, TransferStopped)} == {"t1", "t2"}
    (stop, _) = of(out, TransferStopped)
    assert stop.reason.startswith("Unrecoverable error of the file itself (on host h1)")
    assert "ObjectNotFound" in stop.reason
    assert s.summary().failures == {}
    assert s.summary().last_error == ""
    assert [o.transfer_id for o in ordered(out)] == ["t3"]


def test_transient_error_is_requeued_later_without_counting_against_the_host() -> None:
    """A transient failure (a corrupt copy at the store) is requeued after the destination's
    retry frequency; the host counts nothing and is not left."""
    s = only_host(transfers=1)
    out = fail_running(
        s,
        at(seconds=1),
        error="ObjectCorrupt",
        message="copy in local: ADLER32 mismatch",
        retriable=True,
        fault=Fault.TRANSIENT,
    )
    (requeue,) = of(out, TransferRequeued)
    assert requeue.queue_time == at(seconds=31)
    assert "transient failure" in requeue.reason
    assert s.summary().failures == {}
    assert of(out, HostSwitched) == []
    # nothing runs while it waits: Idle, neither retrying nor held
    assert [e.new_status for e in of(out, DestinationStatusChanged)] == [D.WAIT]
    assert ordered(s.settle(at(seconds=30))) == []
    assert [o.attempt for o in ordered(s.settle(at(seconds=31)))] == [2]


def test_host_error_of_a_mover_older_than_the_fault_field_is_read_from_the_table() -> None:
    """A failure without a fault (written by an older mover) is classed by its error class
    through the same table: a refused login is the host's even though it is not retriable."""
    s = only_host(transfers=1)
    out = fail_running(s, at(seconds=1), **{**WRONG_PASSWORD, "fault": None})
    assert of(out, TransferStopped) == []
    assert len(of(out, TransferRequeued)) == 1
    assert s.summary().cycle == 1


def test_host_errors_never_expire_or_stop_the_queue_while_it_waits() -> None:
    """Cycling on a wrong password with infinite retries keeps every transfer queued: the
    destination shows the error, sleeping between cycles, and nothing is stopped."""
    dest = destination(max_start=0, retry_count=-1, retry_frequency_ms=1000)
    s = Scheduler(configured(dest, host("h1", retry_count=0)), [queued("t1"), queued("t2")])
    s.settle(T0)
    out = []
    for i in range(5):
        out += fail_running(s, at(seconds=10 * i + 1), **WRONG_PASSWORD)
        out += s.settle(at(seconds=10 * i + 2))
    assert of(out, TransferStopped) == of(out, TransferExpired) == []
    assert all("AuthenticationFailed" in e.reason for e in of(out, DestinationStatusChanged)
               if e.new_status is D.IDLE)  # fmt: skip
    assert set(statuses(s).values()) <= {S.EXEC, S.RETR, S.WAIT}
