"""The ingest index: the state ``decide`` reads, rebuilt from ``ecpds.datafiles`` and
``ecpds.transfers`` (see ``producers.ingest.follower`` for the reading).

Rules kept here:

- every lookup and every update is a dict operation: the cost of a submission does not grow
  with the number of files already registered (no scans);
- ``apply`` is idempotent: the service applies its own events at once (so a concurrent
  duplicate is refused before the first one is even published) and sees them again when the
  follower reads them back from the log; a second ``TransferQueued`` of a known transfer, or a
  second registration of a known data file, changes nothing;
- a uniqueness key stays taken while its latest data file is live; a registration that failed
  or was refused mid-stream, or a file that expired, frees it (the next put is not a
  duplicate) while the instance count keeps growing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bus.events import Event
from bus.events.base import TransferStatus
from bus.events.datafiles import (
    DataFileExpired,
    DataFileRegistered,
    DataFileRegistrationFailed,
    DataFileRegistrationRefused,
    DataFileStored,
)
from bus.events.transfers import (
    TransferAbandoned,
    TransferDownloaded,
    TransferExpired,
    TransferFailed,
    TransferHeld,
    TransferInterrupted,
    TransferPriorityChanged,
    TransferQueued,
    TransferReleased,
    TransferRequeued,
    TransferScheduled,
    TransferStarted,
    TransferStopped,
    TransferSucceeded,
)
from producers.ingest.core import UniqueKey, unique_key

S = TransferStatus
FINISHED = frozenset({S.DONE, S.FAIL, S.STOP})

# the status each transfer event leaves its transfer in
_STATUS: dict[type[Event], TransferStatus] = {
    TransferScheduled: S.EXEC,
    TransferStarted: S.EXEC,
    TransferSucceeded: S.DONE,
    TransferDownloaded: S.DONE,
    TransferFailed: S.RETR,
    TransferRequeued: S.RETR,
    TransferHeld: S.HOLD,
    TransferReleased: S.WAIT,
    TransferStopped: S.STOP,
    TransferInterrupted: S.INTR,
    TransferExpired: S.FAIL,
    TransferAbandoned: S.FAIL,
}


class FileState(StrEnum):
    """Where a data file's registration stands."""

    REGISTERED = "registered"  # bytes not durable yet
    STORED = "stored"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(slots=True)
class TransferEntry:
    """What the index keeps of one transfer."""

    transfer_id: str
    destination: str
    data_file_id: str
    status: TransferStatus
    priority: int
    queue_time: datetime
    expiry_time: datetime
    alias_of: str | None


@dataclass(slots=True)
class FileEntry:
    """What the index keeps of one data file."""

    registered: DataFileRegistered
    state: FileState = FileState.REGISTERED
    stored: DataFileStored | None = None
    failure: str | None = None
    transfers: list[str] = field(default_factory=list)

    @property
    def key(self) -> UniqueKey:
        r = self.registered
        return unique_key(r.destination, r.target, r.version)


