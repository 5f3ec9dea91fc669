"""``ecpds events tail``: decode the log and print it, one JSON object per line.

Reads without a consumer group (it commits nothing and disturbs no one): every partition of
the chosen topics is assigned, from the beginning or from the end. An undecodable message is
printed as an error object with its origin rather than stopping the tail.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import codec
from bus.errors import DecodeError, PermanentError
from bus.kafka_access import kafka_options
from bus.settings import Settings
from bus.topics import ORDERS_PREFIX, event_topics, partition_counts


async def resolve_partitions(bootstrap: str, wanted: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the wanted topics (default: all ecpds topics that exist)."""
    counts = await partition_counts(bootstrap)
    fixed = event_topics()  # not the scheduler's snapshots: they are no events
    if wanted:
        missing = [t for t in wanted if t not in counts]
        if missing:
            raise PermanentError(f"no such topic: {', '.join(missing)}")
        names = list(wanted)
    else:
        names = [t for t in sorted(counts) if t in fixed or t.startswith(ORDERS_PREFIX)]
    return [TopicPartition(t, p) for t in names for p in range(counts[t])]


def line(record: Any) -> dict[str, Any]:
    header_type = codec.type_header(record.headers)
    origin = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key else None,
    }
    try:
        event = codec.decode_with_type(record.value, header_type)
    except DecodeError as error:
        return {**origin, "error": str(error), "event_type": header_type}
    return {**origin, "event_type": codec.event_type(event), "event": codec.to_json(event)}


async def tail(
    settings: Settings,
    topics: Sequence[str] = (),
    *,
    from_beginning: bool = False,
    as_json: bool = True,
    limit: int | None = None,
    idle_exit: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print events until interrupted (or ``limit`` events, or ``idle_exit`` quiet seconds)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        **kafka_options(settings),
        enable_auto_commit=False,
        group_id=None,
        # the reset assign() starts must agree with the seek below: aiokafka lets a reset in
        # flight overwrite a later seek_to_*()
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    printed = 0
    try:
        partitions = await resolve_partitions(settings.kafka_bootstrap, topics)
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        quiet = 0.0
        while limit is None or printed < limit:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                quiet += 0.5
                if idle_exit is not None and quiet >= idle_exit:
                    break
                continue
            quiet = 0.0
            records = sorted((r for rs in batch.values() for r in rs), key=lambda r: r.timestamp)
            for record in records:
                obj = line(record)
                if as_json:
                    out.write(orjson.dumps(obj).decode() + "\n")
                else:
                    out.write(_human(obj) + "\n")
                printed += 1
                if limit is not None and printed >= limit:
                    break
            out.flush()
    except asyncio.CancelledError:
        pass
    finally:
        await consumer.stop()
    return printed


def _human(obj: dict[str, Any]) -> str:
    where = f"{obj['topic']}[{obj['partition']}]@{obj['offset']}"
    if "error" in obj:
        return f"{where} UNDECODABLE {obj['error']}"
    event = obj["event"]
    env = event.get("envelope", {})
    fields = ", ".join(f"{k}={v}" for k, v in event.items() if k != "envelope")
    return f"{env.get('occurred_at', '')} {where} {obj['event_type']} {fields}"
