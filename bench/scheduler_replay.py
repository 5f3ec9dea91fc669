"""Scheduler replay benchmark (issue 20): what taking over a partition costs, with and without
a snapshot.

On every assignment a scheduler worker rebuilds the state of the partitions it now owns. The
baseline is the full replay (``bus.feeds.replay``, what a worker without a snapshot does) of
one partition of ``EVENTS`` transfer events (each transfer queued, scheduled, started and
delivered: four events), beside the floor under it: reading the same records from Kafka
without decoding them. Then, in the same run, the takeover with a snapshot
(``consumers.scheduler.snapshots``): the replayed state is captured (the decider's pause),
written to a snapshots topic, ``TAIL`` more events are appended, and a fresh state is built
from the snapshot (read, decoded, restored) plus the tail (``bus.feeds.replay_from``).

Extrapolated to the issue's yardstick, one partition of 4 at 100 files/s (25 files/s, 7 events
a file): a week's retention replayed whole, against a snapshot holding what the state holds
then (every transfer within its lifetime plus the purge delay: ``LIFETIME_DAYS``, the default
destination lifetime, 2 days) and a tail of one snapshot interval's events at most
(``ECPDS_SCHEDULER_SNAPSHOT_EVENTS``). Costs are linear in entries and events (the per-entry
and per-event figures are what is extrapolated).

Takeover time (``takeover``): two scheduler processes (``python -m consumers.scheduler.runner``)
share 4 partitions; one is killed with SIGKILL, and the time from the kill to the orders of
transfers queued at that moment for its destinations is measured; then a third joins, the
survivor is stopped with SIGTERM, and the same is measured. It shows the session timeout
(``bus.faust_app``) plus the rebalance and the rebuild.

Bounded: topics of fixed size, written once; it runs on the bench Kafka (``_infra``) and
deletes nothing it did not create; every process it starts is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _infra import emit, service, settings
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import codec
from bus.events.base import Envelope, Event, TransferStatus
from bus.events.config import Association, Destination, DestinationType, Host, HostType
from bus.events.config_changes import AssociationDefined, DestinationDefined, HostDefined
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    TransferQueued,
    TransferScheduled,
    TransferStarted,
    TransferSucceeded,
    Verification,
)
from bus.feeds import replay, replay_from
from bus.kafka_access import kafka_options
from bus.publisher import Publisher
from bus.topics import TopicSpec, apply_topics
from consumers.scheduler import snapshots
from consumers.scheduler.core import SchedulerState, evolve
from consumers.scheduler.placement import partition_of
from consumers.scheduler.snapshot_store import SnapshotStore, bounds

EVENTS = int(os.environ.get("BENCH_REPLAY_EVENTS", "200000"))
DESTINATIONS = 100
T0 = datetime(2026, 12, 7, tzinfo=UTC)
WEEK_EVENTS = 100 * 7 * 86_400 * 7 // 4  # files/s x events/file x a week, per partition of 4
LIFETIME_DAYS = 2  # a destination's default transfer lifetime (bus.events.config)
# transfers the state of one partition holds at the yardstick: lifetime + the 1 h purge delay
LIVE_ENTRIES = 100 * (LIFETIME_DAYS * 86_400 + 3_600) // 4
TAIL = int(os.environ.get("BENCH_REPLAY_TAIL", "20000"))  # events appended after the snapshot


def env(n: int) -> Envelope:
    at = T0 + timedelta(milliseconds=n)
    return Envelope(event_id=f"r-{n}", occurred_at=at, source="bench", correlation_id=f"t{n // 4}")


def story(n: int) -> list[Event]:
    """The four events of transfer ``n``: queued, scheduled, started, delivered."""
    tid, dest = f"t{n}", f"d{n % DESTINATIONS:03}"
    at = T0 + timedelta(milliseconds=n)
    return [
        TransferQueued(
            envelope=env(4 * n),
            transfer_id=tid,
            destination=dest,
            data_file_id=f"f{n}",
            target=f"{tid}.grib",
            status=TransferStatus.WAIT,
            priority=50,
            queue_time=at,
            expiry_time=at + timedelta(days=7),
            size=10240,
        ),
        TransferScheduled(
            envelope=env(4 * n + 1),
            transfer_id=tid,
            destination=dest,
            attempt=1,
            host_id=f"h-{dest}",
            transfer_group="tg",
        ),
        TransferStarted(
            envelope=env(4 * n + 2),
            transfer_id=tid,
            destination=dest,
            attempt=1,
            host_id=f"h-{dest}",
            mover_id="m1",
        ),
        TransferSucceeded(
            envelope=env(4 * n + 3),
            transfer_id=tid,
            destination=dest,
            attempt=1,
            host_id=f"h-{dest}",
            mover_id="m1",
            remote_path=f"/in/{tid}.grib",
            bytes_sent=10240,
            duration_ms=5,
            bytes_per_second=2_048_000.0,
            verification=Verification.SIZE,
        ),
    ]


async def fill(bootstrap: str, topic: str, first: int = 0, events: int = EVENTS) -> None:
    async with Publisher(bootstrap, client_id="bench-replay") as publisher:
        batch: list[tuple[str, str, Any]] = []
        for n in range(first, first + events // 4):
            batch += [(topic, e.destination, e) for e in story(n)]  # type: ignore[attr-defined]
            if len(batch) >= 4000:
                await publisher.publish_many(batch)
                batch = []
        if batch:
            await publisher.publish_many(batch)


async def raw_read(bootstrap: str, tp: TopicPartition) -> tuple[float, int]:
    """The baseline: every record of ``tp`` fetched, none decoded."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_options()
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        start = time.perf_counter()
        await consumer.seek_to_beginning(tp)  # before end_offsets, as bus.feeds.replay does
        end = (await consumer.end_offsets([tp]))[tp]
        count = 0
        while True:  # as bus.feeds.replay reads: fetch first, then ask the position
            batches = await consumer.getmany(tp, timeout_ms=200, max_records=2000)
            count += sum(len(records) for records in batches.values())
            if await consumer.position(tp) >= end:
                break
        return time.perf_counter() - start, count
    finally:
        await consumer.stop()


