"""The dedup state of acquisition, rebuilt from ``ecpds.acquisition`` and ``ecpds.datafiles``.

No local file: every runner reads both topics from the beginning at start (then follows them),
so the state survives restarts and a failover to another machine. Rules kept:

- one ``Known`` per dedup key (destination, target): ``FileDiscovered`` opens an attempt
  (``PENDING``), ``RetrievalSucceeded``/``RetrievalFailed`` close it; lookups are dict
  operations, the cost of a poll does not grow with the files already acquired;
- ``apply`` is idempotent and ignores stale events: the runner applies its own events at once
  and sees them again from the log, so an event older than the key's last one changes nothing;
- the datafiles topic closes an attempt whose outcome event was lost (a crash after the ingest
  stored the file): a ``DataFileStored`` of a file registered by ``acquisition/<host>`` marks
  its key acquired, a ``DataFileRegistrationFailed`` marks it failed (retriable).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bus.events import Event
from bus.events.acquisition import FileDiscovered, RetrievalFailed, RetrievalSucceeded
from bus.events.datafiles import (
    DataFileRegistered,
    DataFileRegistrationFailed,
    DataFileStored,
)
from producers.acquisition.core import Known, Status
from producers.ingest.core import ACQUISITION_REQUESTER

Key = tuple[str, str]  # destination, target
REQUESTER_PREFIX = ACQUISITION_REQUESTER


def requester(host_id: str) -> str:
    """The ``requested_by`` of files registered by the acquisition of ``host_id``."""
    return f"{REQUESTER_PREFIX}{host_id}"


class AcquisitionState:
    """Dedup keys and the latest attempt of each (see the module rules)."""

    def __init__(self) -> None:
        self.known: dict[Key, Known] = {}
        self._stamp: dict[Key, tuple[datetime, str]] = {}  # last applied (time, event id)
        self._by_path: dict[tuple[str, str], Key] = {}  # (destination, remote path) -> key
        self._by_file: dict[str, Key] = {}  # data file id -> key
        self.applied = 0

    def get(self, destination: str, target: str) -> Known | None:
        return self.known.get((destination, target))

    def _fresh(self, key: Key, event: Event, *, outcome: bool) -> bool:
        """Whether ``event`` is newer than what the key last applied."""
        envelope = event.envelope
        last = self._stamp.get(key)
        if last is not None:
            if envelope.event_id == last[1] or envelope.occurred_at < last[0]:
                return False
            # same microsecond: an outcome follows its discovery, never the reverse
            if envelope.occurred_at == last[0] and not outcome:
                return False
        self._stamp[key] = (envelope.occurred_at, envelope.event_id)
        return True

    def apply(self, event: Event) -> None:
        """Fold one event in (events of other types are ignored)."""
        self.applied += 1
        match event:
            case FileDiscovered():
                self._discovered(event)
            case RetrievalSucceeded():
                key = self._by_path.get((event.destination, event.path))
                if key is not None and self._fresh(key, event, outcome=True):
                    self._acquired(key, event.data_file_id)
            case RetrievalFailed():
                key = self._by_path.get((event.destination, event.path))
                if key is not None and self._fresh(key, event, outcome=True):
                    self.known[key] = replace(
                        self.known[key], status=Status.FAILED, retriable=event.retriable
                    )
            case DataFileRegistered(requested_by=str(by)) if by.startswith(REQUESTER_PREFIX):
                self._by_file[event.data_file_id] = (event.destination, event.target)
            case DataFileStored():
                key = self._by_file.get(event.data_file_id)
                known = self.known.get(key) if key is not None else None
                if key is not None and known is not None and known.status is Status.PENDING:
                    self._acquired(key, event.data_file_id)
            case DataFileRegistrationFailed():
                key = self._by_file.get(event.data_file_id)
                known = self.known.get(key) if key is not None else None
                if key is not None and known is not None and known.status is Status.PENDING:
                    self.known[key] = replace(known, status=Status.FAILED, retriable=True)
            case _:
                pass

    def _discovered(self, event: FileDiscovered) -> None:
        key = (event.destination, event.target or event.name)
        if not self._fresh(key, event, outcome=False):
            return
        previous = self.known.get(key)
        self._by_path[(event.destination, event.path)] = key
        self.known[key] = Known(
            host_id=event.host_id,
            path=event.path,
            size=event.size,
            mtime=event.modified_at,
            status=Status.PENDING,
            reason=event.reason,
            acquired_size=previous.acquired_size if previous else None,
            acquired_mtime=previous.acquired_mtime if previous else None,
            data_file_id=previous.data_file_id if previous else None,
        )

    def _acquired(self, key: Key, data_file_id: str) -> None:
        known = self.known[key]
        self.known[key] = replace(
            known,
            status=Status.ACQUIRED,
            acquired_size=known.size,
            acquired_mtime=known.mtime,
            data_file_id=data_file_id,
        )
