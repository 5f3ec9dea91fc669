"""``ecpds audit ID``: the story of one data file or transfer, read straight from Kafka.

The answer to "why did file X not reach site Y" comes from the log itself, not from a read
model: every partition of the data-file, transfer, order, acquisition, portal and notification
topics is read from the beginning to its end at the time of the call (no consumer group, nothing
committed), and every event that names the id — as its data file, its transfer, or its
correlation id — is kept. A data file id also pulls in the events of every transfer queued for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import codec
from bus.errors import DecodeError
from bus.kafka_access import kafka_options
from bus.settings import Settings
from bus.topics import (
    ACQUISITION,
    DATAFILES,
    NOTIFICATIONS,
    ORDERS_PREFIX,
    PORTAL,
    TRANSFERS,
    partition_counts,
)

AUDITED = (DATAFILES, TRANSFERS, ACQUISITION, PORTAL, NOTIFICATIONS)


@dataclass(frozen=True)
class Entry:
    """One event in the timeline, with where it sits in the log."""

    topic: str
    partition: int
    offset: int
    event: Any

    @property
    def when(self) -> Any:
        return self.event.envelope.occurred_at


def names(event: Any, wanted: str) -> bool:
    """Whether ``event`` is about ``wanted`` (data file, transfer or correlation id)."""
    return wanted in (
        getattr(event, "data_file_id", None),
        getattr(event, "transfer_id", None),
        event.envelope.correlation_id,
    )


async def read_log(settings: Settings, topics: Sequence[str]) -> list[Entry]:
    """Every decodable event of ``topics`` up to their current end."""
    counts = await partition_counts(settings.kafka_bootstrap)
    chosen = [t for t in counts if t in topics or t.startswith(ORDERS_PREFIX)]
    partitions = [TopicPartition(t, p) for t in chosen for p in range(counts[t])]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        **kafka_options(settings),
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",  # agrees with the seek below (aiokafka reset race)
    )
    await consumer.start()
    entries: list[Entry] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        quiet = 0  # consecutive polls that returned nothing
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            quiet = 0 if batch else quiet + 1
            for tp, records in batch.items():
                for record in records:
                    try:
                        event = codec.decode(record.value)
                    except DecodeError:
                        continue  # undecodable messages are in ecpds.deadletter's story
                    entries.append(Entry(record.topic, record.partition, record.offset, event))
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            # a compacted partition may lack its last offsets; the position can run ahead of
            # records not yet handed out, so only a quiet spell at the end position ends it
            for tp in list(remaining):
                if quiet >= 6 and await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return entries


def story(entries: Sequence[Entry], wanted: str) -> list[Entry]:
    """The events about ``wanted`` (and its transfers, for a data file), oldest first."""
    transfers = {
        e.event.transfer_id
        for e in entries
        if getattr(e.event, "data_file_id", None) == wanted and hasattr(e.event, "transfer_id")
    }
    kept = [
        e
        for e in entries
        if names(e.event, wanted) or getattr(e.event, "transfer_id", None) in transfers
    ]
    return sorted(kept, key=lambda e: (e.when, e.topic, e.partition, e.offset))


async def audit(settings: Settings, wanted: str) -> list[Entry]:
    return story(await read_log(settings, AUDITED), wanted)


DETAIL_FIELDS = (
    "status",
    "new_status",
    "destination",
    "host_id",
    "mover_id",
    "attempt",
    "reason",
    "message",
    "error_class",
    "retriable",
    "bytes_sent",
    "bytes_per_second",
    "remote_path",
    "verification",
    "actor",
    "target",
    "size",
)


def detail(event: Any) -> str:
    """The fields an operator reads first, for one line of the timeline."""
    parts = []
    for name in DETAIL_FIELDS:
        value = getattr(event, name, None)
        if value is not None and value != "":
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def run(settings: Settings, wanted: str) -> list[Entry]:
    return asyncio.run(audit(settings, wanted))
