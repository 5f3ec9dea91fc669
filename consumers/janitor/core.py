"""The janitor's pure core: a small entry per data file, rebuilt from events, and the sweep.

``evolve(state, event)`` folds one event of ``ecpds.datafiles`` or ``ecpds.transfers`` into
the state; ``sweep(state, now, destinations, source)`` returns what is due at ``now``. Nothing
here reads a clock, a disk or the network. Rules kept (ECPDS-REFERENCE.md §6.4):

- **Who expires which transfer.** The scheduler expires the transfers it schedules (``WAIT``,
  ``RETR``, ``INTR``) and never a running one (``EXEC``). The janitor expires only the ones the
  scheduler ignores: ``HOLD`` (standby), ``INIT`` (arriving) and ``SCHE`` (preset), once their
  expiry time has passed, with ``TransferExpired`` "not transferred before expiration". So no
  transfer is ever expired by both.
- **Live transfer** = any status but ``DONE``, ``FAIL``, ``STOP``. A data file is expired
  (``DataFileExpired``) once its lifetime has passed (the latest of its own expiry and its
  transfers' expiry times, lifetime extensions included) and no transfer is live.
- **Deletion** of stored content never happens while a transfer is live. Every copy goes: the
  stored one and each replica the replicator recorded (``DataFileReplicated``), one
  ``DataFileDeleted`` per store; the file counts as deleted once no copy is left. Then: a data file
  whose transfers all go to "delete on success" destinations is deleted as soon as they are all
  finished (at least one transfer known; a file whose transfers were not seen yet is kept;
  and ``settle`` after the last one finished, so a sibling transfer not read yet is not missed);
  otherwise ("on expiration", the default, also for an unknown destination) only once expired.
- **Idempotent.** The state only moves forward (expired, deleted stay set; an event seen twice
  changes nothing), events from the two topics may arrive in any relative order, and the ids
  of the janitor's own events are derived from what they are about (uuid5), so a decision
  re-derived after a restart carries the same id as the one published before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from bus.events.base import Envelope, Event, TransferStatus
from bus.events.config import DeleteFromSpool, Destination
from bus.events.datafiles import (
    DataFileDeleted,
    DataFileExpired,
    DataFileRegistered,
    DataFileReplicated,
    DataFileStored,
)
from bus.events.transfers import (
    TransferAbandoned,
    TransferDownloaded,
    TransferExpired,
    TransferFailed,
    TransferHeld,
    TransferInterrupted,
    TransferLifetimeExtended,
    TransferQueued,
    TransferReleased,
    TransferRequeued,
    TransferScheduled,
    TransferStarted,
    TransferStopped,
    TransferSucceeded,
)

S = TransferStatus
FINISHED: frozenset[TransferStatus] = frozenset({S.DONE, S.FAIL, S.STOP})
"""Statuses after which a transfer no longer needs the stored content."""
JANITOR_EXPIRES: frozenset[TransferStatus] = frozenset({S.HOLD, S.INIT, S.SCHE})
"""Statuses the scheduler does not schedule, so their expiry is the janitor's job."""
NOT_TRANSFERRED = "not transferred before expiration"
SETTLE = timedelta(seconds=30)

Reason = Literal["on-expiration", "on-success"]
_NAMESPACE = uuid.UUID("0f4c8f6e-2a57-4c4b-9f35-5e0e3c1f7a21")


@dataclass(frozen=True, slots=True)
class TransferMark:
    """What the janitor keeps of one transfer."""

    transfer_id: str
    destination: str
    status: TransferStatus
    expiry_time: datetime
    attempt: int = 0  # latest attempt ordered; outcomes of older ones are ignored


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """Where a data file's content is stored."""

    guid: str
    store: str
    location: str


@dataclass(frozen=True, slots=True)
class DataFileEntry:
    """One data file: its lifetime, stored copy, transfers and what was already done."""

    data_file_id: str
    expiry_time: datetime | None = None
    stored: StoredCopy | None = None
    replicas: tuple[StoredCopy, ...] = ()  # copies in the transfer group's other stores
    transfers: Mapping[str, TransferMark] = field(default_factory=dict)
    expired: bool = False
    deleted: bool = False  # no copy left
    gone: frozenset[str] = frozenset()  # stores whose copy was deleted
    last_event_id: str | None = None
    finished_at: datetime | None = None  # when a transfer last finished (event time)

    def copies(self) -> tuple[StoredCopy, ...]:
        """Every copy of the content, the stored one first."""
        return (self.stored, *self.replicas) if self.stored is not None else self.replicas

    def lifetime_end(self) -> datetime | None:
        """The latest expiry of the file and its transfers (None when nothing is known)."""
        times = [t.expiry_time for t in self.transfers.values()]
        if self.expiry_time is not None:
            times.append(self.expiry_time)
        return max(times) if times else None


