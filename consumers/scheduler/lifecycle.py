"""The transfer status transition table: which status may follow which (DESIGN.md §4).

Codes are OpenECPDS's: INIT Arriving, SCHE Preset, FETC Fetching, HOLD StandBy, WAIT Queued,
EXEC Transferring, DONE Done, RETR ReQueued, STOP Stopped, FAIL Failed, INTR Interrupted.
Rule kept here: this table is the only place that says which moves are legal; the scheduler
core ignores an event that asks for a move the table refuses (so a late or duplicated event
can never resurrect a finished transfer). A re-submitted file (``TransferQueued`` again for
the same transfer id) starts a new life and is not checked against the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bus.events.base import TransferStatus as S

TABLE: Mapping[S, frozenset[S]] = MappingProxyType(
    {
        # push: metadata registered, bytes arriving
        S.INIT: frozenset({S.WAIT, S.HOLD, S.SCHE, S.FAIL, S.STOP}),
        # fetch mode: waiting for retrieval, then fetching
        S.SCHE: frozenset({S.FETC, S.WAIT, S.HOLD, S.FAIL, S.STOP}),
        S.FETC: frozenset({S.WAIT, S.HOLD, S.SCHE, S.FAIL, S.STOP}),
        # standby: released, requeued, stopped, expired, or downloaded through the portal
        S.HOLD: frozenset({S.WAIT, S.RETR, S.STOP, S.FAIL, S.DONE}),
        # queued: ordered, held, stopped, expired/abandoned, delayed after max start
        S.WAIT: frozenset({S.EXEC, S.HOLD, S.STOP, S.FAIL, S.RETR}),
        # running: done, requeued after a failure, interrupted, stopped, failed for good, or held
        # once a graceful hold finds the attempt ended
        S.EXEC: frozenset({S.DONE, S.RETR, S.INTR, S.STOP, S.FAIL, S.HOLD}),
        # requeued: ordered again (the scheduler orders RETR directly), or delayed again
        S.RETR: frozenset({S.WAIT, S.EXEC, S.RETR, S.HOLD, S.STOP, S.FAIL}),
        # interrupted: always requeued, never forgotten (or held/stopped/failed by an operator)
        S.INTR: frozenset({S.RETR, S.WAIT, S.HOLD, S.STOP, S.FAIL}),
        # finished: only an operator requeue (or a re-submission) brings them back
        S.DONE: frozenset({S.RETR}),
        S.STOP: frozenset({S.RETR, S.WAIT}),
        S.FAIL: frozenset({S.RETR, S.WAIT}),
    }
)
"""Allowed moves: ``TABLE[from]`` is the set of statuses that may follow ``from``."""

PENDING: frozenset[S] = frozenset({S.WAIT, S.RETR, S.INTR})
"""Statuses the scheduler still has to act on (the reference's pending selection)."""

ORDERABLE: frozenset[S] = frozenset({S.WAIT, S.RETR})
"""Statuses from which a transfer may be ordered (INTR is requeued first)."""

FINISHED: frozenset[S] = frozenset({S.DONE, S.STOP, S.FAIL})
"""Statuses the scheduler leaves alone until an operator requeues."""


def check(from_status: S, to_status: S) -> bool:
    """Whether a transfer in ``from_status`` may move to ``to_status``."""
    return to_status in TABLE[from_status]
