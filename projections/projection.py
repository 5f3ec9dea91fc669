"""Applying a batch of Kafka records to the read models: one transaction holding the rows the
events produce and the positions consumed (see ``projections.projector`` for the whole
exactly-once rule, and for when undecodable or unprojectable messages are dead-lettered).

Records are read by ``bus.deadletter.decode_record`` and dead-lettered by
``bus.deadletter.dead_letter`` once for the projection (its name is the consumer group): only a
record past the stored position is dead-lettered, under the partition's lock, and a batch
retried after a failed transaction does not say it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import psycopg
from aiokafka import ConsumerRecord, TopicPartition

from bus import codec
from bus.deadletter import Poison, dead_letter, decode_record
from bus.events import Event
from bus.events.deadletter import DeadLetterReason
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.topics import TopicSpec
from projections.handlers import HANDLERS, Handler, Write
from projections.handlers.plan import plan, statements

log = get_logger(__name__)

PREPARED_MAX = 300
"""Statements a connection keeps prepared: a small multi-row statement is one per row count."""

DEFAULT_NAME = "ecpds-projections"
Record: TypeAlias = ConsumerRecord[Any, Any]


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: last offset stored per partition, and partitions to seek."""

    applied: Mapping[TopicPartition, int]
    reseek: Mapping[TopicPartition, int]  # partition -> offset to seek to (0 = beginning)
    events: int
    dead_lettered: int


@dataclass
class _Decoded:
    record: Record
    event: Event | None = None
    poison: Poison | None = None
    writes: Sequence[Write] = field(default_factory=tuple)


