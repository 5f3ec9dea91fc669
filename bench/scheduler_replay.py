"""Scheduler replay benchmark (issue 20): what taking over a partition costs today.

On every assignment a scheduler worker rebuilds its state by replaying the partitions it now
owns from the beginning (``consumers.scheduler.runner``, ``bus.feeds.replay``). This measures
that replay on one partition of ``EVENTS`` transfer events (each transfer queued, scheduled,
started and delivered: four events) and, in the same run, the floor under it: reading the
same records from Kafka without decoding them (baseline). Printed: seconds and microseconds
per event for both, and the replay extrapolated to a week's retention of one partition at
100 files/s over 4 partitions with 7 events per file (the issue's yardstick).

Bounded: one topic of fixed size, written once, read twice; it runs on the bench Kafka
(``_infra``) and deletes nothing it did not create.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _infra import emit, service, settings
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus.events.base import Envelope, Event, TransferStatus
from bus.events.transfers import (
    TransferQueued,
    TransferScheduled,
    TransferStarted,
    TransferSucceeded,
    Verification,
)
from bus.feeds import replay
from bus.kafka_access import kafka_options
from bus.publisher import Publisher
from bus.topics import TopicSpec, apply_topics
from consumers.scheduler.core import SchedulerState, evolve

EVENTS = int(os.environ.get("BENCH_REPLAY_EVENTS", "200000"))
DESTINATIONS = 100
T0 = datetime(2026, 12, 7, tzinfo=UTC)
WEEK_EVENTS = 100 * 7 * 86_400 * 7 // 4  # files/s x events/file x a week, per partition of 4


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


async def fill(bootstrap: str, topic: str) -> None:
    async with Publisher(bootstrap, client_id="bench-replay") as publisher:
        batch: list[tuple[str, str, Any]] = []
        for n in range(EVENTS // 4):
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
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    emit(asyncio.run(main_async()))


if __name__ == "__main__":
    main()
