"""Through Kafka: events/s from publish to consumed-and-committed with ecpds's publisher and
stage (bus.stage), beside kcat producing and consuming the same number of same-sized messages on
the same broker in the same run. Target: at least 20,000 events/s; the ratio to kcat is reported.

    .venv/bin/python bench/kafka.py [COUNT]     (default 100000)
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import uvloop
from _infra import emit, service, settings

from bus import codec
from bus.events import envelope
from bus.events.movers import MoverHeartbeat
from bus.publisher import Publisher
from bus.stage import Publish, Received, Stage
from bus.topics import TopicSpec, apply_topics


def event(n: int) -> MoverHeartbeat:
    return MoverHeartbeat(
        envelope=envelope("bench", f"mover-{n % 64}"),
        mover_id=f"mover-{n % 64}",
        transfer_group="default",
        capacity=16,
        running=n % 16,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        running_transfers=(f"t-{n}",),
    )


def publish_process(bootstrap: str, topic: str, count: int, go: Any, times: Any) -> None:
    """The producing side, in its own process as a real producer would be."""
    spec = TopicSpec(topic, "mover", 4, "delete", 3_600_000, ("ecpds.movers",), "bench")

    async def run() -> None:
        events = [event(n) for n in range(count)]
        publisher = Publisher(bootstrap, client_id="bench", linger_ms=5, specs=[spec])
        await publisher.start()
        go.wait()
        times[0] = time.time()
        for first in range(0, count, 5000):
            batch = events[first : first + 5000]
            await publisher.publish_many((topic, e.mover_id, e) for e in batch)
        times[1] = time.time()
        await publisher.stop()

    uvloop.run(run())


async def ours(bootstrap: str, count: int) -> dict[str, float]:
    """Publisher in one process, a stage (decode, handle, commit) in this one."""
    spec = TopicSpec(
        f"bench.{uuid.uuid4().hex[:8]}", "mover", 4, "delete", 3_600_000, ("ecpds.movers",), "bench"
    )
    await apply_topics(bootstrap, [spec])
    go = multiprocessing.Event()
    times = multiprocessing.Array("d", 2)
    producer = multiprocessing.Process(
        target=publish_process, args=(bootstrap, spec.name, count, go, times)
    )
    producer.start()
    publisher = Publisher(bootstrap, client_id="bench-deadletters")
    await publisher.start()
    done = asyncio.Event()

    class Count:
        handled = 0

        async def handle(self, received: Received) -> Sequence[Publish]:
            self.handled += 1
            if self.handled >= count:
                done.set()
            return ()

    runner = Stage(
        Count(),
        bootstrap=bootstrap,
        topics=[spec.name],
        group_id=f"bench-{spec.name}",
        source="bench",
        publisher=publisher,
        specs=[spec],
        max_records=2000,
    )
    consuming = asyncio.create_task(runner.run())
    await asyncio.sleep(5.0)  # let the consumer join and the producer encode before the clock
    go.set()
    await asyncio.wait_for(done.wait(), 300)
    end = time.time()
    runner.stop()
    await consuming
    await publisher.stop()
    await asyncio.to_thread(producer.join, 60)
    start, published_at = times[0], times[1]
    return {
        "events_per_s": count / (end - start),
        "publish_per_s": count / (published_at - start),
        "seconds": end - start,
    }


def kcat(bootstrap: str, count: int, size: int) -> dict[str, float]:
    binary = shutil.which("kcat") or shutil.which("kafkacat")
    if binary is None:
        return {"error": "kcat not installed"}  # type: ignore[dict-item]
    topic = f"bench.kcat.{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(topic, "none", 4, "delete", 3_600_000, ("ecpds.movers",), "bench")
    # same layout as ours; topics are never auto-created
    uvloop.run(apply_topics(bootstrap, [spec]))
    # same-sized printable payloads (kcat reads one message per line)
    line = base64.b64encode(os.urandom(size))[:size]
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write((line + b"\n") * count)
        path = f.name
    try:
        subprocess.run(
            [binary, "-b", bootstrap, "-t", topic, "-C", "-e", "-q", "-o", "end"],
            capture_output=True,
            check=False,
            timeout=30,
        )
        start = time.perf_counter()
        subprocess.run(
            [
                binary,
                "-P",
                "-b",
                bootstrap,
                "-t",
                topic,
                "-X",
                "acks=all",
                "-X",
                "enable.idempotence=true",
                "-l",
                path,
            ],
            check=True,
            timeout=600,
        )
        produced = time.perf_counter()
        subprocess.run(
            [
                binary,
                "-C",
                "-b",
                bootstrap,
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-q",
                "-c",
                str(count),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        end = time.perf_counter()
    finally:
        os.unlink(path)
    return {
        "events_per_s": count / (end - start),
        "produce_per_s": count / (produced - start),
        "consume_per_s": count / (end - produced),
        "seconds": end - start,
    }


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    s = settings()
    service(s, "kafka/kafka.sh")
    size = len(codec.encode(event(0)))
    mine = uvloop.run(ours(s.kafka_bootstrap, count))
    base = kcat(s.kafka_bootstrap, count, size)
    emit(
        {
            "benchmark": "kafka publish->consume (end to end, committed)",
            "events": count,
            "message_bytes": size,
            "ecpds": mine,
            "kcat": base,
            "ratio_to_kcat": (mine["events_per_s"] / base["events_per_s"])
            if "events_per_s" in base
            else None,
            "target_events_per_s": 20_000,
            "meets_target": mine["events_per_s"] >= 20_000,
        }
    )


if __name__ == "__main__":
    main()