class Projection:
    """Applies batches of Kafka records to the read models of one schema, one transaction each."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection,
        *,
        name: str = DEFAULT_NAME,
        handlers: Mapping[str, Handler] = HANDLERS,
        publisher: Publisher | None = None,
        specs: Sequence[TopicSpec] | None = None,
        source: str = "projections",
    ) -> None:
        self.conn = conn
        self.name = name
        self._handlers = handlers
        self._publisher = publisher
        self._specs = specs
        self._source = source
        self._applied: dict[TopicPartition, int] = {}  # what this process last stored
        # dead-lettered in a transaction that may yet fail: a retried batch skips them
        self._lettered: set[tuple[TopicPartition, int]] = set()
        # one connection: a rebalance callback must wait for the batch in hand to commit
        self._lock = asyncio.Lock()

    async def stored(self) -> dict[TopicPartition, int]:
        """The stored positions of this projection (last applied offset per partition)."""
        cur = await self.conn.execute(
            'SELECT topic, "partition", "offset" FROM projection_position WHERE projection = %s',
            (self.name,),
        )
        rows = await cur.fetchall()
        return {TopicPartition(topic, part): offset for topic, part, offset in rows}

    async def assigned(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Note newly assigned partitions; the offset to resume each from."""
        async with self._lock, self.conn.transaction():
            stored = await self.stored()
        resume = {}
        for tp in tps:
            last = stored.get(tp, -1)
            self._applied[tp] = last
            resume[tp] = last + 1
        return resume

    async def drift(self) -> dict[TopicPartition, int]:
        """Partitions whose stored position is not the one this process last wrote (the tables
        were swapped by a rebuild), with the offset to seek each to; they are taken as stored."""
        async with self._lock, self.conn.transaction():
            stored = await self.stored()
        moved = {}
        for tp, last in self._applied.items():
            now = stored.get(tp, -1)
            if now != last:
                moved[tp] = now + 1
                self._applied[tp] = now
        return moved

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._applied.pop(tp, None)

    async def apply(self, records: Sequence[Record]) -> BatchResult:
        """Project ``records`` (in partition order) and store the positions, in one transaction."""
        async with self._lock:
            return await self._apply(records)

    async def _apply(self, records: Sequence[Record]) -> BatchResult:
        decoded = [self._decode(r) for r in records]
        try:
            return await self._transaction(decoded, careful=False)
        except psycopg.OperationalError:
            raise
        except (psycopg.Error, ValueError, TypeError) as error:
            # one event's writes failed for good: redo the batch event by event, so only that
            # event is dead-lettered and the others still apply
            log.warning("batch failed, retrying event by event", error=str(error))
            return await self._transaction(decoded, careful=True)

    def _decode(self, record: Record) -> _Decoded:
        event = decode_record(record, self._specs)
        if isinstance(event, Poison):
            return _Decoded(record, poison=event)
        name = codec.event_type(event)
        if name not in self._handlers:
            message = f"no projection handler for {name}"
            return _Decoded(
                record, poison=Poison(DeadLetterReason.PERMANENT_FAILURE, message, name)
            )
        return _Decoded(record, event=event)

    async def _transaction(self, decoded: Sequence[_Decoded], *, careful: bool) -> BatchResult:
        applied: dict[TopicPartition, int] = {}
        reseek: dict[TopicPartition, int] = {}
        events = dead = 0
        async with self.conn.transaction():
            # during a rebalance two projectors may hold the same partition for a moment: the
            # lock makes the second wait, then read the first one's position and skip
            names = sorted({f"{self.name}/{d.record.topic}/{d.record.partition}" for d in decoded})
            await self.conn.execute(
                "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT hashtext(current_schema()"
                " || '/' || x) AS h FROM unnest(%s::text[]) AS x ORDER BY 1) AS s",
                (names,),
            )
            stored = await self.stored()
            todo: list[_Decoded] = []
            for item in decoded:
                r = item.record
                tp = TopicPartition(r.topic, r.partition)
                last = stored.get(tp, -1)
                if tp in reseek:
                    continue
                if tp in self._applied and self._applied[tp] != last:
                    reseek[tp] = last + 1  # the tables were swapped under us: follow them
                    continue
                applied[tp] = max(applied.get(tp, last), r.offset)
                if r.offset <= last:
                    continue  # already applied (redelivered): a poison one was said then
                if item.poison is not None:
                    # before its position is stored: a crash meanwhile says it again, never not
                    await self._dead_letter(r, item.poison)
                    dead += 1
                    continue
                todo.append(item)
            if careful:
                events, extra = await self._one_by_one(todo)
                dead += extra
            else:
                writes: list[Write] = []
                for item in todo:
                    writes.extend(self._handlers[codec.event_type(item.event)](item.event))  # type: ignore[arg-type]
                await self._execute(writes)
                events = len(todo)
            moved = [(self.name, tp.topic, tp.partition, off) for tp, off in applied.items()]
            if moved:
                async with self.conn.cursor() as cur:
                    await cur.executemany(
                        'INSERT INTO projection_position (projection, topic, "partition", "offset")'
                        ' VALUES (%s, %s, %s, %s) ON CONFLICT (projection, topic, "partition")'
                        ' DO UPDATE SET "offset" = EXCLUDED."offset"',
                        moved,
                    )
        self._applied.update(applied)
        for tp, offset in reseek.items():
            self._applied[tp] = offset - 1
        if self._lettered:  # stored now: no retry can meet them again
            self._lettered = {
                (tp, off) for tp, off in self._lettered if off > self._applied.get(tp, -1)
            }
        return BatchResult(applied, reseek, events, dead)

    async def _one_by_one(self, todo: Sequence[_Decoded]) -> tuple[int, int]:
        events = dead = 0
        for item in todo:
            assert item.event is not None
            name = codec.event_type(item.event)
            try:
                async with self.conn.transaction():  # a savepoint
                    await self._execute(self._handlers[name](item.event))
                events += 1
            except psycopg.OperationalError:
                raise
            except (psycopg.Error, ValueError, TypeError) as error:
                message = f"projection failed: {error}"
                reason = DeadLetterReason.PERMANENT_FAILURE
                poison = Poison(reason, message, name, type(error).__name__)
                await self._dead_letter(item.record, poison)
                dead += 1
        return events, dead

    async def _execute(self, writes: Sequence[Write]) -> None:
        """Run the writes: regrouped by ``plan`` into as few statements as their keys allow."""
        if not writes:
            return
        if self.conn.prepared_max is not None and self.conn.prepared_max < PREPARED_MAX:
            self.conn.prepared_max = PREPARED_MAX
        async with (
            self.conn.cursor() as cur,
            psycopg.AsyncRawCursor(self.conn) as raw,
            self.conn.pipeline(),
        ):
            for step in plan(writes):
                for statement in statements(step):
                    if statement.numbered:  # sent as it is: no parsing of a long text for %s
                        await raw.execute(
                            statement.sql, statement.params[0], prepare=statement.prepare
                        )
                    elif len(statement.params) == 1:
                        await cur.execute(statement.sql, statement.params[0])
                    else:
                        await cur.executemany(statement.sql, statement.params)

    async def _dead_letter(self, record: Record, poison: Poison) -> None:
        """Say why ``record`` is not projected: a dead letter for this projection's group (once,
        across retries of its batch), or without a publisher (a rebuild) one warning line."""
        tp = TopicPartition(record.topic, record.partition)
        if (tp, record.offset) in self._lettered:
            return
        if self._publisher is None:
            log.warning(
                "record not projected",
                reason=str(poison.reason),
                why=poison.message,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        else:
            await dead_letter(self._publisher, record, poison, source=self._source, group=self.name)
        self._lettered.add((tp, record.offset))