async def main_async() -> dict[str, Any]:
    s = settings()
    service(s, "kafka/kafka.sh")
    topic = f"bench.replay.{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(topic, "destination", 1, "delete", 7 * 86_400_000, ("ecpds.transfers",), "b")
    await apply_topics(s.kafka_bootstrap, [spec])
    await fill(s.kafka_bootstrap, topic)
    tp = TopicPartition(topic, 0)
    raw_seconds, records = await raw_read(s.kafka_bootstrap, tp)
    assert records, f"nothing read back from {topic}"
    state = SchedulerState()
    start = time.perf_counter()
    await replay(s.kafka_bootstrap, [tp], functools.partial(evolve, state))
    replay_seconds = time.perf_counter() - start
    per_event = replay_seconds / records
    taken = await with_snapshot(s.kafka_bootstrap, topic, tp, state)
    per_entry = taken["snapshot_load_s"] / max(1, taken["snapshot_transfers"])
    tail_per_event = taken["tail_s"] / max(1, taken["tail_events"])
    tail_events = s.scheduler_snapshot_events
    return {
        "benchmark": "scheduler_replay",
        "events": records,
        "baseline_raw_read_s": round(raw_seconds, 2),
        "baseline_us_per_event": round(raw_seconds / records * 1e6, 2),
        "replay_s": round(replay_seconds, 2),
        "replay_us_per_event": round(per_event * 1e6, 2),
        "replay_over_baseline": round(replay_seconds / raw_seconds, 1),
        "transfers_in_state": len(state.transfers),
        "week_partition_events": WEEK_EVENTS,
        "week_partition_replay_minutes": round(WEEK_EVENTS * per_event / 60, 1),
        **taken,
        "snapshot_load_us_per_transfer": round(per_entry * 1e6, 2),
        "tail_us_per_event": round(tail_per_event * 1e6, 2),
        "capture_us_per_transfer": round(
            taken["capture_s"] / max(1, taken["snapshot_transfers"]) * 1e6, 3
        ),
        "week_live_transfers": LIVE_ENTRIES,
        "week_snapshot_tail_events": tail_events,
        "week_takeover_with_snapshot_s": round(
            LIVE_ENTRIES * per_entry + tail_events * tail_per_event, 1
        ),
        "week_capture_pause_s": round(
            LIVE_ENTRIES * taken["capture_s"] / max(1, taken["snapshot_transfers"]), 2
        ),
        "week_snapshot_write_s": round(
            LIVE_ENTRIES * taken["snapshot_write_s"] / max(1, taken["snapshot_transfers"]), 1
        ),
        "week_snapshot_mb": round(
            LIVE_ENTRIES * taken["snapshot_bytes"] / max(1, taken["snapshot_transfers"]) / 1e6
        ),
        "load_average": os.getloadavg()[0],
    }


