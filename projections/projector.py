"""The projector: Kafka events -> PostgreSQL read models, exactly once.

How exactly-once is kept (the rule this module exists for):

- The consumed position is stored in PostgreSQL, in ``projection_position(projection, topic,
  partition, offset)``, **in the same transaction as the rows** the events produced (the habit
  of eventsourcing's ``projection.py``). A batch either commits its rows and its position
  together or not at all, so a crash never double-applies and never loses.
- When partitions are (re)assigned, each is seeked to its stored offset + 1 (the beginning when
  none is stored). Inside each batch the stored positions are read again, and an event whose
  offset is <= the stored one is skipped: a redelivered event changes nothing. A transaction
  advisory lock per (projection, partition) is taken first, so two projectors that briefly both
  hold a partition during a rebalance apply each event once between them.
- If a stored position is not the one this process last wrote, the tables changed under it
  (``projections.rebuild`` swapped in rebuilt tables): the partition is seeked to the stored
  offset + 1 and the batch's events for it are dropped, so projection simply continues from
  the rebuilt tables' positions.
- Kafka offsets are committed too, after the database commit, but only so that lag shows in
  the usual tools; they are never read back. PostgreSQL is the source of truth.

Why not faust (DESIGN.md says "faust processors"): faust commits its offsets in Kafka, apart
from the PostgreSQL rows, which gives at-least-once and a window in which a crash applies an
event twice; keeping the position beside the rows needs control of seeks on assignment and of
the commit, which a plain aiokafka consumer gives directly.

Why not ``bus.consumer``'s stage loop either: that loop commits Kafka offsets, one record at a
time, once the record's effect is durable. Here the effect and the position are one database
transaction per batch (hundreds of events, one statement per table), the Kafka offset is never
read back, and the start of each partition comes from PostgreSQL on assignment. What the
projector shares with the kit is the rest: decoding and dead letters (``bus.deadletter``,
through ``projections.projection``) and signals (``bus.consumer.stop_on_signals``, in
``projections.runner``).

Never drop a message: an undecodable message, or one of a type not allowed on its topic, is
written to ``ecpds.deadletter`` (when a publisher is given) before its position is stored, once
for the projection's group; an event whose writes fail for good (a data error) is
dead-lettered with the reason and skipped, the rest of its batch still applies. A database
outage is retried, never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from bus.kafka_access import kafka_options
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.topics import ORDERS_PREFIX, TopicSpec, event_topics
from projections.db import connect
from projections.handlers.plan import plan
from projections.projection import DEFAULT_NAME, BatchResult, Projection, Record

__all__ = ["DEFAULT_NAME", "BatchResult", "Projection", "Projector", "plan", "topic_pattern"]

log = get_logger(__name__)


def topic_pattern() -> str:
    """Every ecpds event topic: the fixed catalogue and every ``ecpds.orders.<group>``; not the
    scheduler's snapshots (a cache of its state, not events: ``consumers.scheduler.snapshots``)."""
    fixed = "|".join(re.escape(name) for name in sorted(event_topics()))
    return f"^({fixed}|{re.escape(ORDERS_PREFIX)}.+)$"


def in_order(batches: Mapping[TopicPartition, Sequence[Record]]) -> list[Record]:
    """The records of a ``getmany`` result, each partition's in offset order."""
    return [r for records in batches.values() for r in records]


