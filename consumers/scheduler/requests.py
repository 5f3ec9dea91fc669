"""Answers to operator requests (CLI, monitor, ``/api/v1``): each request is a fact that
someone asked; the answer is the transfer, destination or host events that result, each with
the request as its cause and the operator as its actor.

Rules kept here:
- a request is answered against the state when the scheduler next visits the destination;
  one that no longer makes sense (release of a transfer that is not held, requeue-all with
  nothing failed, an unknown transfer) is answered ``RequestDeclined`` with the reason, at
  once, so the operator who asked is not left waiting;
- a graceful hold, a requeue or a restart of a *running* transfer waits for its attempt to end
  (the request stays pending); an immediate hold interrupts it; an immediate restart of a
  destination interrupts its running attempts (they are requeued), a graceful one lets them end;
- a destination-level answer (hold, restart, stop, host changes) ends the visit, so the next
  visit decides on the changed destination.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from bus.events.base import DestinationStatus, Event, TransferStatus
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
    HostActivated,
    HostDeactivated,
    HostPriorityChanged,
    RequestDeclined,
    TransferReleased,
)
from consumers.scheduler import outputs
from consumers.scheduler.lifecycle import FINISHED, PENDING
from consumers.scheduler.state import DestinationRuntime, SchedulerState, TransferEntry

S = TransferStatus
D = DestinationStatus
_NOT_YET_QUEUED = frozenset({S.INIT, S.SCHE, S.FETC})


class Verdict(Enum):
    """What answering a request did."""

    APPLIED = "applied"  # answered with events
    WAITING = "waiting"  # not yet: stays pending
    MOOT = "moot"  # nothing to do: declined (``RequestDeclined``), then dropped
    DESTINATION = "destination"  # answered with a destination-level change: end the visit


class Answerer:
    """Answers the requests of one decide call (collects events, remembers touched transfers,
    counts the orders made per host: they are not in the state until evolved)."""

    __slots__ = ("now", "ordered", "out", "source", "state", "touched")

    def __init__(
        self, state: SchedulerState, source: str, now: datetime, out: list[Event], touched: set[str]
    ) -> None:
        self.state, self.source, self.now, self.out, self.touched = (
            state,
            source,
            now,
            out,
            touched,
        )
        self.ordered: dict[str, int] = {}

    def answer(self, rt: DestinationRuntime, req: Event) -> Verdict:
        """Answer one request of destination ``rt``; one with nothing to do is declined."""
        tid = getattr(req, "transfer_id", None)
        if tid is None:
            verdict = self._destination(rt, req)
        else:
            entry = self.state.transfers.get(tid)
            if entry is None or entry.destination != rt.name:
                return self._decline(rt, req, f"no transfer {tid} at destination {rt.name}")
            if tid in self.touched:
                return Verdict.WAITING  # something else was decided for it in this call
            verdict = self._transfer(entry, req)
            if verdict is Verdict.APPLIED:
                self.touched.add(tid)
            elif verdict is Verdict.MOOT:
                return self._decline(rt, req, _why_not(req, entry))
        if verdict is Verdict.MOOT:
            return self._decline(rt, req, _why_not_destination(rt, req))
        return verdict

    def _decline(self, rt: DestinationRuntime, req: Event, reason: str) -> Verdict:
        """Answer ``req`` with ``RequestDeclined`` (nothing to do, and why)."""
        self.out.append(
            RequestDeclined(
                envelope=outputs.destination_env(
                    self.source,
                    self.now,
                    f"request-declined|{req.envelope.event_id}",
                    rt.summary,
                    req.envelope.event_id,
                ),
                destination=rt.name,
                request=req.AVRO_NAME,
                transfer_id=getattr(req, "transfer_id", None),
                host_id=getattr(req, "host_id", None),
                requested_by=getattr(req, "requested_by", ""),
                reason=reason,
            )
        )
        return Verdict.MOOT

    def _transfer(self, e: TransferEntry, req: Event) -> Verdict:
        src, now, out, cause = self.source, self.now, self.out, req.envelope.event_id
        actor: str = getattr(req, "requested_by", "")
        why = getattr(req, "reason", None)
        busy = e.running
        if isinstance(req, HoldRequested):
            if busy and not req.immediate:
                return Verdict.WAITING
            if e.status not in PENDING and e.status is not S.EXEC:
                return Verdict.MOOT
            if busy:
                # interrupt now (not as the answer: the request stays pending), hold next visit
                out.append(outputs.interrupted(src, now, e, f"Put on hold by {actor}"))
                return Verdict.WAITING
            reason = why or f"Put on hold by {actor}"
            out.append(outputs.held(src, now, e, reason, actor, cause))
            return Verdict.APPLIED
        if isinstance(req, RestartRequested | RequeueRequested):
            if e.status in _NOT_YET_QUEUED:
                return Verdict.MOOT
            if busy:
                if isinstance(req, RequeueRequested):
                    return Verdict.WAITING
                out.append(outputs.interrupted(src, now, e, f"Restarted by {actor}", cause))
                return Verdict.APPLIED  # the interruption is requeued by the scheduler
            verb = "Restarted" if isinstance(req, RestartRequested) else "Requeued"
            out.append(
                outputs.requeued(
                    src, now, e, why or f"{verb} by {actor}", now, actor=actor, cause=cause
                )
            )
            return Verdict.APPLIED
        if isinstance(req, StopRequested):
            if e.status in FINISHED:
                return Verdict.MOOT
            out.append(outputs.stopped(src, now, e, why or f"Stopped by {actor}", actor, cause))
            return Verdict.APPLIED
        if isinstance(req, PriorityChangeRequested):
            priority = min(99, max(0, req.priority))
            if priority == e.priority:
                return Verdict.MOOT
            out.append(outputs.priority_changed(src, now, e, priority, actor, cause))
            return Verdict.APPLIED
        if isinstance(req, LifetimeExtensionRequested):
            if req.expiry_time == e.expiry_time:
                return Verdict.MOOT
            out.append(outputs.lifetime_extended(src, now, e, req.expiry_time, actor, cause))
            return Verdict.APPLIED
        if isinstance(req, StandbyReleaseRequested):
            if e.status is not S.HOLD:
                return Verdict.MOOT
            out.append(self._release(e, actor, cause))
            return Verdict.APPLIED
        return Verdict.MOOT

    def _interrupt_running(self, rt: DestinationRuntime, reason: str, cause: str) -> bool:
        """Interrupt every running attempt of the destination; whether there was any."""
        any_running = False
        for tid in sorted(rt.running):
            if tid not in self.touched:
                self.touched.add(tid)
                e = self.state.transfers[tid]
                self.out.append(outputs.interrupted(self.source, self.now, e, reason, cause))
                any_running = True
        return any_running

    def _release(self, e: TransferEntry, actor: str, cause: str) -> TransferReleased:
        return outputs.released(self.source, self.now, e, actor, cause)

    def _destination(self, rt: DestinationRuntime, req: Event) -> Verdict:
        src, now, out, cause = self.source, self.now, self.out, req.envelope.event_id
        actor: str = getattr(req, "requested_by", "")
        why = getattr(req, "reason", None)
        s = rt.summary
        name = rt.name
        if isinstance(req, HoldRequested | StopRequested):
            new = D.HOLD if isinstance(req, HoldRequested) else D.STOP
            immediate = isinstance(req, StopRequested) or req.immediate
            verb = "Put on hold" if new is D.HOLD else "Stopped"
            changed = False
            if s.status is not new:
                out.append(
                    outputs.destination_status(
                        src,
                        now,
                        s,
                        new,
                        why or f"{verb} by {actor}",
                        actor=actor,
                        cause=cause,
                    )
                )
                changed = True
            if immediate and self._interrupt_running(rt, f"{verb} by {actor}", cause):
                changed = True
            return Verdict.DESTINATION if changed else Verdict.MOOT
        if isinstance(req, RestartRequested):
            reason = why or f"Restarted by {actor}"
            out.append(
                outputs.destination_status(src, now, s, D.RSTR, reason, actor=actor, cause=cause)
            )
            if req.immediate:  # running attempts are interrupted, then requeued (INTR -> RETR)
                self._interrupt_running(rt, reason, cause)
            return Verdict.DESTINATION
        if isinstance(req, RequeueFailedRequested | StandbyReleaseRequested):
            ids = rt.failed if isinstance(req, RequeueFailedRequested) else rt.held
            done = False
            for tid in sorted(ids):
                if tid in self.touched:
                    continue
                e = self.state.transfers[tid]
                self.touched.add(tid)
                done = True
                if isinstance(req, RequeueFailedRequested):
                    out.append(
                        outputs.requeued(
                            src,
                            now,
                            e,
                            why or f"Requeued by {actor}",
                            now,
                            actor=actor,
                            cause=cause,
                        )
                    )
                else:
                    out.append(self._release(e, actor, cause))
            return Verdict.APPLIED if done else Verdict.MOOT
        host_id: str = getattr(req, "host_id", "")
        if host_id not in rt.associations:
            return Verdict.MOOT
        if isinstance(req, HostActivationRequested):
            if host_id not in s.deactivated:
                return Verdict.MOOT
            out.append(
                HostActivated(
                    envelope=outputs.destination_env(src, now, "host-activated", s, cause),
                    destination=name,
                    host_id=host_id,
                    actor=actor,
                )
            )
            return Verdict.DESTINATION
        if isinstance(req, HostDeactivationRequested):
            if host_id in s.deactivated:
                return Verdict.MOOT
            out.append(
                HostDeactivated(
                    envelope=outputs.destination_env(src, now, "host-deactivated", s, cause),
                    destination=name,
                    host_id=host_id,
                    reason=why or "",
                    actor=actor,
                )
            )
            return Verdict.DESTINATION
        if isinstance(req, HostPriorityChangeRequested):
            old = s.host_priority.get(host_id, rt.associations[host_id])
            if old == req.priority:
                return Verdict.MOOT
            out.append(
                HostPriorityChanged(
                    envelope=outputs.destination_env(src, now, "host-priority", s, cause),
                    destination=name,
                    host_id=host_id,
                    old_priority=old,
                    new_priority=req.priority,
                    actor=actor,
                )
            )
            return Verdict.DESTINATION
        return Verdict.MOOT


def _why_not(req: Event, e: TransferEntry) -> str:
    """Why a request on transfer ``e`` found nothing to do."""
    status = f"transfer {e.transfer_id} is {e.status.value}"
    if isinstance(req, PriorityChangeRequested):
        return f"transfer {e.transfer_id} has priority {e.priority} already"
    if isinstance(req, LifetimeExtensionRequested):
        return f"transfer {e.transfer_id} expires at {e.expiry_time:%Y-%m-%d %H:%M:%S} already"
    if isinstance(req, StandbyReleaseRequested):
        return f"{status}: nothing to release (only a standby transfer, HOLD, is)"
    if isinstance(req, StopRequested):
        return f"{status}: it has finished, nothing to stop"
    if isinstance(req, HoldRequested):
        return f"{status}: nothing to hold"
    return f"{status}: not queued yet, nothing to restart or requeue"


def _why_not_destination(rt: DestinationRuntime, req: Event) -> str:
    """Why a request on destination ``rt`` (or one of its hosts) found nothing to do."""
    host_id = getattr(req, "host_id", None)
    if isinstance(req, RequeueFailedRequested):
        return f"nothing to requeue: no failed or stopped transfer at {rt.name}"
    if isinstance(req, StandbyReleaseRequested):
        return f"nothing to release: no standby transfer at {rt.name}"
    if isinstance(req, HoldRequested | StopRequested):
        return f"destination {rt.name} is {rt.summary.status.value} already"
    if host_id is not None and host_id not in rt.associations:
        return f"host {host_id} is not a host of destination {rt.name}"
    if isinstance(req, HostActivationRequested):
        return f"host {host_id} is in use already for {rt.name}"
    if isinstance(req, HostDeactivationRequested):
        return f"host {host_id} is out of use already for {rt.name}"
    if isinstance(req, HostPriorityChangeRequested):
        return f"host {host_id} has priority {req.priority} already for {rt.name}"
    return f"nothing to do for {req.AVRO_NAME.rpartition('.')[2]}"
