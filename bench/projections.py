"""Projection into PostgreSQL: events/s projected, beside a plain ``COPY`` of the same rows in
the same run (the floor); projection lag under a steady load; rebuild time for N events.

- throughput: a realistic stream (configuration, then transfer lifecycles, heartbeats,
  listings; see tests/projections/stream.py) is published, then one projector projects it
  all; the rows it produced are then written again with ``COPY`` into a fresh copy of the
  schema (same indexes), which is the floor. Target: >= 5,000 events/s.
- lag: events published at a steady rate (default 1,000/s for 20 s) while the projector runs;
  lag = commit time of the batch - the record's create time. Target: p99 < 1 s.
- rebuild: N events (default 1,000,000, as the issue asks) published in chunks (memory stays
  bounded), then replayed by ``projections.rebuild`` into fresh tables and swapped in; its
  time and rate beside the live projection rate and the COPY floor measured above.

    .venv/bin/python bench/projections.py [--events 50000] [--rebuild-events 1000000]
                                          [--rebuild-batch 5000] [--rate 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import statistics
import sys
import time
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvloop
from _infra import emit, service, settings
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from psycopg import sql

from bus import codec
from bus.kafka_access import kafka_options
from bus.settings import ROOT, Settings

# this file's name shadows the projections package while bench/ leads sys.path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from projections.db import connect  # noqa: E402
from projections.migrate import migrate  # noqa: E402
from projections.projector import Projection, Projector  # noqa: E402
from projections.rebuild import rebuild  # noqa: E402
from tests.projections import stream  # noqa: E402 - the realistic stream the tests use
from tests.projections.support import (  # noqa: E402
    create_topics,
    drop,
    positions,
    publish,
    wait_caught_up,
)

NOT_COPIED = frozenset({"schema_migrations"})


async def tables(dsn: str, schema: str) -> list[str]:
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY 1",
            (schema,),
        )
        return [t for (t,) in await cur.fetchall() if t not in NOT_COPIED]
    finally:
        await conn.close()


async def copy_floor(dsn: str, source: str, target: str) -> tuple[int, float]:
    """Rows of ``source`` written into ``target`` with COPY: (rows, seconds of the COPY)."""
    names = await tables(dsn, source)
    dumps: dict[str, bytes] = {}
    conn = await connect(dsn, source, autocommit=True)
    try:
        for table in names:
            buffer = io.BytesIO()
            query = sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(table))
            async with conn.cursor().copy(query) as copy:
                async for chunk in copy:
                    buffer.write(chunk)
            dumps[table] = buffer.getvalue()
    finally:
        await conn.close()
    rows = sum(d.count(b"\n") for d in dumps.values())
    conn = await connect(dsn, target)
    try:
        # the counts are copied as rows: the trigger that keeps them would count twice
        await conn.execute("ALTER TABLE transfers DISABLE TRIGGER transfers_counted")
        await conn.commit()
        started = time.perf_counter()
        async with conn.transaction():
            for table in names:
                query = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))
                async with conn.cursor().copy(query) as copy:
                    await copy.write(dumps[table])
        return rows, time.perf_counter() - started
    finally:
        await conn.close()


async def throughput(s: Settings, count: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix, schema, floor = f"bench.{tag}", f"rm_bench_{tag}", f"rm_bench_{tag}_copy"
    topics = await create_topics(s.kafka_bootstrap, prefix)
    items = stream.events(max(1, count // 10))[:count]
    ends = await publish(s.kafka_bootstrap, prefix, items)
    await migrate(s.pg_dsn, schema)
    await migrate(s.pg_dsn, floor)
    projector = Projector(
        dsn=s.pg_dsn, bootstrap=s.kafka_bootstrap, schema=schema, name=f"bench-{tag}", topics=topics
    )
    task = asyncio.create_task(projector.run())
    try:
        # from the first batch: group join is not projection
        while projector.events == 0:  # noqa: ASYNC110 - polling a counter, cheaply
            await asyncio.sleep(0.005)
        started = time.perf_counter() - 0.005
        await wait_caught_up(s.pg_dsn, schema, f"bench-{tag}", ends, seconds=600)
        seconds = time.perf_counter() - started
    finally:
        projector.stop()
        await asyncio.wait_for(task, 30)
    rows, copy_seconds = await copy_floor(s.pg_dsn, schema, floor)
    await drop(s.pg_dsn, schema, floor)
    await delete_topics(s.kafka_bootstrap, topics)
    rate = len(items) / seconds
    return {
        "events": len(items),
        "rows_written": rows,
        "seconds": round(seconds, 3),
        "events_per_second": round(rate),
        "batches": projector.batches,
        "copy_seconds": round(copy_seconds, 3),
        "copy_events_per_second": round(len(items) / copy_seconds),
        "copy_rows_per_second": round(rows / copy_seconds),
        "ratio_to_copy": round(copy_seconds / seconds, 3),
        "target_events_per_second": 5000,
        "meets_target": rate >= 5000,
    }


async def lag(s: Settings, rate: int, seconds: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix, schema = f"bench.{tag}", f"rm_bench_{tag}"
    topics = await create_topics(s.kafka_bootstrap, prefix)
    await migrate(s.pg_dsn, schema)
    items = stream.events(int(rate * seconds / 9) + 10, seed=11)[: int(rate * seconds)]
    lags: list[float] = []
    original = Projection.apply

    async def timed(self: Projection, records: Any) -> Any:
        result = await original(self, records)
        now = time.time()
        lags.extend(now - r.timestamp / 1000 for r in records)
        return result

    Projection.apply = timed  # type: ignore[method-assign]
    projector = Projector(
        dsn=s.pg_dsn, bootstrap=s.kafka_bootstrap, schema=schema, name=f"bench-{tag}", topics=topics
    )
    task = asyncio.create_task(projector.run())
    try:
        while not projector._consumer.assignment():  # noqa: ASYNC110 - wait for the group join
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        tick = 0.1
        per_tick = max(1, int(rate * tick))
        ends: dict[str, int] = {}
        start = time.perf_counter()
        for i in range(0, len(items), per_tick):
            ends.update(await publish(s.kafka_bootstrap, prefix, items[i : i + per_tick]))
            pause = start + (i // per_tick + 1) * tick - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
        await wait_caught_up(s.pg_dsn, schema, f"bench-{tag}", ends, seconds=120)
    finally:
        projector.stop()
        await asyncio.wait_for(task, 30)
        Projection.apply = original  # type: ignore[method-assign]
    await drop(s.pg_dsn, schema)
    await delete_topics(s.kafka_bootstrap, topics)
    ordered = sorted(lags)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return {
        "events": len(lags),
        "rate_per_second": rate,
        "seconds": seconds,
        "lag_p50_ms": round(statistics.median(ordered) * 1000, 1),
        "lag_p99_ms": round(p99 * 1000, 1),
        "lag_max_ms": round(ordered[-1] * 1000, 1),
        "target_p99_ms": 1000,
        "meets_target": p99 < 1.0,
    }


Encoded = list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]  # topic, key, value, headers


def encoded_chunk(prefix: str, first: int) -> Encoded:
    """One chunk of the stream (transfers numbered from ``first``), encoded for sending."""
    items = stream.events(CHUNK // 9, seed=first + 1, first=first, with_config=first == 0)
    return [
        (f"{prefix}.{i.family}", i.key.encode(), codec.encode(i.event), codec.headers(i.event))
        for i in items
    ]


async def send_encoded(producer: AIOKafkaProducer, messages: Encoded) -> None:
    """Send pre-encoded messages, one batch per partition at a time (Kafka's key hash)."""
    groups: dict[tuple[str, int], Encoded] = {}
    for message in messages:
        count = len(await producer.partitions_for(message[0]))
        partition = (murmur2(message[1]) & 0x7FFFFFFF) % count
        groups.setdefault((message[0], partition), []).append(message)
    sent = []
    for (topic, partition), group in groups.items():
        batch = producer.create_batch()
        for _, key, value, headers in group:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        sent.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*sent)


