"""Given/when/then for the ingest index, the fold the ingest feed applies events with."""

from __future__ import annotations

from bus.events import Event
from bus.events.datafiles import Checksums, DataFileStored
from bus.events.transfers import TransferSucceeded, Verification
from producers.ingest.index import FileState, IngestIndex
from tests.ingest.test_core import env, queued, registered


def stored(dfid: str = "f1") -> DataFileStored:
    return DataFileStored(
        envelope=env(dfid), data_file_id=dfid, guid="g", store="local", location="g", size=1,
        checksums=Checksums(adler32="1"), duration_ms=1,
    )  # fmt: skip


def succeeded(tid: str) -> TransferSucceeded:
    return TransferSucceeded(
        envelope=env(), transfer_id=tid, destination="site-a", attempt=1, host_id="h",
        mover_id="m", remote_path="/x", bytes_sent=1, duration_ms=1, bytes_per_second=1.0,
        verification=Verification.SIZE,
    )  # fmt: skip


def summary(index: IngestIndex) -> tuple[object, ...]:
    return (
        {d: (e.state, tuple(e.transfers)) for d, e in index.files.items()},
        {t: e.status for t, e in index.transfers.items()},
        index.pending("site-a"),
        [e.registered.data_file_id for e in index.open_registrations()],
    )


def test_folding_the_same_events_twice_changes_nothing() -> None:
    """An event applied by the service and read back from the log leaves the index as once."""
    events: list[Event] = [registered("f1"), stored("f1"), queued("t1"), queued("t2")]
    events.append(succeeded("t1"))
    once, twice = IngestIndex(), IngestIndex()
    once.apply_all(events)
    twice.apply_all(events)
    twice.apply_all(events)
    assert summary(twice) == summary(once)
    assert once.pending("site-a") == 1
    assert once.files["f1"].state is FileState.STORED


def test_a_transfer_read_before_its_registration_is_attached_to_it() -> None:
    """The two topics are read side by side: a TransferQueued may come before its file."""
    index = IngestIndex()
    index.apply_all([queued("t1"), registered("f1")])
    assert [t.transfer_id for t in index.transfers_of("f1")] == ["t1"]
    assert [e.registered.data_file_id for e in index.open_registrations()] == ["f1"]