@dataclass(slots=True)
class JanitorState:
    """Entries by data file id, the data file of each transfer, and the finished files.

    A file both expired and deleted (or expired with nothing stored) is dropped from ``files``
    and remembered in ``finished`` so late events about it are ignored.
    """

    files: dict[str, DataFileEntry] = field(default_factory=dict)
    file_of: dict[str, str] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Deletion:
    """Delete the stored content of a data file, then record ``DataFileDeleted``."""

    data_file_id: str
    copy: StoredCopy
    reason: Reason
    causation_id: str | None


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """What a sweep decided: events to publish first, then deletions to carry out in order."""

    events: tuple[TransferExpired | DataFileExpired, ...] = ()
    deletions: tuple[Deletion, ...] = ()


_Change = Callable[[DataFileEntry], DataFileEntry]
_MarkChange = Callable[[TransferMark], TransferMark]

_STATUS_AFTER: Mapping[type[Event], TransferStatus] = {
    TransferScheduled: S.EXEC,  # an order is out: treat it as running until its outcome
    TransferStarted: S.EXEC,
    TransferSucceeded: S.DONE,
    TransferDownloaded: S.DONE,
    TransferFailed: S.RETR,  # one attempt failed; the scheduler decides what comes next
    TransferRequeued: S.RETR,
    TransferHeld: S.HOLD,
    TransferReleased: S.WAIT,
    TransferStopped: S.STOP,
    TransferInterrupted: S.INTR,
    TransferExpired: S.FAIL,
    TransferAbandoned: S.FAIL,
}


def evolve(state: JanitorState, event: Event) -> None:
    """Fold one event into the state (any other event is ignored)."""
    match event:
        case DataFileRegistered(data_file_id=dfid, expiry_time=expiry):
            _update(state, dfid, event, lambda e: replace(e, expiry_time=expiry))
        case DataFileStored(data_file_id=dfid, guid=guid, store=store, location=location):
            copy = StoredCopy(guid, store, location)
            _update(state, dfid, event, lambda e: replace(e, stored=e.stored or copy))
        case DataFileExpired(data_file_id=dfid):
            _update(state, dfid, event, lambda e: replace(e, expired=True))
        case DataFileReplicated(data_file_id=dfid, guid=guid, to_store=store, location=location):
            replica = StoredCopy(guid, store, location)
            _update(state, dfid, event, lambda e: _with_replica(e, replica))
        case DataFileDeleted(data_file_id=dfid, store=store):
            _update(state, dfid, event, lambda e: _without(e, store))
        case TransferQueued():
            _queued(state, event)
        case TransferLifetimeExtended(transfer_id=tid, new_expiry_time=expiry):
            _mark(state, tid, event, lambda m: replace(m, expiry_time=expiry))
        case _:
            status = _STATUS_AFTER.get(type(event))
            about = getattr(event, "transfer_id", None)
            if status is not None and isinstance(about, str):
                _mark(state, about, event, lambda m: replace(m, status=status))


def _update(state: JanitorState, dfid: str, event: Event, change: _Change) -> None:
    if dfid in state.finished:
        return
    entry = state.files.get(dfid) or DataFileEntry(dfid)
    entry = replace(change(entry), last_event_id=event.envelope.event_id)
    state.files[dfid] = entry
    if entry.expired and (entry.deleted or entry.stored is None) and _all_finished(entry):
        _forget(state, entry)


def _with_replica(entry: DataFileEntry, replica: StoredCopy) -> DataFileEntry:
    if entry.deleted or any(c.store == replica.store for c in entry.copies()):
        return entry  # a redelivery, or a copy made after the content was deleted
    return replace(entry, replicas=(*entry.replicas, replica))


def _without(entry: DataFileEntry, store: str) -> DataFileEntry:
    gone = entry.gone | {store}
    return replace(entry, gone=gone, deleted=all(c.store in gone for c in entry.copies()))


def _queued(state: JanitorState, q: TransferQueued) -> None:
    state.file_of[q.transfer_id] = q.data_file_id
    mark = TransferMark(q.transfer_id, q.destination, q.status, q.expiry_time)

    def add(entry: DataFileEntry) -> DataFileEntry:
        if q.transfer_id in entry.transfers:  # a redelivery: keep what happened since
            return entry
        return replace(entry, transfers={**entry.transfers, q.transfer_id: mark})

    _update(state, q.data_file_id, q, add)


