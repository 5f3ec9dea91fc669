"""Snapshots of the scheduler's state (``consumers.scheduler.snapshots``), on the pure core:
a snapshot taken anywhere in a generated history, encoded, decoded, restored and followed by
the rest of the history gives the state a full replay gives, and decides the same."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from bus.events.base import Event
from bus.events.datafiles import Checksums
from bus.events.movers import MoverHeartbeat, MoverStopped, TransferAbortRequested
from bus.events.orders import TransferOrdered
from bus.events.transfers import Fault, TransferQueued
from consumers.scheduler import snapshots
from consumers.scheduler.adapters import stored_file
from consumers.scheduler.core import SchedulerState, decide, evolve
from consumers.scheduler.lifecycle import FINISHED
from consumers.scheduler.placement import partition_of
from tests.scheduler.factories import (
    SETTINGS,
    T0,
    Scheduler,
    at,
    fail_running,
    queued,
)
from tests.scheduler.test_core_continental import regional, staged
from tests.scheduler.test_core_random import (
    DESTS,
    random_outcome,
    random_queued,
    random_world,
    start_ordered,
)

DUPLICATES = {"scheduler.requeueon": "$time1 > $time2"}


def _apply(state: SchedulerState, event: Event) -> None:
    """What the runner folds for a transfers-topic event (its stored file too)."""
    if isinstance(event, TransferQueued):
        file = stored_file(event)
        if file is not None and event.data_file_id not in state.files:
            state.files[event.data_file_id] = file
    evolve(state, event)


def history(seed: int, steps: int = 80) -> tuple[list[Event], list[Event], datetime]:
    """A seeded run of the core (queues, outcomes, failures, mover losses, operator requests,
    host switches, requeues, finished transfers): the configuration and movers' feed, the
    events of the transfers topic in log order, and the time it ended."""
    rng = random.Random(seed)
    s = random_world(lambda d: DUPLICATES if d == "d3" else {})
    now = T0
    for i in range(steps):
        now = now + timedelta(seconds=rng.choice((0, 1, 3, 10)))
        roll = rng.random()
        if roll < 0.3:
            event = random_queued(rng, i, now)
            # a target shared now and then (the duplicate rule of d3), a stored file each
            target = f"same-{i % 3}.bin" if rng.random() < 0.3 else event.target
            s.given(
                replace(
                    event,
                    target=target,
                    guid=f"g-{i}",
                    store="local",
                    location=f"/store/{i}",
                    checksums=Checksums(adler32=f"{i:08x}"),
                    metadata={"n": str(i)},
                )
            )
        else:
            random_outcome(rng, s, now, roll, (0.5, 0.65, 0.7))
        start_ordered(rng, s, now)
    feed: list[Event] = []
    movers: dict[str, Event] = {}
    transfers: list[Event] = []
    for ev in s.log:
        if isinstance(ev, MoverStopped | MoverHeartbeat):
            movers[ev.mover_id] = ev  # the movers feed gives the runner each one's last word
        elif type(ev).__module__ == "bus.events.config_changes":
            feed.append(ev)
        elif not isinstance(ev, TransferOrdered | TransferAbortRequested):
            transfers.append(ev)  # the orders and aborts go to other topics
    assert any(e.status in FINISHED for e in s.state.transfers.values())
    return feed + list(movers.values()), transfers, now


def fresh(feed: list[Event]) -> SchedulerState:
    """A state with the configuration and the movers' last word, as a rebuild starts."""
    state = SchedulerState()
    for ev in feed:
        evolve(state, ev)
    return state


def view(state: SchedulerState) -> dict[str, Any]:
    """Everything the state holds that decisions depend on (heap layouts aside)."""
    rts = state.destinations
    return {
        "transfers": dict(state.transfers),
        "summaries": {n: state.summary(n) for n in rts},
        "started": {n: rt.started for n, rt in rts.items()},
        "requests": {n: sorted(rt.requests) for n, rt in rts.items()},
        "sets": {
            n: (rt.running, rt.held, rt.failed, rt.followups, rt.orderable, rt.by_target)
            for n, rt in rts.items()
        },
        "files": state.files,
        "staged": state.staged,
        "file_refs": state.file_refs,
        "movers": state.movers,
        "mover_transfers": {m: t for m, t in state.mover_transfers.items() if t},
        "host_running": {h: n for h, n in state.host_running.items() if n},
    }


def through_snapshot(feed: list[Event], log: list[Event], k: int) -> SchedulerState:
    """The state after the first ``k`` events, snapshot, encoded in small chunks, decoded and
    restored onto a fresh configuration, then the rest of the log."""
    before = fresh(feed)
    for ev in log[:k]:
        _apply(before, ev)
    [snapshot] = snapshots.split(snapshots.capture(before, "t", {0: k}, 1, T0))
    records = snapshots.encode(snapshot, "snap-1", size=7)
    decoded = snapshots.decode(snapshots.decode_chunk(r) for r in records)
    assert decoded.offset == k
    state = fresh(feed)
    snapshots.restore(state, decoded)
    for ev in log[k:]:
        _apply(state, ev)
    return state