class _Seeker(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        if self.projector.projection is not None:
            self.projector.projection.forget(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.projector.seek_stored(list(assigned))


class Projector:
    """The long-running consumer: every event of its topics into the read models of ``schema``."""

    def __init__(
        self,
        *,
        dsn: str,
        bootstrap: str,
        schema: str,
        name: str = DEFAULT_NAME,
        topics: Sequence[str] | None = None,
        pattern: str | None = None,
        publisher: Publisher | None = None,
        max_records: int = 500,
        max_wait_ms: int = 100,
        linger_ms: int = 200,
        specs: Sequence[TopicSpec] | None = None,
        group_id: str | None = None,
    ) -> None:
        if (topics is None) == (pattern is None):
            raise ValueError("give topics or a pattern")
        self.dsn, self.schema, self.name = dsn, schema, name
        self._topics, self._pattern = topics, pattern
        self._publisher = publisher
        self._specs = specs
        self._max_records, self._max_wait_ms = max_records, max_wait_ms
        self._stopping = asyncio.Event()
        self.projection: Projection | None = None
        self.events = 0
        self.batches = 0
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            **kafka_options(),
            group_id=group_id or name,  # the group only balances partitions; name keys positions
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            metadata_max_age_ms=5_000,  # new ecpds.orders.<group> topics are picked up quickly
            max_poll_records=max_records,
            # batch at the broker: a fetch is answered once 256 KiB are there or ``linger_ms``
            # has passed, so a busy log is projected in batches of hundreds of events (one
            # statement per table per batch) instead of a transaction per few events; the lag
            # this adds is bounded by ``linger_ms`` (the monitor's target is 1 s)
            fetch_min_bytes=256 * 1024,
            fetch_max_wait_ms=linger_ms,
        )

    def stop(self) -> None:
        """Finish and commit the batch in hand, then leave the group."""
        self._stopping.set()

    async def seek_stored(self, tps: Sequence[TopicPartition]) -> None:
        """Seek each partition to its stored offset + 1."""
        if self.projection is None or not tps:
            return
        for tp, offset in (await self.projection.assigned(tps)).items():
            self._consumer.seek(tp, offset)

    async def run(self) -> None:
        """Project until ``stop``; a database outage is waited out, never skipped."""
        self.projection = Projection(
            await connect(self.dsn, self.schema),
            name=self.name,
            publisher=self._publisher,
            specs=self._specs,
        )
        listener = _Seeker(self)
        if self._pattern is not None:
            self._consumer.subscribe(pattern=self._pattern, listener=listener)
        else:
            self._consumer.subscribe(topics=list(self._topics or ()), listener=listener)
        await self._consumer.start()
        loop = asyncio.get_running_loop()
        checked = loop.time()
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(
                    timeout_ms=self._max_wait_ms, max_records=self._max_records
                )
                records = in_order(batches)
                if records:
                    await self._project(records)
                elif loop.time() - checked > 1.0:
                    # idle: no batch would notice a rebuild's swap, so look for it
                    checked = loop.time()
                    await self._follow_swap()
        finally:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            with contextlib.suppress(Exception):
                await self.projection.conn.close()

    async def _project(self, records: Sequence[Record]) -> None:
        assert self.projection is not None
        delay = 0.2
        while True:
            try:
                result = await self.projection.apply(records)
                break
            except Exception as error:  # a long-running component waits and retries, never dies
                log.warning("projection batch failed, retrying", error=repr(error), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                await self._reconnect()
        assignment = self._consumer.assignment()
        for tp, offset in result.reseek.items():
            if tp in assignment:
                self._consumer.seek(tp, offset)
        self.events += result.events
        self.batches += 1
        commits = {
            tp: off + 1
            for tp, off in result.applied.items()
            if tp not in result.reseek and tp in assignment
        }
        if commits:
            try:
                await self._consumer.commit(commits)
            except KafkaError as error:  # lag metrics only: the database holds the position
                log.info("kafka commit skipped", error=str(error))

    async def _follow_swap(self) -> None:
        assert self.projection is not None
        try:
            moved = await self.projection.drift()
        except psycopg.OperationalError as error:
            log.warning("position check failed", error=str(error))
            await self._reconnect()
            return
        assignment = self._consumer.assignment()
        for tp, offset in moved.items():
            if tp not in assignment:
                continue  # revoked while the positions were read: its new owner seeks it
            log.info("positions changed under the projector, following", topic=tp.topic)
            self._consumer.seek(tp, offset)

    async def _reconnect(self) -> None:
        assert self.projection is not None
        if self.projection.conn.closed or self.projection.conn.broken:
            with contextlib.suppress(Exception):
                await self.projection.conn.close()
            with contextlib.suppress(psycopg.OperationalError):
                self.projection.conn = await connect(self.dsn, self.schema)
