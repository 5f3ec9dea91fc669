"""Applying a batch of Kafka records to the read models: one transaction holding the rows the
events produce and the positions consumed (see ``projections.projector`` for the whole
exactly-once rule, and for when undecodable or unprojectable messages are dead-lettered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import psycopg
from aiokafka import ConsumerRecord, TopicPartition

from bus import codec
from bus.deadletter import dead_letter_event
from bus.errors import DecodeError, UnknownSchema
from bus.events import Event
from bus.events.deadletter import DeadLetterReason
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.topics import DEADLETTER, TopicSpec, spec_for
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
    failure: tuple[DeadLetterReason, str, str | None, BaseException | None] | None = None
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
        dead = 0
        for item in decoded:
            if item.failure is not None and self._publisher is not None:
                await self._dead_letter(item.record, *item.failure)
                dead += 1
        try:
            return await self._transaction(decoded, careful=False, dead=dead)
        except psycopg.OperationalError:
            raise
        except (psycopg.Error, ValueError, TypeError) as error:
            # one event's writes failed for good: redo the batch event by event, so only that
            # event is dead-lettered and the others still apply
            log.warning("batch failed, retrying event by event", error=str(error))
            return await self._transaction(decoded, careful=True, dead=dead)

    def _decode(self, record: Record) -> _Decoded:
        header = codec.type_header(record.headers)
        try:
            event = codec.decode_with_type(record.value or b"", header)
        except DecodeError as error:
            reason = (
                DeadLetterReason.UNKNOWN_SCHEMA
                if isinstance(error, UnknownSchema)
                else DeadLetterReason.UNDECODABLE
            )
            return _Decoded(record, failure=(reason, str(error), header, error))
        name = codec.event_type(event)
        spec = spec_for(record.topic, self._specs)
        if spec is not None and not spec.allows(name):
            message = f"{name} is not allowed on {record.topic}"
            failure = (DeadLetterReason.TYPE_NOT_ALLOWED, message, name, None)
            return _Decoded(record, failure=failure)
        handler = self._handlers.get(name)
        if handler is None:
            message = f"no projection handler for {name}"
            failure = (DeadLetterReason.PERMANENT_FAILURE, message, name, None)
            return _Decoded(record, failure=failure)
        return _Decoded(record, event=event)

    async def _transaction(
        self, decoded: Sequence[_Decoded], *, careful: bool, dead: int
    ) -> BatchResult:
        applied: dict[TopicPartition, int] = {}
        reseek: dict[TopicPartition, int] = {}
        events = 0
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
                if r.offset <= last or item.event is None:
                    continue  # already applied (redelivered), or dead-lettered above
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
                log.error("event cannot be projected", error=str(error), event_type=name)
                if self._publisher is not None:
                    message = f"projection failed: {error}"
                    failure = (DeadLetterReason.PERMANENT_FAILURE, message, name, error)
                    await self._dead_letter(item.record, *failure)
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

    async def _dead_letter(
        self,
        record: Record,
        reason: DeadLetterReason,
        message: str,
        event_type: str | None,
        error: BaseException | None,
    ) -> None:
        assert self._publisher is not None
        event = dead_letter_event(
            source=self._source,
            reason=reason,
            message=message,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            headers=list(record.headers or ()),
            timestamp_ms=record.timestamp,
            event_type=event_type,
            error_class=type(error).__name__ if error is not None else None,
            consumer_group=self.name,
        )
        await self._publisher.publish(DEADLETTER, f"{record.topic}/{record.partition}", event)
