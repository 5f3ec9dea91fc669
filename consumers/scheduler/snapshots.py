"""Snapshots of the scheduler's state, one per partition of ``ecpds.transfers``: what to keep,
how it is encoded, and how a state is rebuilt from one (pure: no clock, no Kafka).

Why: a worker rebuilds its state on every assignment. Replaying a partition from the beginning
costs ~15-30 us an event, about an hour at a week's retention; a snapshot plus the tail after
it costs what the state holds plus one snapshot interval of events
(``bench/scheduler_replay.py``).

What a snapshot of partition ``p`` holds (``capture``, then ``split``): every transfer entry
of the destinations of ``p`` the state still holds (pending, running, and finished ones the
core has not forgotten yet: an operator may requeue a delivered or failed transfer until its
lifetime passes, the duplicate rule weighs delivered ones, and a re-submission keeps the
attempt number: leaving them out would change decisions), each of those destinations'
summary (status, host in use, failures per host with their retry times, cycles, sleeps,
resets, overrides, versions) and when each mover last started an attempt there, the operator
requests not answered yet, the stored files of the entries and the regional replicas each was
pre-staged in (continental movers); plus the offset of ``p`` it covers. Everything else is
derived: running counts per destination and host, the heaps, timers (a regional destination's
staging wait is recomputed by the next decide), dirty set and per-mover sets are rebuilt by
``restore`` exactly as ``SchedulerState.restore`` does; configuration and heartbeats come
from their own feeds.

Rule kept here: a snapshot taken when the state has folded exactly the events of ``p`` before
its offset, restored onto the same configuration and followed by the events from that offset,
gives the state a replay of the whole partition gives (``tests/scheduler/test_snapshots.py``
checks it on generated histories: same entries, summaries, counters, requests, and the same
decisions). A snapshot is a cache of the log, never a fact: one that cannot be used (missing,
corrupt, another schema, another partition count) is ignored and the partition replayed.

Encoding: ``schemas/snapshots/ecpds.scheduler.PartitionSnapshot.avsc``, the events' framing
(``C3 01``, the CRC-64-AVRO fingerprint of the schema's parsing canonical form, the Avro body),
so ``schemas/`` alone decodes it and a changed schema is recognised as another version (and
replayed instead). It is not an event (no envelope), so it sits outside the flat event
catalogue, which mirrors one Python class per file. A snapshot is cut into chunks of at most
``CHUNK_ITEMS`` items, each a record of its own (a broker's default limit is 1 MB a record).
The compiled codec (``native/avro``) encodes and decodes it straight from and to the state's
frozen classes when ``bus.codec`` uses it (the fastavro path writes the same bytes, through
dicts, ~10x slower): a million entries are encoded in ~1 s and decoded in ~5 s.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from bus import codec
from bus.errors import DecodeError
from bus.events.base import DestinationStatus, Event, TransferStatus
from bus.events.datafiles import Checksums
from consumers.scheduler.lifecycle import ORDERABLE
from consumers.scheduler.placement import partition_of
from consumers.scheduler.state import (
    GONE,
    DestinationRuntime,
    DestinationSummary,
    Followup,
    HostFailure,
    SchedulerState,
    StoredFile,
    TransferEntry,
    index_target,
)

SCHEMA_NAME = "ecpds.scheduler.PartitionSnapshot"
SCHEMA_FILE = codec.SCHEMAS_DIR / "snapshots" / f"{SCHEMA_NAME}.avsc"
CHUNK_ITEMS = 2000  # entries (or summaries, files, requests) per record: ~0.4 MB at most

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_TRANSFER_STATUS = {s.value: s for s in TransferStatus}
_DESTINATION_STATUS = {s.value: s for s in DestinationStatus}
_FOLLOWUP = {f.value: f for f in Followup}
# statuses in which a new entry with no follow-up is in none of the runtime's sets (running,
# held, failed, follow-ups, per mover): ``restore`` skips ``_sets`` for them
_NO_SETS = frozenset({TransferStatus.DONE, TransferStatus.WAIT, TransferStatus.RETR})


class SnapshotError(DecodeError):
    """A snapshot that cannot be used (says why); the partition is replayed instead."""


# -- the schema ---------------------------------------------------------------------------------


def _expanded(path: Path) -> dict[str, Any]:
    """The schema with the shared named types of ``schemas/`` it refers to inlined (first use
    defines, later ones refer), logical types kept: the form the fingerprint is taken of."""
    defined: set[str] = set()

    def expand(node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            if "." in node and node not in defined:
                shared = json.loads((codec.SCHEMAS_DIR / f"{node}.avsc").read_text())
                return expand(shared, shared["namespace"])
            return node
        if isinstance(node, list):
            return [expand(branch, namespace) for branch in node]
        kind = node["type"]
        if kind in ("record", "enum"):
            space = node.get("namespace", namespace)
            full = node["name"] if "." in node["name"] else f"{space}.{node['name']}"
            defined.add(full)
            out = {k: v for k, v in node.items() if k not in ("name", "namespace")}
            out["name"] = full
            if kind == "record":
                out["fields"] = [{**f, "type": expand(f["type"], space)} for f in node["fields"]]
            return out
        if kind == "array":
            return {**node, "items": expand(node["items"], namespace)}
        if kind == "map":
            return {**node, "values": expand(node["values"], namespace)}
        return node

    raw = json.loads(path.read_text())
    return dict(expand(raw, raw["namespace"]))


def _strip_logical(node: Any) -> Any:
    # converted here, as bus.codec does: fastavro's logical path is several times slower
    if isinstance(node, list):
        return [_strip_logical(n) for n in node]
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    return node


_SCHEMA = _expanded(SCHEMA_FILE)
FINGERPRINT = codec.fingerprint(to_parsing_canonical_form(_SCHEMA))
_HEADER = codec.MARKER + FINGERPRINT
_PARSED = parse_schema(_strip_logical(_SCHEMA))


# -- what is kept -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DestinationImage:
    """One destination's part of a snapshot."""

    summary: DestinationSummary
    started: Mapping[str, datetime]


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The state of one partition of the transfers topic up to ``offset`` (not included)."""

    topic: str
    partition: int
    partitions: int
    offset: int
    taken_at: datetime
    transfers: Sequence[TransferEntry] = ()
    destinations: Sequence[DestinationImage] = ()
    requests: Sequence[Event] = ()
    files: Sequence[StoredFile] = ()
    staged: Sequence[Staged] = ()
    snapshot_id: str = field(default="")


@dataclass(frozen=True, slots=True, kw_only=True)
class Staged:
    """The regional store replicas a data file was pre-staged in (``DataFileStaged``)."""

    data_file_id: str
    stores: Sequence[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Captured:
    """The state of the owned partitions at one instant, as references (``capture``)."""

    topic: str
    offsets: Mapping[int, int]
    partitions: int
    taken_at: datetime
    transfers: Sequence[TransferEntry]
    destinations: Sequence[tuple[DestinationImage, Sequence[Event]]]
    files: Mapping[str, StoredFile]
    staged: Mapping[str, frozenset[str]]


def capture(
    state: SchedulerState,
    topic: str,
    offsets: Mapping[int, int],
    partitions: int,
    now: datetime,
) -> Captured:
    """The state of the partitions ``offsets`` names (partition -> first offset not folded in
    ``state``), as it is now. Cheap and synchronous (copies of the containers, made at C
    speed: ~1 ms for 50,000 entries): entries, summaries and files are frozen, so ``state``
    may change as soon as this returns; ``split`` does the rest, anywhere."""
    return Captured(
        topic=topic,
        offsets=dict(offsets),
        partitions=partitions,
        taken_at=now,
        transfers=list(state.transfers.values()),
        destinations=[
            (DestinationImage(rt.summary, dict(rt.started)), list(rt.requests.values()))
            for rt in state.destinations.values()
        ],
        files=dict(state.files),
        staged=dict(state.staged),
    )


def split(captured: Captured) -> list[Snapshot]:
    """One snapshot per partition of a capture (its destinations' entries, summaries,
    requests and files). Reads nothing but the capture: it may run in another thread."""
    wanted, partitions = set(captured.offsets), captured.partitions
    where: dict[str, int] = {}  # destination -> partition (one hash per destination)
    transfers: dict[int, list[TransferEntry]] = {p: [] for p in wanted}
    for entry in captured.transfers:
        p = where.get(entry.destination)
        if p is None:
            p = where[entry.destination] = partition_of(entry.destination, partitions)
        if p in wanted:
            transfers[p].append(entry)
    destinations: dict[int, list[DestinationImage]] = {p: [] for p in wanted}
    requests: dict[int, list[Event]] = {p: [] for p in wanted}
    for image, pending in captured.destinations:
        name = image.summary.name
        p = where[name] if name in where else partition_of(name, partitions)
        if p in wanted:
            destinations[p].append(image)
            requests[p].extend(pending)
    out = []
    for p in sorted(wanted):
        ids = sorted({e.data_file_id for e in transfers[p]})
        files = [captured.files[d] for d in ids if d in captured.files]
        staged = [
            Staged(data_file_id=d, stores=sorted(captured.staged[d]))
            for d in ids
            if d in captured.staged
        ]
        out.append(
            Snapshot(
                topic=captured.topic,
                partition=p,
                partitions=partitions,
                offset=captured.offsets[p],
                taken_at=captured.taken_at,
                transfers=transfers[p],
                destinations=destinations[p],
                requests=requests[p],
                files=files,
                staged=staged,
            )
        )
    return out


def restore(state: SchedulerState, snapshot: Snapshot) -> None:
    """Fold a snapshot into ``state`` (configuration and heartbeats already in it; other
    partitions' snapshots may be too): entries, summaries, requests and files come back, and
    every index is rebuilt as ``SchedulerState.restore`` does (the running counts from the
    entries, the heaps whole, every destination dirty so the next decide visits it)."""
    for image in snapshot.destinations:
        rt = state.runtime(image.summary.name)
        rt.summary = image.summary  # the running counts are recomputed from the entries below
        rt.started.update(image.started)
        for mover, at in image.started.items():
            state.movers[mover] = max(state.movers.get(mover, GONE), at)
        state.dirty.add(rt.name)
    for file in snapshot.files:
        state.files[file.data_file_id] = file
    for copies in snapshot.staged:
        state.staged[copies.data_file_id] = frozenset(copies.stores)
    touched: dict[str, DestinationRuntime] = {}
    transfers, refs, none = state.transfers, state.file_refs, Followup.NONE
    for entry in snapshot.transfers:  # the hot loop of a takeover: locals, no calls it can skip
        tid, status = entry.transfer_id, entry.status
        transfers[tid] = entry
        refs[entry.data_file_id] = refs.get(entry.data_file_id, 0) + 1
        here = touched.get(entry.destination)
        if here is None:
            here = touched[entry.destination] = state.runtime(entry.destination)
        if status in ORDERABLE:
            here.orderable += 1
            here.delayed.append((entry.queue_time, tid))  # decide moves the due ones to ready
        here.expiry.append((entry.expiry_time, tid))
        if status not in _NO_SETS or entry.followup is not none:
            state._sets(here, None, entry)  # what ``_sets`` does for a new entry of the others
        if here.by_target is not None:
            index_target(here.by_target, entry.target, tid)
    for name in touched:
        rt = state.destinations[name]
        heapq.heapify(rt.delayed)
        heapq.heapify(rt.expiry)
        state.dirty.add(name)
    for request in snapshot.requests:
        rt = state.runtime(request.destination)  # type: ignore[attr-defined]
        rt.requests[request.envelope.event_id] = request
        state.dirty.add(rt.name)


# -- encoding -----------------------------------------------------------------------------------


def _us(t: datetime) -> int:
    return (t - _EPOCH) // _US


def _us_or_none(t: datetime | None) -> int | None:
    return None if t is None else (t - _EPOCH) // _US


def _time(v: int) -> datetime:
    return _EPOCH + _US * v


def _time_or_none(v: int | None) -> datetime | None:
    return None if v is None else _EPOCH + _US * v


def _entry_out(e: TransferEntry) -> dict[str, Any]:
    return {
        "transfer_id": e.transfer_id,
        "destination": e.destination,
        "data_file_id": e.data_file_id,
        "target": e.target,
        "size": e.size,
        "status": e.status.value,
        "priority": e.priority,
        "queue_time": _us(e.queue_time),
        "expiry_time": _us(e.expiry_time),
        "scheduled_time": _us_or_none(e.scheduled_time),
        "file_instance": e.file_instance,
        "attempt": e.attempt,
        "host_id": e.host_id,
        "transfer_group": e.transfer_group,
        "group_failures": e.group_failures,
        "mover_id": e.mover_id,
        "ordered_at": _us_or_none(e.ordered_at),
        "unsettled_since": _us_or_none(e.unsettled_since),
        "start_count": e.start_count,
        "requeue_count": e.requeue_count,
        "delayed_at": _us_or_none(e.delayed_at),
        "followup": e.followup.value,
        "reason": e.reason,
        "last_event_id": e.last_event_id,
        "version": e.version,
    }


def _entry_in(d: Mapping[str, Any]) -> TransferEntry:
    return TransferEntry(
        transfer_id=d["transfer_id"],
        destination=d["destination"],
        data_file_id=d["data_file_id"],
        target=d["target"],
        size=d["size"],
        status=_TRANSFER_STATUS[d["status"]],
        priority=d["priority"],
        queue_time=_time(d["queue_time"]),
        expiry_time=_time(d["expiry_time"]),
        scheduled_time=_time_or_none(d["scheduled_time"]),
        file_instance=d["file_instance"],
        attempt=d["attempt"],
        host_id=d["host_id"],
        transfer_group=d["transfer_group"],
        group_failures=d["group_failures"],
        mover_id=d["mover_id"],
        ordered_at=_time_or_none(d["ordered_at"]),
        unsettled_since=_time_or_none(d["unsettled_since"]),
        start_count=d["start_count"],
        requeue_count=d["requeue_count"],
        delayed_at=_time_or_none(d["delayed_at"]),
        followup=_FOLLOWUP[d["followup"]],
        reason=d["reason"],
        last_event_id=d["last_event_id"],
        version=d["version"],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationRow:
    """A destination as the schema's ``Destination`` record has it (the compiled codec fills
    this class's slots; ``DestinationSummary`` has one field more, derived)."""

    name: str
    status: DestinationStatus
    status_reason: str
    current_host: str | None
    announced_host: str | None
    switch_reason: str
    failures: Mapping[str, HostFailure]
    cycle: int
    last_error: str
    sleep_until: datetime | None
    moved_at: datetime | None
    exhausted: bool
    reset_time: datetime | None
    last_ok: str | None
    recovered_at: datetime | None
    restarted: bool
    last_delivered: datetime | None
    last_ko: str | None
    deactivated: Sequence[str]
    host_priority: Mapping[str, int]
    version: int
    movers_started: Mapping[str, datetime]


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One record of a snapshot, as the schema has it (entries and files are the state's own
    frozen classes: the compiled codec reads and fills their slots directly)."""

    snapshot_id: str
    topic: str
    partition: int
    partitions: int
    offset: int
    taken_at: datetime
    chunk: int
    chunks: int
    transfers: Sequence[TransferEntry]
    destinations: Sequence[DestinationRow]
    requests: Sequence[bytes]
    files: Sequence[StoredFile]
    staged: Sequence[Staged]


def _row(image: DestinationImage) -> DestinationRow:
    s = image.summary
    return DestinationRow(
        name=s.name,
        status=s.status,
        status_reason=s.status_reason,
        current_host=s.current_host,
        announced_host=s.announced_host,
        switch_reason=s.switch_reason,
        failures=s.failures,
        cycle=s.cycle,
        last_error=s.last_error,
        sleep_until=s.sleep_until,
        moved_at=s.moved_at,
        exhausted=s.exhausted,
        reset_time=s.reset_time,
        last_ok=s.last_ok,
        recovered_at=s.recovered_at,
        restarted=s.restarted,
        last_delivered=s.last_delivered,
        last_ko=s.last_ko,
        deactivated=sorted(s.deactivated),
        host_priority=s.host_priority,
        version=s.version,
        movers_started=image.started,
    )


def _image(r: DestinationRow) -> DestinationImage:
    summary = DestinationSummary(
        name=r.name,
        status=r.status,
        status_reason=r.status_reason,
        current_host=r.current_host,
        announced_host=r.announced_host,
        switch_reason=r.switch_reason,
        failures=dict(r.failures),
        cycle=r.cycle,
        last_error=r.last_error,
        sleep_until=r.sleep_until,
        moved_at=r.moved_at,
        exhausted=r.exhausted,
        reset_time=r.reset_time,
        last_ok=r.last_ok,
        recovered_at=r.recovered_at,
        restarted=r.restarted,
        last_delivered=r.last_delivered,
        last_ko=r.last_ko,
        deactivated=frozenset(r.deactivated),
        host_priority=dict(r.host_priority),
        version=r.version,
    )
    return DestinationImage(summary, dict(r.movers_started))


# the pure-Python path (fastavro): dicts in and out, as bus.codec's converters do


def _chunk_out(c: Chunk) -> dict[str, Any]:
    return {
        "snapshot_id": c.snapshot_id,
        "topic": c.topic,
        "partition": c.partition,
        "partitions": c.partitions,
        "offset": c.offset,
        "taken_at": _us(c.taken_at),
        "chunk": c.chunk,
        "chunks": c.chunks,
        "transfers": [_entry_out(e) for e in c.transfers],
        "destinations": [_destination_out(d) for d in c.destinations],
        "requests": list(c.requests),
        "files": [_file_out(f) for f in c.files],
        "staged": [{"data_file_id": g.data_file_id, "stores": list(g.stores)} for g in c.staged],
    }


def _chunk_in(d: Mapping[str, Any]) -> Chunk:
    return Chunk(
        snapshot_id=d["snapshot_id"],
        topic=d["topic"],
        partition=d["partition"],
        partitions=d["partitions"],
        offset=d["offset"],
        taken_at=_time(d["taken_at"]),
        chunk=d["chunk"],
        chunks=d["chunks"],
        transfers=[_entry_in(e) for e in d["transfers"]],
        destinations=[_destination_in(r) for r in d["destinations"]],
        requests=list(d["requests"]),
        files=[_file_in(f) for f in d["files"]],
        staged=[
            Staged(data_file_id=g["data_file_id"], stores=list(g["stores"])) for g in d["staged"]
        ],
    )


def _destination_out(r: DestinationRow) -> dict[str, Any]:
    return {
        "name": r.name,
        "status": r.status.value,
        "status_reason": r.status_reason,
        "current_host": r.current_host,
        "announced_host": r.announced_host,
        "switch_reason": r.switch_reason,
        "failures": {
            h: {"count": f.count, "last_at": _us(f.last_at), "next_try": _us(f.next_try)}
            for h, f in r.failures.items()
        },
        "cycle": r.cycle,
        "last_error": r.last_error,
        "sleep_until": _us_or_none(r.sleep_until),
        "moved_at": _us_or_none(r.moved_at),
        "exhausted": r.exhausted,
        "reset_time": _us_or_none(r.reset_time),
        "last_ok": r.last_ok,
        "recovered_at": _us_or_none(r.recovered_at),
        "restarted": r.restarted,
        "last_delivered": _us_or_none(r.last_delivered),
        "last_ko": r.last_ko,
        "deactivated": list(r.deactivated),
        "host_priority": dict(r.host_priority),
        "version": r.version,
        "movers_started": {m: _us(t) for m, t in r.movers_started.items()},
    }


def _destination_in(d: Mapping[str, Any]) -> DestinationRow:
    return DestinationRow(
        name=d["name"],
        status=_DESTINATION_STATUS[d["status"]],
        status_reason=d["status_reason"],
        current_host=d["current_host"],
        announced_host=d["announced_host"],
        switch_reason=d["switch_reason"],
        failures={
            h: HostFailure(f["count"], _time(f["last_at"]), _time(f["next_try"]))
            for h, f in d["failures"].items()
        },
        cycle=d["cycle"],
        last_error=d["last_error"],
        sleep_until=_time_or_none(d["sleep_until"]),
        moved_at=_time_or_none(d["moved_at"]),
        exhausted=d["exhausted"],
        reset_time=_time_or_none(d["reset_time"]),
        last_ok=d["last_ok"],
        recovered_at=_time_or_none(d["recovered_at"]),
        restarted=d["restarted"],
        last_delivered=_time_or_none(d["last_delivered"]),
        last_ko=d["last_ko"],
        deactivated=list(d["deactivated"]),
        host_priority=dict(d["host_priority"]),
        version=d["version"],
        movers_started={m: _time(t) for m, t in d["movers_started"].items()},
    )


def _file_out(f: StoredFile) -> dict[str, Any]:
    c = f.checksums
    return {
        "data_file_id": f.data_file_id,
        "guid": f.guid,
        "store": f.store,
        "location": f.location,
        "checksums": {"adler32": c.adler32, "md5": c.md5, "sha512": c.sha512},
        "original": f.original,
        "metadata": dict(f.metadata),
    }


def _file_in(d: Mapping[str, Any]) -> StoredFile:
    c = d["checksums"]
    return StoredFile(
        data_file_id=d["data_file_id"],
        guid=d["guid"],
        store=d["store"],
        location=d["location"],
        checksums=Checksums(adler32=c["adler32"], md5=c["md5"], sha512=c["sha512"]),
        original=d["original"],
        metadata=dict(d["metadata"]),
    )


# the compiled path (native/avro, when bus.codec uses it): the same bytes, no dicts


def _compiled() -> Any:
    """The compiled codec of the snapshot record, or None (the fastavro path then does all):
    used exactly when ``bus.codec`` uses its own (``ECPDS_CODEC``, the module installed)."""
    if codec.CATALOGUE.native is None:
        return None
    import ecpds_avro  # installed: bus.codec compiled its catalogue with it

    classes = {
        SCHEMA_NAME: Chunk,
        "ecpds.scheduler.Entry": TransferEntry,
        "ecpds.scheduler.Followup": Followup,
        "ecpds.scheduler.Destination": DestinationRow,
        "ecpds.scheduler.HostFailure": HostFailure,
        "ecpds.scheduler.StoredFile": StoredFile,
        "ecpds.scheduler.Staged": Staged,
        "ecpds.TransferStatus": TransferStatus,
        "ecpds.DestinationStatus": DestinationStatus,
        "ecpds.datafiles.Checksums": Checksums,
    }
    try:
        return ecpds_avro.compile_codec(
            [ecpds_avro.EventSchema(Chunk, FINGERPRINT, _SCHEMA)], classes, SnapshotError
        )
    except ecpds_avro.Unsupported:
        return None


_NATIVE = _compiled()


def chunk_count(snapshot: Snapshot, size: int = CHUNK_ITEMS) -> int:
    """How many records ``encode`` cuts the snapshot into."""
    longest = max(
        len(snapshot.transfers),
        len(snapshot.destinations),
        len(snapshot.requests),
        len(snapshot.files),
        len(snapshot.staged),
    )
    return max(1, -(-longest // size))


def encode_chunk(
    snapshot: Snapshot, snapshot_id: str, chunk: int, size: int = CHUNK_ITEMS
) -> bytes:
    """Record ``chunk`` of the snapshot (chunk ``i`` holds the ``i``-th slice of each list)."""
    lo, hi = chunk * size, (chunk + 1) * size
    record = Chunk(
        snapshot_id=snapshot_id,
        topic=snapshot.topic,
        partition=snapshot.partition,
        partitions=snapshot.partitions,
        offset=snapshot.offset,
        taken_at=snapshot.taken_at,
        chunk=chunk,
        chunks=chunk_count(snapshot, size),
        transfers=snapshot.transfers[lo:hi],
        destinations=[_row(d) for d in snapshot.destinations[lo:hi]],
        requests=[codec.encode(r) for r in snapshot.requests[lo:hi]],
        files=snapshot.files[lo:hi],
        staged=snapshot.staged[lo:hi],
    )
    if _NATIVE is not None:
        return bytes(_NATIVE.encode(record))
    out = BytesIO()
    out.write(_HEADER)
    schemaless_writer(out, _PARSED, _chunk_out(record))
    return out.getvalue()


def encode(snapshot: Snapshot, snapshot_id: str, size: int = CHUNK_ITEMS) -> list[bytes]:
    """The records of a snapshot, chunk 0 first."""
    count = chunk_count(snapshot, size)
    return [encode_chunk(snapshot, snapshot_id, i, size) for i in range(count)]


def decode_chunk(data: bytes) -> Chunk:
    """One record (``SnapshotError`` if it is not one this schema reads)."""
    if len(data) < codec.HEADER_SIZE or data[:2] != codec.MARKER:
        raise SnapshotError("not an Avro single-object record")
    if bytes(data[2 : codec.HEADER_SIZE]) != FINGERPRINT:
        raise SnapshotError(
            f"written with another schema (fingerprint {bytes(data[2:10]).hex()},"
            f" this reader has {FINGERPRINT.hex()})"
        )
    if _NATIVE is not None:
        decoded = _NATIVE.decode(data)
        if isinstance(decoded, Chunk):
            return decoded
        raise SnapshotError("not a snapshot record")
    body = BytesIO(data)
    body.seek(codec.HEADER_SIZE)
    try:
        record = schemaless_reader(body, _PARSED, None)
        if body.tell() != len(data) or not isinstance(record, dict):
            raise SnapshotError(f"corrupt record ({len(data) - body.tell()} bytes after it)")
        return _chunk_in(record)
    except (EOFError, StopIteration, ValueError, IndexError, KeyError, TypeError) as error:
        # UnicodeDecodeError is a ValueError
        raise SnapshotError(f"corrupt record ({error!r})") from error


def decode(records: Iterable[Chunk]) -> Snapshot:
    """The snapshot made of its decoded chunks (``SnapshotError`` if they do not make one)."""
    chunks = sorted(records, key=lambda r: r.chunk)
    if not chunks:
        raise SnapshotError("no chunk")
    head = chunks[0]
    if [r.chunk for r in chunks] != list(range(head.chunks)) or any(
        r.snapshot_id != head.snapshot_id or r.offset != head.offset for r in chunks
    ):
        raise SnapshotError("chunks missing or mixed")
    try:
        requests = [codec.decode(b) for r in chunks for b in r.requests]
    except DecodeError as error:
        raise SnapshotError(f"corrupt request ({error})") from error
    return Snapshot(
        topic=head.topic,
        partition=head.partition,
        partitions=head.partitions,
        offset=head.offset,
        taken_at=head.taken_at,
        transfers=[e for r in chunks for e in r.transfers],
        destinations=[_image(d) for r in chunks for d in r.destinations],
        requests=requests,
        files=[f for r in chunks for f in r.files],
        staged=[g for r in chunks for g in r.staged],
        snapshot_id=head.snapshot_id,
    )


__all__ = [
    "CHUNK_ITEMS",
    "FINGERPRINT",
    "SCHEMA_FILE",
    "Captured",
    "Chunk",
    "DestinationImage",
    "DestinationRow",
    "Snapshot",
    "SnapshotError",
    "Staged",
    "capture",
    "chunk_count",
    "decode",
    "decode_chunk",
    "encode",
    "encode_chunk",
    "restore",
    "split",
]