async def with_snapshot(
    bootstrap: str, topic: str, tp: TopicPartition, state: SchedulerState
) -> dict[str, Any]:
    """The takeover with a snapshot: capture the replayed state, write it, append ``TAIL``
    events, then time a fresh rebuild from the snapshot plus the tail."""
    store_topic = f"{topic}.snapshots"
    spec = TopicSpec(store_topic, "partition", 1, "compact", -1, ("ecpds.scheduler",), "b")
    await apply_topics(bootstrap, [spec])
    end = (await bounds(bootstrap, [tp]))[tp][1]
    start = time.perf_counter()
    captured = snapshots.capture(state, topic, {0: end}, 1, T0)
    capture = time.perf_counter() - start  # what the decider waits for
    [snap] = snapshots.split(captured)  # the writer's task, like the encoding
    store = SnapshotStore(bootstrap, store_topic, client_id="bench-snapshot")
    await store.start()
    try:
        written = await store.write(snap, 0)
    finally:
        await store.stop()
    await fill(bootstrap, topic, first=EVENTS // 4, events=TAIL)
    fresh = SchedulerState()
    start = time.perf_counter()
    reader = SnapshotStore(bootstrap, store_topic, client_id="bench-load")
    loaded = (await reader.read(topic, [0]))[0]
    assert loaded.snapshot is not None, loaded.reason
    snapshots.restore(fresh, loaded.snapshot)
    restored = time.perf_counter()
    _, tail = await replay_from(
        bootstrap, {tp: loaded.snapshot.offset}, functools.partial(evolve, fresh)
    )
    done = time.perf_counter()
    assert len(fresh.transfers) == len(state.transfers) + TAIL // 4
    return {
        "snapshot_transfers": len(snap.transfers),
        "capture_s": round(capture, 4),
        "snapshot_write_s": round(written.seconds, 2),
        "snapshot_chunks": written.chunks,
        "snapshot_bytes": written.bytes,
        "snapshot_load_s": round(restored - start, 2),
        "tail_events": tail,
        "tail_s": round(done - restored, 2),
        "takeover_with_snapshot_s": round(done - start, 2),
    }


class Worker:
    """One scheduler process, its JSON log lines collected."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumers.scheduler.runner", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.lines: list[dict[str, Any]] = []
        self._reader = asyncio.get_running_loop().run_in_executor(None, self._read)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    def owned(self) -> set[int] | None:
        """The partitions of its last complete rebuild (None before one)."""
        for line in reversed(self.lines):
            if line.get("event") == "scheduler state rebuilt":
                return set(line["partitions"])
            if line.get("event") == "assigned part of a group of partitions: rebalancing":
                return None
        return None

    def last_rebuild(self) -> dict[str, Any]:
        rebuilt = [x for x in self.lines if x.get("event") == "scheduler state rebuilt"]
        keys = ("partitions", "from_snapshot", "tail_events", "snapshot_s", "tail_s")
        return {k: rebuilt[-1].get(k) for k in keys} if rebuilt else {}

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        for _ in range(300):
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            self.process.kill()
        await self._reader


async def takeover(bootstrap: str) -> dict[str, Any]:
    """Seconds from a worker's SIGKILL, then from another's SIGTERM, to the orders of
    transfers queued at that moment for the destinations it owned."""
    u = uuid.uuid4().hex[:8]
    names = {
        "transfers": f"bench.takeover.{u}.transfers",
        "config": f"bench.takeover.{u}.config",
        "movers": f"bench.takeover.{u}.movers",
        "orders-prefix": f"bench.takeover.{u}.orders.",
        "snapshots": f"bench.takeover.{u}.snapshots",
    }
    day = 86_400_000

    def spec(name: str, parts: int, cleanup: Any, space: str) -> TopicSpec:
        return TopicSpec(
            name, "k", parts, cleanup, -1 if cleanup == "compact" else day, (space,), "b"
        )

    await apply_topics(
        bootstrap,
        [
            spec(names["transfers"], 4, "delete", "ecpds.transfers"),
            spec(names["config"], 1, "compact", "ecpds.config"),
            spec(names["movers"], 4, "delete", "ecpds.movers"),
            spec(f"{names['orders-prefix']}tg", 4, "delete", "ecpds.orders"),
            spec(names["snapshots"], 4, "compact", "ecpds.scheduler"),
        ],
    )
    # two destinations per partition, each with a host of its own (no group links partitions)
    dests: dict[int, list[str]] = {p: [] for p in range(4)}
    n = 0
    while any(len(d) < 2 for d in dests.values()):
        name = f"d{n}"
        if len(dests[partition_of(name, 4)]) < 2:
            dests[partition_of(name, 4)].append(name)
        n += 1
    now = datetime.now(UTC)
    config: list[Event] = []
    for name in (d for ds in dests.values() for d in ds):
        e = Envelope(
            event_id=str(uuid.uuid4()), occurred_at=now, source="bench", correlation_id=name
        )
        config += [
            DestinationDefined(
                envelope=e,
                destination=Destination(
                    name=name, type=DestinationType.DISSEMINATION, transfer_group="tg"
                ),
            ),
            HostDefined(
                envelope=e,
                host=Host(
                    id=f"h-{name}",
                    nickname=name,
                    type=HostType.DISSEMINATION,
                    protocol="ftp",
                    address="x:21",
                ),
            ),
            AssociationDefined(
                envelope=e, association=Association(destination=name, host=f"h-{name}")
            ),
        ]
    seen: dict[str, float] = {}  # transfer id -> when its order was read
    orders = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options())
    await orders.start()
    orders.assign([TopicPartition(f"{names['orders-prefix']}tg", p) for p in range(4)])

    async def follow() -> None:
        while True:
            batches = await orders.getmany(timeout_ms=50)
            for records in batches.values():
                for r in records:
                    event = codec.decode(r.value)
                    if isinstance(event, TransferOrdered):
                        seen.setdefault(event.transfer_id, time.perf_counter())

    follower = asyncio.create_task(follow())
    args = [f"--{k}={v}" for k, v in names.items()] + [f"--app-id=bench-takeover-{u}"]
    env = {**os.environ, "ECPDS_LOG_FORMAT": "json", "ECPDS_SCHEDULER_SNAPSHOT_INTERVAL": "2"}
    workers: list[Worker] = []
    counter = iter(range(10**9))

    async def queue(names_: list[str]) -> list[str]:
        at = datetime.now(UTC)
        events: list[tuple[str, str, Any]] = []
        for name in names_:
            tid = f"tk-{next(counter)}"
            events.append(
                (
                    names["transfers"],
                    name,
                    TransferQueued(
                        envelope=Envelope(
                            event_id=str(uuid.uuid4()),
                            occurred_at=at,
                            source="bench",
                            correlation_id=tid,
                        ),
                        transfer_id=tid,
                        destination=name,
                        data_file_id=f"f-{tid}",
                        target=f"{tid}.bin",
                        status=TransferStatus.WAIT,
                        priority=50,
                        queue_time=at,
                        expiry_time=at + timedelta(days=1),
                        size=1,
                        guid=tid,
                        store="local",
                        location=tid,
                    ),
                )
            )
        await publisher.publish_many(events)
        return [tid for _, _, ev in events for tid in [ev.transfer_id]]  # type: ignore[attr-defined]

    async def ordered(tids: list[str], since: float) -> float:
        for _ in range(1200):
            if all(t in seen for t in tids):
                return round(max(seen[t] for t in tids) - since, 2)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"not ordered within 60 s: {tids}")

    async def settled(pair: list[Worker]) -> None:
        """Until the two own disjoint halves of the partitions (no rebalance pending)."""
        for _ in range(1200):
            a, b = (w.owned() for w in pair)
            if a and b and a | b == set(range(4)) and not a & b:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the workers did not settle")

    async with Publisher(bootstrap, client_id="bench-takeover") as publisher:
        try:
            await publisher.publish_many([(names["config"], "config", e) for e in config])
            workers += [Worker(args, env), Worker(args, env)]
            await settled(workers)
            everyone = [d for ds in dests.values() for d in ds]
            await ordered(await queue(everyone), time.perf_counter())
            await asyncio.sleep(3)  # a periodic snapshot of each partition (interval 2 s)
            victim, survivor = workers
            lost = sorted(d for p in victim.owned() or () for d in dests[p])
            start = time.perf_counter()
            victim.process.send_signal(signal.SIGKILL)
            killed = await ordered(await queue(lost), start)
            await victim.stop()
            after_kill = survivor.last_rebuild()
            workers.append(Worker(args, env))
            await settled([survivor, workers[-1]])
            left = sorted(d for p in survivor.owned() or () for d in dests[p])
            start = time.perf_counter()
            survivor.process.send_signal(signal.SIGTERM)
            stopped = await ordered(await queue(left), start)
            after_stop = workers[-1].last_rebuild()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await orders.stop()
            for worker in workers:
                await worker.stop()
    return {
        "session_timeout_s": 6.0,
        "heartbeat_interval_s": 0.5,
        "takeover_after_sigkill_s": killed,
        "rebuild_after_sigkill": after_kill,
        "takeover_after_sigterm_s": stopped,
        "rebuild_after_sigterm": after_stop,
    }


def main() -> None:
    result = asyncio.run(main_async())
    if os.environ.get("BENCH_TAKEOVER", "1") == "1":
        result["takeover"] = asyncio.run(takeover(settings().kafka_bootstrap))
    emit(result)


if __name__ == "__main__":
    main()
