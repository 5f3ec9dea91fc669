"""How transfer events change the scheduler's state (part of ``evolve``, see ``core``).

Rules kept here: an outcome counts only for the transfer's current attempt while it runs (a
superseded attempt's outcome is ignored); a status change the lifecycle table refuses is
ignored; a success on a host, or a failure that is the host's, moves the destination's host
provider (``failover``). Whose problem a failure is comes with it (``protocols.base.FAULTS``):
the host's is requeued and counted against the host (a wrong password, a missing directory
hold the destination after its cycles, never the files), the file's own stops the transfer,
a transient one is requeued later and counted against nobody.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bus.events.base import Event, TransferStatus
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    Fault,
    TransferAbandoned,
    TransferDownloaded,
    TransferExpired,
    TransferFailed,
    TransferHeld,
    TransferInterrupted,
    TransferLifetimeExtended,
    TransferPriorityChanged,
    TransferQueued,
    TransferReleased,
    TransferRequeued,
    TransferScheduled,
    TransferStarted,
    TransferStopped,
    TransferSucceeded,
)
from consumers.scheduler import failover, outputs
from consumers.scheduler.lifecycle import check
from consumers.scheduler.state import (
    GONE,
    Followup,
    Handler,
    SchedulerState,
    TransferEntry,
    registrar,
)
from protocols.base import reported_fault

S = TransferStatus
HANDLERS: dict[type[Event], Handler] = {}
_on = registrar(HANDLERS)


def _touch(state: SchedulerState, e: TransferEntry, event: Event, **changes: Any) -> None:
    new = replace(e, last_event_id=event.envelope.event_id, version=e.version + 1, **changes)
    state.put_entry(new, event.envelope.occurred_at)


def _decision(state: SchedulerState, tid: str, event: Event) -> TransferEntry | None:
    """The entry a scheduler decision was made on, or None for a stale duplicate (the same
    decision consumed back from the log after the transfer moved on)."""
    e = state.transfers.get(tid)
    return e if e is not None and outputs.decided_on(e, event) else None


def _move(
    state: SchedulerState, tid: str, to: TransferStatus, event: Event, **changes: Any
) -> None:
    """Apply a status change if the lifecycle table allows it."""
    e = state.transfers.get(tid)
    if e is not None and check(e.status, to):
        _touch(state, e, event, status=to, followup=Followup.NONE, **changes)


def _decided_move(
    state: SchedulerState, tid: str, to: TransferStatus, event: Event, **changes: Any
) -> None:
    """Apply a decided status change to the transfer version it was decided on."""
    if _decision(state, tid, event) is not None:
        _move(state, tid, to, event, **changes)


def _current(state: SchedulerState, tid: str, attempt: int) -> TransferEntry | None:
    """The entry if ``attempt`` is its current attempt and still in EXEC, else None."""
    e = state.transfers.get(tid)
    if e is None or e.attempt != attempt or e.status is not S.EXEC:
        return None
    return e


# -- transfers ----------------------------------------------------------------------------------


@_on(TransferQueued)
def _queued(state: SchedulerState, ev: TransferQueued) -> None:
    old = state.transfers.get(ev.transfer_id)
    entry = TransferEntry(
        transfer_id=ev.transfer_id,
        destination=ev.destination,
        data_file_id=ev.data_file_id,
        target=ev.target,
        size=ev.size,
        status=ev.status,
        priority=ev.priority,
        queue_time=ev.queue_time,
        expiry_time=ev.expiry_time,
        scheduled_time=ev.scheduled_time,
        file_instance=ev.file_instance,
        # a re-submission keeps the attempt number, so outcomes of older attempts stay ignored
        attempt=old.attempt if old is not None else 0,
        last_event_id=ev.envelope.event_id,
        version=old.version + 1 if old is not None else 0,
    )
    state.put_entry(entry, ev.envelope.occurred_at)


@_on(TransferScheduled, TransferOrdered)
def _scheduled(state: SchedulerState, ev: TransferScheduled | TransferOrdered) -> None:
    e = state.transfers.get(ev.transfer_id)
    if e is None or ev.attempt <= e.attempt or not check(e.status, S.EXEC):
        return  # the twin event of an order already applied, or a stale one
    host = ev.host_id if isinstance(ev, TransferScheduled) else ev.host.id
    rt = state.runtime(e.destination)
    if rt.summary.announced_host is None:
        # the first order names the host in use, so losing it later is announced
        state.put_summary(rt, replace(rt.summary, current_host=host, announced_host=host))
    _touch(
        state,
        e,
        ev,
        status=S.EXEC,
        attempt=ev.attempt,
        host_id=host,
        transfer_group=ev.transfer_group,
        group_failures=e.group_failures if ev.transfer_group == e.transfer_group else 0,
        mover_id=None,
        ordered_at=ev.envelope.occurred_at,
        unsettled_since=e.unsettled_since or ev.envelope.occurred_at,
        start_count=e.start_count + 1,
        followup=Followup.NONE,
        reason="",
    )


@_on(TransferStarted)
def _started(state: SchedulerState, ev: TransferStarted) -> None:
    at = ev.envelope.occurred_at
    state.movers[ev.mover_id] = max(state.movers.get(ev.mover_id, GONE), at)
    seen = state.runtime(ev.destination).started
    seen[ev.mover_id] = max(seen.get(ev.mover_id, GONE), at)
    e = _current(state, ev.transfer_id, ev.attempt)
    if e is not None and e.running:
        _touch(state, e, ev, mover_id=ev.mover_id)


@_on(TransferSucceeded)
def _succeeded(state: SchedulerState, ev: TransferSucceeded) -> None:
    e = _current(state, ev.transfer_id, ev.attempt)
    if e is None or not e.running:
        return
    _touch(state, e, ev, status=S.DONE, reason="", unsettled_since=None)
    rt = state.runtime(e.destination)
    at = ev.envelope.occurred_at
    delivered = max(rt.summary.last_delivered or at, at)
    if delivered != rt.summary.last_delivered:
        state.put_summary(rt, replace(rt.summary, last_delivered=delivered))
    if rt.config is not None:
        # a retried transfer got through, or the first one since an operator restarted the
        # destination (a password put right): the destination has recovered
        recovered = e.attempt > 1 or rt.summary.restarted
        order = failover.host_order(rt.associations, state.hosts, rt.summary)
        summary = failover.on_success(
            rt.summary, order, rt.config, ev.host_id, e.transfer_id, ev.envelope.occurred_at
        )
        if recovered:
            summary = replace(summary, recovered_at=ev.envelope.occurred_at, restarted=False)
        state.put_summary(rt, summary)


@_on(TransferFailed)
def _failed(state: SchedulerState, ev: TransferFailed) -> None:
    e = _current(state, ev.transfer_id, ev.attempt)
    if e is None or not e.running:
        return
    fault = reported_fault(ev.fault, ev.error_class, ev.retriable)
    reason = f"{ev.error_class}: {ev.message}"
    failures = e.group_failures + 1  # whatever the fault: a regional group's own count
    _touch(state, e, ev, followup=_FOLLOWUPS[fault], reason=reason, group_failures=failures)
    rt = state.runtime(e.destination)
    summary = replace(rt.summary, last_ko=e.transfer_id)
    if fault is Fault.HOST and rt.config is not None:
        summary = replace(summary, last_error=f"host {ev.host_id}: {reason}")
        order = failover.host_order(rt.associations, state.hosts, summary)
        summary = failover.on_failure(
            summary,
            order,
            state.hosts,
            rt.config,
            ev.host_id,
            e.ordered_at,
            ev.envelope.occurred_at,
        )
    state.put_summary(rt, summary)


_FOLLOWUPS = {
    Fault.HOST: Followup.REQUEUE,
    Fault.FILE: Followup.STOP,
    Fault.TRANSIENT: Followup.REQUEUE_LATER,
}


@_on(TransferInterrupted)
def _interrupted(state: SchedulerState, ev: TransferInterrupted) -> None:
    if _current(state, ev.transfer_id, ev.attempt) is not None:
        _move(state, ev.transfer_id, S.INTR, ev, reason=ev.reason)


@_on(TransferRequeued)
def _requeued(state: SchedulerState, ev: TransferRequeued) -> None:
    e = _decision(state, ev.transfer_id, ev)
    if e is None:
        return
    # a max-start delay (count went up) or an operator requeue gives fresh starts
    fresh = ev.requeue_count > e.requeue_count or ev.actor is not None
    start_count = 0 if fresh else e.start_count
    when = ev.envelope.occurred_at
    _move(
        state,
        ev.transfer_id,
        S.RETR,
        ev,
        queue_time=ev.queue_time,
        delayed_at=when if ev.queue_time > when else None,
        requeue_count=ev.requeue_count,
        start_count=start_count,
        reason=ev.reason,
    )


@_on(TransferHeld)
def _held(state: SchedulerState, ev: TransferHeld) -> None:
    _decided_move(state, ev.transfer_id, S.HOLD, ev, reason=ev.reason)


@_on(TransferReleased)
def _released(state: SchedulerState, ev: TransferReleased) -> None:
    _decided_move(state, ev.transfer_id, S.WAIT, ev, reason="")


@_on(TransferStopped)
def _stopped(state: SchedulerState, ev: TransferStopped) -> None:
    _decided_move(state, ev.transfer_id, S.STOP, ev, reason=ev.reason)


@_on(TransferExpired, TransferAbandoned)
def _failed_for_good(state: SchedulerState, ev: TransferExpired | TransferAbandoned) -> None:
    _decided_move(state, ev.transfer_id, S.FAIL, ev, reason=ev.reason)


@_on(TransferDownloaded)
def _downloaded(state: SchedulerState, ev: TransferDownloaded) -> None:
    _move(state, ev.transfer_id, S.DONE, ev, reason="")


@_on(TransferPriorityChanged)
def _priority(state: SchedulerState, ev: TransferPriorityChanged) -> None:
    e = _decision(state, ev.transfer_id, ev)
    if e is not None:
        _touch(state, e, ev, priority=ev.new_priority)


@_on(TransferLifetimeExtended)
def _lifetime(state: SchedulerState, ev: TransferLifetimeExtended) -> None:
    e = _decision(state, ev.transfer_id, ev)
    if e is not None:
        _touch(state, e, ev, expiry_time=ev.new_expiry_time)
