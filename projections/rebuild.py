"""``ecpds projections rebuild``: replay the log into fresh read models and swap them in.

Steps: create ``<schema>_rebuild`` (dropped first if a previous rebuild died) and migrate it;
drop its secondary indexes (built again, each in one pass, once the replay is done); read the
end offset of every partition of every ecpds topic; replay each partition from its
first offset up to that end with the same ``Projection`` the live projector uses (positions
stored beside the rows, under the live projection's name); then, in one transaction, rename
``<schema>`` -> ``<schema>_old``, ``<schema>_rebuild`` -> ``<schema>`` and drop the old one.

The live projector keeps running throughout: names resolve through ``search_path`` when a
statement runs, and it reads positions from the tables in every batch, so after the swap it
sees positions it did not write, seeks there, and continues from the rebuild's end. Dead
letters are not re-published (the live projector already did).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from psycopg import sql

from bus.kafka_access import kafka_options
from bus.settings import Settings
from bus.topics import partition_counts
from projections.db import DEFAULT_SCHEMA, checked_schema, connect
from projections.migrate import migrate
from projections.projector import DEFAULT_NAME, Projection, topic_pattern


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild replayed and how long it took."""

    schema: str
    topics: tuple[str, ...]
    partitions: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def ecpds_topics(bootstrap: str) -> list[str]:
    """The existing topics the projector reads (fixed catalogue and every orders topic)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="ecpds-rebuild", **kafka_options()
    )
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    pattern = re.compile(topic_pattern())
    return sorted(n for n in names if pattern.match(n))


async def rebuild(
    settings: Settings,
    *,
    schema: str = DEFAULT_SCHEMA,
    name: str = DEFAULT_NAME,
    topics: Sequence[str] | None = None,
    batch: int = 2000,
) -> RebuildReport:
    """Rebuild the read models of ``schema`` from the log and swap them in."""
    started = time.monotonic()
    staging = checked_schema(f"{schema}_rebuild")
    old = checked_schema(f"{schema}_old")
    conn = await connect(settings.pg_dsn, schema, autocommit=True)
    try:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(staging))
        )
    finally:
        await conn.close()
    await migrate(settings.pg_dsn, staging)
    names = list(topics) if topics is not None else await ecpds_topics(settings.kafka_bootstrap)
    indexes = await drop_secondary_indexes(settings.pg_dsn, staging)
    events, partitions = await _replay(settings, staging, name, names, batch)
    await create_indexes(settings.pg_dsn, staging, indexes)
    await swap(settings.pg_dsn, schema, staging, old)
    return RebuildReport(schema, tuple(names), partitions, events, time.monotonic() - started)


async def _replay(
    settings: Settings, staging: str, name: str, topics: Sequence[str], batch: int
) -> tuple[int, int]:
    counts = await partition_counts(settings.kafka_bootstrap, topics) if topics else {}
    tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    if not tps:
        return 0, 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        **kafka_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # agrees with the seek below (aiokafka reset race)
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    conn = await connect(settings.pg_dsn, staging)
    projection = Projection(conn, name=name, publisher=None)
    events = 0
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            # an explicit offset, not seek_to_beginning(): aiokafka applies the answer of a reset
            # already in flight (started by assign()) over a later seek_to_*(), which once left
            # every partition at its end and replayed nothing
            consumer.seek(tp, starts[tp])
        await projection.assigned(tps)
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        consumer.pause(*(set(tps) - remaining))
        at_end: set[TopicPartition] = set()
        quiet = 0  # consecutive polls that returned nothing at all
        while remaining:
            batches = await consumer.getmany(timeout_ms=500, max_records=batch)
            quiet = 0 if batches else quiet + 1
            records = [r for tp, rs in batches.items() for r in rs if r.offset < ends[tp]]
            if records:
                events += (await projection.apply(records)).events
            for tp, rs in batches.items():
                if rs and rs[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
                    consumer.pause(tp)
            for tp in list(remaining):
                # the position moves when a fetch lands, before its records are handed out, and
                # a compacted partition may lack its last offsets: at the end position *and*
                # after several polls that returned nothing at all (on a loaded machine one
                # empty poll proves little) it is done
                if tp in at_end and quiet >= QUIET_POLLS:
                    remaining.discard(tp)
                    consumer.pause(tp)
                elif await consumer.position(tp) >= ends[tp]:
                    at_end.add(tp)
    finally:
        await consumer.stop()
        await conn.close()
    return events, len(tps)


async def drop_secondary_indexes(dsn: str, schema: str) -> list[str]:
    """Drop the indexes of ``schema`` that no constraint needs; their definitions.

    The replay never reads through them (handlers look rows up by primary key), so building
    each once at the end costs less than keeping it up to date row by row.
    """
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND NOT i.indisunique AND NOT i.indisprimary"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
            " ORDER BY 1",
            (schema,),
        )
        found = await cur.fetchall()
        for index, _ in found:
            await conn.execute(
                sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(schema), sql.Identifier(index))
            )
        return [definition for _, definition in found]
    finally:
        await conn.close()


async def create_indexes(dsn: str, schema: str, definitions: Sequence[str]) -> None:
    """Create indexes from their definitions (as ``pg_get_indexdef`` gives them)."""
    conn = await connect(dsn, schema, autocommit=True)
    try:
        for definition in definitions:
            # the catalogue's own text for an index this rebuild dropped a moment ago
            await conn.execute(definition.encode())
    finally:
        await conn.close()


QUIET_POLLS = 6  # x 500 ms without any record before a partition at its end is done


async def swap(dsn: str, schema: str, staging: str, old: str) -> None:
    """Put ``staging`` in the place of ``schema`` in one transaction, and drop the old one."""
    conn = await connect(dsn, schema)
    try:
        drop_old = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(old))
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ecpds:{schema}",))
            exists = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            await conn.execute(drop_old)
            if await exists.fetchone() is not None:
                await conn.execute(
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                        sql.Identifier(schema), sql.Identifier(old)
                    )
                )
            await conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(staging), sql.Identifier(schema)
                )
            )
            await conn.execute(drop_old)
    finally:
        await conn.close()