class IngestIndex:
    """Uniqueness keys, data files, transfers and pending counts (see the module rules)."""

    def __init__(self) -> None:
        self.files: dict[str, FileEntry] = {}
        self.transfers: dict[str, TransferEntry] = {}
        self._latest: dict[UniqueKey, str] = {}  # key -> data file id of its latest instance
        self._pending: dict[str, int] = {}
        self._open: dict[str, None] = {}  # registered, not yet stored/failed (ordered set)
        # transfers read before their file's registration: the two topics are read side by
        # side, so a rebuild may meet a TransferQueued before its DataFileRegistered
        self._early: dict[str, list[str]] = {}
        self._opening: dict[str, int] = {}  # open registrations per destination
        self.applied = 0

    # -- IndexView ------------------------------------------------------------------------

    def latest_instance(self, key: UniqueKey) -> tuple[int, bool] | None:
        dfid = self._latest.get(key)
        if dfid is None:
            return None
        entry = self.files[dfid]
        live = entry.state in (FileState.REGISTERED, FileState.STORED)
        return entry.registered.file_instance, live

    def pending(self, destination: str) -> int:
        # registrations still streaming count too: concurrent puts cannot overshoot max_pending
        return self._pending.get(destination, 0) + self._opening.get(destination, 0)

    # -- queries --------------------------------------------------------------------------

    def file(self, data_file_id: str) -> FileEntry | None:
        return self.files.get(data_file_id)

    def latest_file(self, key: UniqueKey) -> FileEntry | None:
        """The latest data file registered under ``key``, live or not."""
        dfid = self._latest.get(key)
        return self.files[dfid] if dfid is not None else None

    def transfers_of(self, data_file_id: str) -> list[TransferEntry]:
        entry = self.files.get(data_file_id)
        if entry is None:
            return []
        return [self.transfers[t] for t in entry.transfers if t in self.transfers]

    def open_registrations(self) -> list[FileEntry]:
        """Registrations whose bytes never became durable (nor were marked failed)."""
        return [self.files[d] for d in self._open]

    def stored_without_transfers(self) -> list[FileEntry]:
        """Stored files with no transfer queued: a crash between Stored and the queueing.

        A scan, but only run once at start, never per submission."""
        return [e for e in self.files.values() if e.state is FileState.STORED and not e.transfers]

    # -- evolve ---------------------------------------------------------------------------

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:
        """Fold one event in (idempotent; events of other types are ignored)."""
        self.applied += 1
        match event:
            case DataFileRegistered():
                self._registered(event)
            case DataFileStored():
                entry = self.files.get(event.data_file_id)
                if entry is not None and entry.state is FileState.REGISTERED:
                    entry.state, entry.stored = FileState.STORED, event
                    self._close(entry)
            case DataFileRegistrationFailed():
                self._failed(event.data_file_id, event.message)
            case DataFileRegistrationRefused(data_file_id=str(dfid)):
                self._failed(dfid, event.message)
            case DataFileExpired():
                entry = self.files.get(event.data_file_id)
                if entry is not None and entry.state is not FileState.FAILED:
                    self._close(entry)
                    entry.state = FileState.EXPIRED
            case TransferQueued():
                self._queued(event)
            case TransferPriorityChanged():
                if (t := self.transfers.get(event.transfer_id)) is not None:
                    t.priority = event.new_priority
            case _:
                status = _STATUS.get(type(event))
                transfer_id = getattr(event, "transfer_id", None)
                if status is not None and transfer_id is not None:
                    self._move(transfer_id, status)
                    if isinstance(event, TransferRequeued):
                        self.transfers[transfer_id].queue_time = event.queue_time

    def _registered(self, event: DataFileRegistered) -> None:
        if event.data_file_id in self.files:
            return
        entry = FileEntry(event, transfers=self._early.pop(event.data_file_id, []))
        self.files[event.data_file_id] = entry
        self._open[event.data_file_id] = None
        self._opening[event.destination] = self._opening.get(event.destination, 0) + 1
        previous = self._latest.get(entry.key)
        if previous is None or self.files[previous].registered.file_instance <= (
            event.file_instance
        ):
            self._latest[entry.key] = event.data_file_id

    def _failed(self, data_file_id: str, message: str) -> None:
        entry = self.files.get(data_file_id)
        if entry is not None and entry.state is FileState.REGISTERED:
            self._close(entry)
            entry.state, entry.failure = FileState.FAILED, message

    def _close(self, entry: FileEntry) -> None:
        """The registration is no longer open (stored, failed or expired); once only."""
        dfid = entry.registered.data_file_id
        if dfid in self._open:
            del self._open[dfid]
            destination = entry.registered.destination
            self._opening[destination] = self._opening.get(destination, 1) - 1

    def _queued(self, event: TransferQueued) -> None:
        if event.transfer_id in self.transfers:
            return
        self.transfers[event.transfer_id] = TransferEntry(
            transfer_id=event.transfer_id,
            destination=event.destination,
            data_file_id=event.data_file_id,
            status=event.status,
            priority=event.priority,
            queue_time=event.queue_time,
            expiry_time=event.expiry_time,
            alias_of=event.alias_of,
        )
        if event.status not in FINISHED:
            self._pending[event.destination] = self._pending.get(event.destination, 0) + 1
        entry = self.files.get(event.data_file_id)
        if entry is not None:
            entry.transfers.append(event.transfer_id)
        else:
            self._early.setdefault(event.data_file_id, []).append(event.transfer_id)

    def _move(self, transfer_id: str, status: TransferStatus) -> None:
        t = self.transfers.get(transfer_id)
        if t is None:
            return
        was, now = t.status not in FINISHED, status not in FINISHED
        t.status = status
        if was != now:
            self._pending[t.destination] = self._pending.get(t.destination, 0) + (1 if now else -1)
