"""Temporary files movers left at destinations, and when the janitor removes them (pure).

A mover writes each attempt under a temporary name derived from the transfer and attempt and
records it in ``TransferStarted`` (and ``TransferFailed``); the put renames it on success and
removes it on a failure it can still report. What is left comes from a mover SIGKILLed
mid-write, or a failure that cut the connection before the clean-up. The next attempt of the
transfer removes the leftovers beside its own target (``consumers.movers.delivery.settle``);
the janitor removes the rest: those of a transfer that failed over to another host, ended
(stopped, expired) after a crashed attempt, or was delivered under another rendered path.

Why the janitor owns this sweep, not a mover on start: it already replays the whole transfers
log, so it knows every recorded temporary name, on which host, and whether its transfer is
finished, while a mover knows neither another mover's names nor whether that mover is gone.

Rules kept:

- **Only what no attempt will write again.** A recorded name is due once its transfer has
  been finished (DONE, FAIL, STOP) for ``settle``: no attempt of it is ordered any more. A
  mover cut off from its group and still writing then only sees its rename fail (its outcome
  is ignored). A successful attempt's name is dropped (its file was renamed), and so is one
  that failed permanently (refused before writing, or with a connection sound enough for the
  put to remove what it wrote).
- **Bounded.** A transfer is kept only while it has names not yet removed; a name is tried at
  each sweep while its host fails retriably, and given up ``GIVE_UP`` after the transfer
  finished. The log is the only memory: after a restart, names of transfers finished within
  ``GIVE_UP`` are removed again (the host answers "not found", which counts as removed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bus.events.base import Event
from bus.events.transfers import (
    TransferAbandoned,
    TransferDownloaded,
    TransferExpired,
    TransferFailed,
    TransferRequeued,
    TransferScheduled,
    TransferStarted,
    TransferStopped,
    TransferSucceeded,
)
from consumers.janitor.core import SETTLE

GIVE_UP = timedelta(days=1)
_FINISHING = (TransferSucceeded, TransferDownloaded, TransferStopped, TransferExpired,
              TransferAbandoned)  # fmt: skip
_REOPENING = (TransferScheduled, TransferRequeued)  # a finished transfer sent again


@dataclass(frozen=True, slots=True)
class Leftover:
    """A temporary name one attempt recorded on one host."""

    transfer_id: str
    attempt: int
    host_id: str
    path: str


@dataclass(slots=True)
class Temporaries:
    """Recorded temporary names of transfers not yet cleaned, and when each finished."""

    names: dict[str, dict[int, Leftover]] = field(default_factory=dict)
    finished_at: dict[str, datetime] = field(default_factory=dict)


def evolve(state: Temporaries, event: Event) -> None:
    """Fold one transfers-topic event into ``state`` (others change nothing)."""
    match event:
        case (
            TransferStarted(temporary_path=str(path))
            | TransferFailed(retriable=True, temporary_path=str(path))
        ):
            names = state.names.setdefault(event.transfer_id, {})
            names.setdefault(event.attempt, Leftover(event.transfer_id, event.attempt,
                                                     event.host_id, path))  # fmt: skip
        case TransferSucceeded() | TransferFailed(retriable=False):
            # renamed; or refused before writing (or cleaned up: the connection was fine)
            state.names.get(event.transfer_id, {}).pop(event.attempt, None)
    about = getattr(event, "transfer_id", None)
    if not isinstance(about, str) or about not in state.names:
        return
    if isinstance(event, _FINISHING):
        state.finished_at[about] = event.envelope.occurred_at
    elif isinstance(event, _REOPENING):
        state.finished_at.pop(about, None)
    if not state.names[about]:
        forget(state, about)


def due(state: Temporaries, now: datetime, settle: timedelta = SETTLE) -> list[Leftover]:
    """The names to remove at ``now``: those of transfers finished at least ``settle`` ago."""
    return [
        leftover
        for tid, finished in state.finished_at.items()
        if finished + settle <= now
        for leftover in state.names.get(tid, {}).values()
    ]


def removed(state: Temporaries, leftover: Leftover) -> None:
    """``leftover`` is gone from its host (removed, or not there any more)."""
    names = state.names.get(leftover.transfer_id)
    if names is not None:
        names.pop(leftover.attempt, None)
        if not names:
            forget(state, leftover.transfer_id)


def expired(state: Temporaries, now: datetime) -> list[Leftover]:
    """Give up the names of transfers finished more than ``GIVE_UP`` ago (returned, to log)."""
    old = [tid for tid, finished in state.finished_at.items() if finished + GIVE_UP <= now]
    dropped = [leftover for tid in old for leftover in state.names.get(tid, {}).values()]
    for tid in old:
        forget(state, tid)
    return dropped


def forget(state: Temporaries, transfer_id: str) -> None:
    state.names.pop(transfer_id, None)
    state.finished_at.pop(transfer_id, None)