@pytest.mark.parametrize("seed", range(8))
def test_snapshot_plus_tail_is_the_full_replay(seed: int) -> None:
    """At any cut of a generated history, snapshot + tail == full replay, and both decide the
    same events at several later times."""
    feed, log, end = history(seed)
    full = fresh(feed)
    for ev in log:
        _apply(full, ev)
    rng = random.Random(seed)
    cuts = {0, len(log), *(rng.randrange(len(log)) for _ in range(4))}
    for k in sorted(cuts):
        state = through_snapshot(feed, log, k)
        assert view(state) == view(full), f"cut at {k} of {len(log)}"
    # deciding on each (and evolving what is decided) gives the same events, later too
    mirror = through_snapshot(feed, log, len(log) // 2)
    for later in (timedelta(0), timedelta(seconds=3), timedelta(minutes=10), timedelta(hours=3)):
        now = end + later
        for _ in range(10):
            ours, theirs = decide(mirror, SETTINGS, now), decide(full, SETTINGS, now)
            assert ours == theirs
            if not ours:
                break
            for ev in ours:
                evolve(mirror, ev)
                evolve(full, ev)
        assert view(mirror) == view(full)


def split_log(s: Scheduler) -> tuple[list[Event], list[Event]]:
    """A run's configuration and movers' feed, and its transfers-topic events in log order."""
    feed: list[Event] = []
    transfers: list[Event] = []
    for ev in s.log:
        if type(ev).__module__ == "bus.events.config_changes" or isinstance(
            ev, MoverStopped | MoverHeartbeat
        ):
            feed.append(ev)
        elif not isinstance(ev, TransferOrdered | TransferAbortRequested):
            transfers.append(ev)
    return feed, transfers


def test_a_regional_transfer_keeps_its_staged_copy_and_failures_across_a_snapshot() -> None:
    """Continental movers: a snapshot keeps which replicas hold each file and each transfer's
    failures on its regional group, so after a takeover t1 still falls back after its second
    regional failure and t2, staged, is still ordered to the region."""
    s = regional(staged("t1"), queued("t2"), staged("t2"))
    s.settle(T0)
    fail_running(s, at(seconds=1), fault=Fault.HOST, error="ConnectionLost")
    s.settle(at(seconds=2))
    feed, log = split_log(s)
    full = fresh(feed)
    for ev in log:
        _apply(full, ev)
    assert full.staged
    assert any(e.group_failures for e in full.transfers.values())
    for k in range(len(log) + 1):
        assert view(through_snapshot(feed, log, k)) == view(full), f"cut at {k} of {len(log)}"
    mirror = through_snapshot(feed, log, len(log))
    for now in (at(seconds=3), at(seconds=6), at(seconds=30)):
        ours, theirs = decide(mirror, SETTINGS, now), decide(full, SETTINGS, now)
        assert ours == theirs
        for ev in ours:
            evolve(mirror, ev)
            evolve(full, ev)


def test_a_snapshot_holds_the_partition_it_names_only() -> None:
    """Captured for one partition of two, a snapshot holds that partition's destinations'
    entries and summaries, and restored, nothing of the other."""
    feed, log, _ = history(3, steps=40)
    state = fresh(feed)
    for ev in log:
        _apply(state, ev)
    wanted = {partition_of(d, 2) for d in DESTS}
    captured = snapshots.capture(state, "t", dict.fromkeys(sorted(wanted), len(log)), 2, T0)
    taken = snapshots.split(captured)
    for snap in taken:
        names = {d.summary.name for d in snap.destinations}
        assert names == {d for d in DESTS if partition_of(d, 2) == snap.partition}
        assert {e.destination for e in snap.transfers} <= names
        assert {e.transfer_id for e in snap.transfers} == {
            t for t, e in state.transfers.items() if e.destination in names
        }


def test_a_record_of_another_schema_or_corrupt_is_refused() -> None:
    """A record whose fingerprint is not this schema's, a truncated one, or chunks missing
    raise ``SnapshotError`` (the runner then replays the partition)."""
    feed, log, _ = history(1, steps=30)
    state = fresh(feed)
    for ev in log:
        _apply(state, ev)
    [snap] = snapshots.split(snapshots.capture(state, "t", {0: len(log)}, 1, T0))
    records = snapshots.encode(snap, "s", size=2)
    assert len(records) > 1
    other = records[0][:2] + bytes(8) + records[0][10:]
    with pytest.raises(snapshots.SnapshotError, match="another schema"):
        snapshots.decode_chunk(other)
    with pytest.raises(snapshots.SnapshotError, match=r"truncated|corrupt"):
        snapshots.decode_chunk(records[0][: len(records[0]) // 2])
    with pytest.raises(snapshots.SnapshotError, match="missing"):
        snapshots.decode(snapshots.decode_chunk(r) for r in records[1:])
