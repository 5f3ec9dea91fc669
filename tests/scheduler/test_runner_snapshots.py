"""Takeover from snapshots against a real Kafka: a worker that takes the partitions over from
the snapshots its predecessor wrote on leaving (plus the tail after them) holds the state a
full replay gives and decides the same; one whose snapshots are corrupt replays whole; a
snapshot whose write was cut short leaves the previous one readable."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from bus.events.base import Event
from bus.events.movers import MoverHeartbeat, MoverStopped
from bus.events.transfers import Fault, TransferQueued, TransferRequeued, TransferSucceeded
from bus.feeds import replay_from
from bus.settings import Settings
from bus.topics import apply_topics
from consumers.scheduler import snapshots
from consumers.scheduler.adapters import Topics, stored_file
from consumers.scheduler.core import SchedulerState, decide, evolve
from consumers.scheduler.runner import SchedulerRunner
from consumers.scheduler.snapshot_store import (
    CHUNKS,
    OFFSET,
    SNAPSHOT_ID,
    SnapshotStore,
)
from tests.scheduler.factories import env, failed, started, succeeded
from tests.scheduler.test_runner import GROUP, World, new_world, now
from tests.scheduler.test_snapshots import fresh, history, view

pytestmark = pytest.mark.kafka

PARTITIONS = 2  # of the transfers topic new_world makes


@dataclass
class Handover:
    """A world whose first worker ran a little history and left cleanly (snapshots written)."""

    world: World
    settings: Settings
    first: SchedulerRunner


async def _events(kafka: str, topic: str, partitions: int) -> list[Event]:
    got: list[Event] = []
    starts = {TopicPartition(topic, p): 0 for p in range(partitions)}
    await replay_from(kafka, starts, got.append)
    return got


async def full_replay(kafka: str, w: World) -> SchedulerState:
    """The state a worker without snapshots rebuilds: configuration, the movers' last word,
    every event of the transfers partitions from the beginning."""
    state = SchedulerState()
    for event in await _events(kafka, w.topics.config, 1):
        evolve(state, event)
    movers: dict[str, Event] = {}
    for event in await _events(kafka, w.topics.movers, PARTITIONS):
        if isinstance(event, MoverHeartbeat | MoverStopped):
            movers[event.mover_id] = event
    for event in movers.values():
        evolve(state, event)
    for event in await _events(kafka, w.topics.transfers, PARTITIONS):
        if isinstance(event, TransferQueued):
            file = stored_file(event)
            if file is not None and event.data_file_id not in state.files:
                state.files[event.data_file_id] = file
        evolve(state, event)
    return state


@pytest.fixture(scope="module")
async def handover(kafka: str, settings: Settings) -> AsyncIterator[Handover]:
    """Two destinations: one delivered, one whose host failed (retry in 10 minutes), one
    running; the first worker snapshots after every event and leaves cleanly."""
    async with new_world(kafka) as world:
        w = replace(world, topics=replace(world.topics, snapshots=f"{world.topics.transfers}.s"))
        every = replace(settings, scheduler_snapshot_events=1)
        first = w.runner(every)
        await first.start()
        try:
            await first.ready()
            await w.configure("d-snap-a", retry_ms=600_000)
            await w.configure("d-snap-b", retry_ms=200)
            beat = MoverHeartbeat(
                envelope=env(now(), "m1"),
                mover_id="m1",
                transfer_group=GROUP,
                capacity=4,
                running=0,
                started_at=now(),
            )
            await w.send(w.topics.movers, "m1", [beat])
            for name, tid in (("d-snap-a", "t-a"), ("d-snap-b", "t-b1"), ("d-snap-b", "t-b2")):
                await w.queue(name, tid)
            await w.orders.until(lambda _: all(w.orders_for(t) for t in ("t-a", "t-b1", "t-b2")))
            (a,), (b1,), (b2,) = (w.orders_for(t) for t in ("t-a", "t-b1", "t-b2"))
            t = now()
            await w.send(w.topics.transfers, "d-snap-b", [started(b1, t), started(b2, t)])
            await w.send(w.topics.transfers, "d-snap-b", [succeeded(b1, t)])
            await w.send(w.topics.transfers, "d-snap-a", [failed(a, t, fault=Fault.HOST)])
            await w.transfers.until(lambda _: bool(w.transfers.of(TransferRequeued, "d-snap-a")))
            await w.transfers.until(lambda _: bool(w.transfers.of(TransferSucceeded, "d-snap-b")))
        finally:
            await first.stop()
        yield Handover(w, settings, first)


async def test_takeover_from_a_snapshot_decides_as_a_full_replay(
    kafka: str, handover: Handover
) -> None:
    """The next worker loads the snapshots written on leaving and replays only the tail (a
    transfer queued meanwhile): it orders that one, and its state and its decisions an hour
    later equal those of a state replayed from the beginning."""
    w, first = handover.world, handover.first
    assert {s.partition for s in first.snapshots_written} == set(range(PARTITIONS))
    await w.queue("d-snap-b", "t-b3")  # after the snapshots: the tail
    second = w.runner(handover.settings)
    await second.start()
    try:
        await second.ready()
        await w.orders.until(lambda _: bool(w.orders_for("t-b3")))
    finally:
        await second.stop()
    rebuilt = second.last_rebuild
    assert rebuilt["from_snapshot"] == list(range(PARTITIONS)), rebuilt
    assert 1 <= rebuilt["tail_events"] < 10, rebuilt
    full = await full_replay(kafka, w)
    assert view(second.state) == view(full)
    later = now() + timedelta(hours=1)
    settings = second._scheduler
    ours, theirs = decide(second.state, settings, later), decide(full, settings, later)
    assert ours  # an hour on, t-a's host is retried: something is decided
    assert ours == theirs


async def test_a_corrupt_snapshot_falls_back_to_a_full_replay(
    kafka: str, handover: Handover
) -> None:
    """A worker whose snapshots topic holds only a corrupt snapshot (whole by its headers)
    replays the partitions from the beginning and holds the full replay's state."""
    w = handover.world
    broken = f"{w.topics.transfers}.broken-{uuid.uuid4().hex[:6]}"
    worker = replace(w, topics=replace(w.topics, snapshots=broken)).runner(handover.settings)
    await apply_topics(kafka, [w.topics.snapshots_spec(PARTITIONS)])
    await apply_topics(kafka, [replace(w.topics.snapshots_spec(PARTITIONS), name=broken)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        for p in range(PARTITIONS):
            headers = [(SNAPSHOT_ID, b"bad"), (CHUNKS, b"1"), (OFFSET, b"1")]
            key = f"{w.topics.transfers}/{p}/0/0".encode()
            value = b"\xc3\x01" + bytes(8) + b"garbage"
            await producer.send_and_wait(broken, value, key=key, partition=p, headers=headers)
    finally:
        await producer.stop()
    await worker.start()
    try:
        await worker.ready()
    finally:
        with contextlib.suppress(Exception):
            await worker.stop()
    assert worker.last_rebuild["from_snapshot"] == []
    assert worker.last_rebuild["tail_events"] > 10  # everything, from the beginning
    assert view(worker.state) == view(await full_replay(kafka, w))


async def test_a_write_cut_short_leaves_the_previous_snapshot(kafka: str) -> None:
    """A snapshot whose write stopped after its first chunk (a crash) is passed over: the
    reader returns the whole one of the other slot, and nothing for a partition with none."""
    topic = f"test.snapshots.{uuid.uuid4().hex[:8]}"
    await apply_topics(kafka, [replace(Topics().snapshots_spec(2), name=topic)])
    feed, log, _ = history(2, steps=40)
    state = fresh(feed)
    for event in log:
        evolve(state, event)
    [whole] = snapshots.split(snapshots.capture(state, "t", {0: len(log)}, 1, now()))
    store = SnapshotStore(kafka, topic, client_id="test-snapshots")
    await store.start()
    try:
        await store.write(whole, 0)
    finally:
        await store.stop()
    newer = replace(whole, offset=len(log) + 5)
    [first, _] = snapshots.encode(newer, "cut", size=len(whole.transfers) // 2 + 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        headers = [(SNAPSHOT_ID, b"cut"), (CHUNKS, b"2"), (OFFSET, str(newer.offset).encode())]
        await producer.send_and_wait(topic, first, key=b"t/0/1/0", partition=0, headers=headers)
    finally:
        await producer.stop()
    found = await SnapshotStore(kafka, topic, client_id="test-snapshots").read("t", [0, 1])
    assert found[0].snapshot is not None
    assert (found[0].slot, found[0].snapshot.offset) == (0, len(log))
    assert found[0].snapshot.transfers == whole.transfers
    assert found[1].snapshot is None
