"""Where a path of a user's view is in its destination: date folders for a destination that
groups by date, and a file just uploaded that the read models have not caught up with yet.

Rules kept here: a date folder is the day (UTC) a transfer was queued, written with the
destination's ``date_format``; a file found in the ingest index is available by the same rule
as ``projections.portal``'s (stored, not arriving or fetching, queue time passed, not expired).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from bus.events.base import TransferStatus
from bus.templates.dates import DateFormat, DateFormatError, compile_format
from producers.ingest.core import unique_key
from producers.ingest.index import FileState
from producers.ingest.service import IngestService
from projections.portal import Available


@dataclass(frozen=True, slots=True)
class Place:
    """A path of the view as a place in its destination: ``target`` (a file or folder name),
    and for a destination grouped by date the ``day`` of its date folder, or every date folder
    (``folders``, at the destination itself); ``known`` is False for a date folder not there."""

    target: str
    day: date | None = None
    folders: tuple[str, ...] | None = None
    known: bool = True
    dated: bool = False


def day_format(pattern: str) -> DateFormat:
    """A destination's ``date_format`` compiled (``yyyyMMdd`` if it cannot be)."""
    try:
        return compile_format(pattern)
    except DateFormatError:  # refused when configured; a safe name rather than a crash
        return compile_format("yyyyMMdd")


_NOT_YET = frozenset({TransferStatus.INIT, TransferStatus.SCHE, TransferStatus.FETC})


def fresh(ingest: IngestService, destination: str, name: str, now: datetime) -> Available | None:
    """``name`` of ``destination`` as the ingest index knows it, if stored and available now
    (the rule of ``projections.portal``, applied to the index's own entries)."""
    entry = ingest.index.latest_file(unique_key(destination, name, None))
    if entry is None or entry.state is not FileState.STORED or entry.stored is None:
        return None
    stored = entry.stored
    for transfer in ingest.index.transfers_of(stored.data_file_id):
        if transfer.destination != destination or transfer.status in _NOT_YET:
            continue
        if transfer.queue_time > now or transfer.expiry_time <= now:
            continue
        return Available(
            transfer_id=transfer.transfer_id,
            target=name,
            status=transfer.status.value,
            data_file_id=stored.data_file_id,
            size=stored.size,
            guid=stored.guid,
            store=stored.store,
            adler32=stored.checksums.adler32,
            md5=stored.checksums.md5,
            stored_at=stored.envelope.occurred_at,
            queue_time=transfer.queue_time,
            priority=transfer.priority,
        )
    return None


__all__ = ["Place", "day_format", "fresh"]