async def publish_stream(bootstrap: str, prefix: str, count: int) -> float:
    """Publish ``count`` events of the realistic stream; the seconds it took.

    Memory stays bounded: worker processes generate and encode the next chunks while this
    one sends the current chunk's bytes. Each chunk continues the numbering (every transfer new).
    """
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    published = 0
    # forked before the producer exists: the workers only run encoded_chunk
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) as pool:
        chunks = -(-count // CHUNK) + 1  # enough: each chunk holds a little more than CHUNK
        ahead = deque(
            loop.run_in_executor(pool, encoded_chunk, prefix, first)
            for first in range(0, chunks * CHUNK, CHUNK)[:WORKERS]
        )
        following = iter(range(WORKERS * CHUNK, chunks * CHUNK, CHUNK))
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            **kafka_options(),
        )
        await producer.start()
        try:
            while published < count:
                messages = (await ahead.popleft())[: count - published]
                first = next(following, None)
                if first is not None:
                    ahead.append(loop.run_in_executor(pool, encoded_chunk, prefix, first))
                await send_encoded(producer, messages)
                published += len(messages)
        finally:
            await producer.stop()
            for future in ahead:
                future.cancel()
    return time.perf_counter() - started


CHUNK = 50_000  # events generated and encoded at once
WORKERS = 2  # processes generating chunks (at most this many chunks wait in memory)


async def rebuild_time(
    s: Settings, count: int, live_rate: float, copy_rate: float, batch: int
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix, schema = f"bench.{tag}", f"rm_bench_{tag}"
    topics = await create_topics(s.kafka_bootstrap, prefix)
    publish_seconds = await publish_stream(s.kafka_bootstrap, prefix, count)
    await migrate(s.pg_dsn, schema)
    report = await rebuild(s, schema=schema, name=f"bench-{tag}", topics=topics, batch=batch)
    stored = sum(v + 1 for v in (await positions(s.pg_dsn, schema, f"bench-{tag}")).values())
    await drop(s.pg_dsn, schema)
    await delete_topics(s.kafka_bootstrap, topics)
    return {
        "events": report.events,
        "positions_stored": stored,
        "publish_seconds": round(publish_seconds, 1),
        "batch": batch,
        "seconds": round(report.seconds, 1),
        "events_per_second": round(report.events_per_second),
        "live_projection_events_per_second": round(live_rate),
        "ratio_to_live_projection_rate": round(report.events_per_second / live_rate, 3),
        "copy_floor_events_per_second": round(copy_rate),
        "ratio_to_copy": round(report.events_per_second / copy_rate, 3),
    }


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench", **kafka_options())
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    s = settings()
    service(s, "kafka/kafka.sh")
    service(s, "pg/pg.sh")
    s = replace(s)
    result: dict[str, Any] = {"benchmark": "projections"}
    result["throughput"] = await throughput(s, args.events)
    result["lag"] = await lag(s, args.rate, args.seconds)
    live_rate = result["throughput"]["events_per_second"]
    copy_rate = result["throughput"]["copy_events_per_second"]
    result["rebuild"] = await rebuild_time(
        s, args.rebuild_events, live_rate, copy_rate, args.rebuild_batch
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rebuild-events", type=int, default=1_000_000)
    parser.add_argument("--rebuild-batch", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    emit(uvloop.run(main(parser.parse_args())))
