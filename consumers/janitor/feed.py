"""Reads topics from their beginning, every partition, without a consumer group.

The janitor's state is a fold of the retained log, not a stored table: at every start it is
rebuilt by replaying ``ecpds.datafiles`` and ``ecpds.transfers`` from offset 0, so there is no
offset to commit and nothing to lose on a crash. ``caught_up`` turns true once every partition
has been read up to the end offsets seen at start; the runner sweeps only after that, so its
first decisions are made on the whole history (including its own earlier events).

An undecodable record is logged and skipped: the janitor is a reader of these topics, their
owning consumers dead-letter such records; stopping here would stop garbage collection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bus import codec
from bus.errors import DecodeError, TransientError
from bus.events import Event
from bus.logging import get_logger
from bus.topics import partition_counts

log = get_logger(__name__)


class EventFeed:
    """Every event of ``topics``, from the beginning, then as they arrive."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self._bootstrap = bootstrap
        self._topics = tuple(topics)
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: dict[TopicPartition, int] = {}
        self.caught_up = False

    async def start(self) -> None:
        """Assign every partition of every topic and seek to the beginning."""
        partitions = await self._partitions()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self._ends = dict(await consumer.end_offsets(partitions))
        except KafkaError as error:
            await consumer.stop()
            raise TransientError(f"cannot read {', '.join(self._topics)}: {error}") from error
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self.caught_up = all(end == 0 for end in self._ends.values())

    async def _partitions(self) -> list[TopicPartition]:
        for _ in range(50):  # a topic created a moment ago may not be described yet
            counts = await partition_counts(self._bootstrap, self._topics)
            if all(counts.get(t) for t in self._topics):
                return [TopicPartition(t, p) for t in self._topics for p in range(counts[t])]
            await asyncio.sleep(0.1)
        raise TransientError(f"topics not found: {', '.join(self._topics)}")

    async def poll(self, timeout: float) -> list[Event]:
        """The events that arrived within ``timeout`` seconds (possibly none)."""
        assert self._consumer is not None, "start() first"
        batches = await self._consumer.getmany(
            timeout_ms=max(0, int(timeout * 1000)), max_records=2000
        )
        events: list[Event] = []
        for records in batches.values():
            for record in records:
                event = _decode(record)
                if event is not None:
                    events.append(event)
        if not self.caught_up:
            positions = {tp: await self._consumer.position(tp) for tp in self._ends}
            self.caught_up = all(positions[tp] >= end for tp, end in self._ends.items())
        return events

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


def _decode(record: Any) -> Event | None:
    header = codec.type_header(record.headers)
    try:
        event: Event = codec.decode_with_type(record.value, header)
    except DecodeError as error:
        log.warning(
            "undecodable record skipped",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=str(error),
        )
        return None
    return event