def _mark(state: JanitorState, tid: str, event: Event, change: _MarkChange) -> None:
    dfid = state.file_of.get(tid)
    if dfid is None:
        return  # a transfer the janitor never saw queued (or already forgotten)
    entry = state.files.get(dfid)
    if entry is None or tid not in entry.transfers:
        return
    mark = entry.transfers[tid]
    attempt = getattr(event, "attempt", None)
    if isinstance(attempt, int) and attempt < mark.attempt:
        return  # a slow mover reporting on a superseded attempt: the current one may be running
    if isinstance(attempt, int):
        mark = replace(mark, attempt=attempt)
    after = change(mark)
    transfers = {**entry.transfers, tid: after}
    at = event.envelope.occurred_at
    if after.status in FINISHED and mark.status not in FINISHED:
        _update(state, dfid, event, lambda e: replace(e, transfers=transfers, finished_at=at))
    else:
        _update(state, dfid, event, lambda e: replace(e, transfers=transfers))


def _forget(state: JanitorState, entry: DataFileEntry) -> None:
    state.files.pop(entry.data_file_id, None)
    for tid in entry.transfers:
        state.file_of.pop(tid, None)
    state.finished.add(entry.data_file_id)


def _all_finished(entry: DataFileEntry) -> bool:
    return all(t.status in FINISHED for t in entry.transfers.values())


def policy_of(destinations: Mapping[str, Destination], name: str) -> DeleteFromSpool:
    """A destination's "delete from spool" policy; an unknown one keeps content to expiry."""
    destination = destinations.get(name)
    return destination.delete_from_spool if destination else DeleteFromSpool.ON_EXPIRATION


def sweep(
    state: JanitorState,
    now: datetime,
    destinations: Mapping[str, Destination],
    source: str = "janitor",
    settle: timedelta = SETTLE,
) -> SweepPlan:
    """Everything due at ``now``; the state is not changed (evolve the published events).

    ``settle``: "on success" waits this long after the last transfer finished, because the
    janitor reads the transfers of one file from several partitions: a sibling transfer queued
    in the same batch may not have been read yet.
    """
    events: list[TransferExpired | DataFileExpired] = []
    deletions: list[Deletion] = []
    for entry in state.files.values():
        expiring = [
            m
            for m in entry.transfers.values()
            if m.status in JANITOR_EXPIRES and m.expiry_time <= now
        ]
        events.extend(_transfer_expired(m, entry, now, source) for m in expiring)
        gone = {m.transfer_id for m in expiring}
        live = any(
            m.status not in FINISHED and m.transfer_id not in gone for m in entry.transfers.values()
        )
        if live:
            continue
        end = entry.lifetime_end()
        expired = entry.expired or (end is not None and end <= now)
        if expired and not entry.expired:
            events.append(_file_expired(entry, end or now, now, source))
        if entry.stored is None or entry.deleted:
            continue
        left = [c for c in entry.copies() if c.store not in entry.gone]
        if expired:
            deletions.extend(
                Deletion(entry.data_file_id, c, "on-expiration", entry.last_event_id) for c in left
            )
        elif (
            entry.transfers
            and (entry.finished_at is None or entry.finished_at + settle <= now)
            and all(
                policy_of(destinations, m.destination) is DeleteFromSpool.ON_SUCCESS
                for m in entry.transfers.values()
            )
        ):
            deletions.extend(
                Deletion(entry.data_file_id, c, "on-success", entry.last_event_id) for c in left
            )
    return SweepPlan(tuple(events), tuple(deletions))


def deleted(d: Deletion, now: datetime, source: str = "janitor") -> DataFileDeleted:
    """The event recording a deletion, once the store has deleted the object."""
    return DataFileDeleted(
        envelope=_envelope(f"deleted/{d.data_file_id}/{d.copy.store}", d, now, source),
        data_file_id=d.data_file_id,
        guid=d.copy.guid,
        store=d.copy.store,
        location=d.copy.location,
        reason=d.reason,
    )


def _transfer_expired(
    m: TransferMark, entry: DataFileEntry, now: datetime, source: str
) -> TransferExpired:
    return TransferExpired(
        envelope=Envelope(
            event_id=_event_id(f"expired/{m.transfer_id}/{m.expiry_time.isoformat()}"),
            occurred_at=now,
            source=source,
            correlation_id=entry.data_file_id,
            causation_id=entry.last_event_id,
        ),
        transfer_id=m.transfer_id,
        destination=m.destination,
        expiry_time=m.expiry_time,
        reason=NOT_TRANSFERRED,
    )


def _file_expired(
    entry: DataFileEntry, end: datetime, now: datetime, source: str
) -> DataFileExpired:
    return DataFileExpired(
        envelope=Envelope(
            event_id=_event_id(f"file-expired/{entry.data_file_id}"),
            occurred_at=now,
            source=source,
            correlation_id=entry.data_file_id,
            causation_id=entry.last_event_id,
        ),
        data_file_id=entry.data_file_id,
        expiry_time=end,
    )


def _envelope(name: str, d: Deletion, now: datetime, source: str) -> Envelope:
    return Envelope(
        event_id=_event_id(name),
        occurred_at=now,
        source=source,
        correlation_id=d.data_file_id,
        causation_id=d.causation_id,
    )


def _event_id(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))
