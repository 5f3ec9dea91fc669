"""The scheduler's pure core: ``evolve(state, event)`` folds one event into the state;
``decide`` and ``next_due`` (in ``decisions``) say what to do next. No clock, no I/O.

Rules kept here:
- every input is a past fact; ``evolve`` never emits anything, it only records (the decisions
  come from ``decide``, and the runner feeds them back through ``evolve`` before publishing);
- an outcome (started, succeeded, failed, interrupted) counts only for the transfer's current
  attempt while it is running: outcomes of superseded attempts are ignored (DESIGN.md §8);
- a status change the lifecycle table refuses is ignored (a late duplicate cannot resurrect
  a finished transfer);
- host failover follows from the facts (``failover``), so a replay of the log rebuilds the
  same current host, failure counters and cycles; ``decide`` only announces them;
- whose problem a failure was (``protocols.base.FAULTS``, carried by ``TransferFailed``) says
  what follows it: the host's counts in failover and may hold the destination, never the
  files; only the file's own stops the transfer; a transient one is requeued later;
- leaving HOLD/STOP through a restart (RSTR) resets the destination's host provider.

``evolve`` mutates ``state`` in place and returns it (see ``state`` for why).
"""

from __future__ import annotations

from bus.events.base import Event
from bus.events.requests import EVENTS as REQUEST_EVENTS
from bus.events.transfers import (
    DestinationStatusChanged,
    HostActivated,
    HostDeactivated,
    HostPriorityChanged,
    RequestDeclined,
    TransferHeld,
    TransferInterrupted,
    TransferLifetimeExtended,
    TransferPriorityChanged,
    TransferReleased,
    TransferRequeued,
    TransferStopped,
)
from consumers.scheduler import configuration, transitions
from consumers.scheduler.decisions import SchedulerSettings, decide, next_due
from consumers.scheduler.state import DestinationRuntime, Handler, SchedulerState

__all__ = ["SchedulerSettings", "SchedulerState", "decide", "evolve", "next_due"]


def _request(state: SchedulerState, ev: Event) -> None:
    rt: DestinationRuntime = state.runtime(ev.destination)  # type: ignore[attr-defined]
    rt.requests[ev.envelope.event_id] = ev
    state.dirty.add(rt.name)


def _declined(state: SchedulerState, ev: Event) -> None:
    """A declined request changes nothing but is answered (a replay must not answer it again)."""


_HANDLERS: dict[type[Event], Handler] = {
    **transitions.HANDLERS,
    **configuration.HANDLERS,
    **dict.fromkeys(REQUEST_EVENTS, _request),
    RequestDeclined: _declined,
}


def evolve(state: SchedulerState, event: Event) -> SchedulerState:
    """Fold one event into the state; events the scheduler does not use change nothing."""
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(state, event)
        cause = event.envelope.causation_id
        if cause is not None and type(event) in _ANSWERS:
            rt = state.destinations.get(event.destination)  # type: ignore[attr-defined]
            if rt is not None and rt.requests:
                rt.requests.pop(cause, None)
    return state


# events that answer a request (their causation id names it)
_ANSWERS: frozenset[type[Event]] = frozenset(
    {
        TransferHeld,
        TransferReleased,
        TransferRequeued,
        TransferStopped,
        TransferInterrupted,
        TransferPriorityChanged,
        TransferLifetimeExtended,
        DestinationStatusChanged,
        HostActivated,
        HostDeactivated,
        HostPriorityChanged,
        RequestDeclined,
    }
)
