"""Helpers for projection tests: unique topics, publishing a stream, snapshots of a schema,
running a projector until it has caught up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from psycopg import sql

from bus.events import Event
from bus.publisher import Publisher
from bus.topics import TopicSpec, apply_topics
from projections.db import connect
from projections.projector import Projector
from tests.projections.stream import FAMILIES, Item

NOT_COMPARED = frozenset({"schema_migrations"})  # applied_at is a wall-clock time


def specs(prefix: str) -> list[TopicSpec]:
    """One test topic per family, e.g. ``test.<unique>.transfers``."""
    return [
        TopicSpec(f"{prefix}.{family}", "key", parts, "delete", 3_600_000, (ns,), "test topic")
        for family, ns, parts in FAMILIES
    ]


async def create_topics(bootstrap: str, prefix: str) -> list[str]:
    declared = specs(prefix)
    await apply_topics(bootstrap, declared)
    return [s.name for s in declared]


async def publish(bootstrap: str, prefix: str, items: Iterable[Item]) -> dict[str, int]:
    """Publish items to the prefix's topics; the end offset per (topic, partition) afterwards."""
    async with Publisher(bootstrap, client_id="test-projections") as pub:
        chunk: list[tuple[str, str, Event]] = []
        ends: dict[str, int] = {}
        for item in items:
            chunk.append((f"{prefix}.{item.family}", item.key, item.event))
            if len(chunk) >= 2000:
                for p in await pub.publish_many(chunk):
                    ends[f"{p.topic}/{p.partition}"] = p.offset
                chunk = []
        if chunk:
            for p in await pub.publish_many(chunk):
                ends[f"{p.topic}/{p.partition}"] = p.offset
    return ends


async def positions(dsn: str, schema: str, name: str) -> dict[str, int]:
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(
            'SELECT topic, "partition", "offset" FROM projection_position WHERE projection = %s',
            (name,),
        )
        return {f"{t}/{p}": o for t, p, o in await cur.fetchall()}
    finally:
        await conn.close()


async def wait_caught_up(
    dsn: str, schema: str, name: str, ends: dict[str, int], seconds: float = 60.0
) -> None:
    """Wait until the stored positions reach ``ends`` (last offset per topic/partition)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            stored = await positions(dsn, schema, name)
        except Exception:
            stored = {}
        if all(stored.get(k, -1) >= v for k, v in ends.items()):
            return
        if loop.time() > deadline:
            missing = {k: (stored.get(k), v) for k, v in ends.items() if stored.get(k, -1) < v}
            raise AssertionError(f"projection did not catch up: {missing}")
        await asyncio.sleep(0.1)


async def project(
    dsn: str,
    bootstrap: str,
    schema: str,
    name: str,
    topics: Sequence[str],
    ends: dict[str, int],
    group_id: str | None = None,
) -> None:
    """Run a projector until it has stored ``ends``, then stop it."""
    projector = Projector(
        dsn=dsn, bootstrap=bootstrap, schema=schema, name=name, topics=topics, group_id=group_id
    )
    task = asyncio.create_task(projector.run())
    try:
        await wait_caught_up(dsn, schema, name, ends)
    finally:
        projector.stop()
        await asyncio.wait_for(task, 30)


async def snapshot(dsn: str, schema: str) -> dict[str, list[str]]:
    """Every row of every table of ``schema`` as text, sorted (tables by name)."""
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY 1",
            (schema,),
        )
        tables = [t for (t,) in await cur.fetchall() if t not in NOT_COMPARED]
        out: dict[str, list[str]] = {}
        for table in tables:
            query: sql.SQL | sql.Composed = sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(
                sql.Identifier(table)
            )
            if table == "projection_position":  # compared whatever the projection's name
                query = sql.SQL(
                    'SELECT row(topic, "partition", "offset")::text FROM projection_position'
                    " ORDER BY 1"
                )
            rows = await (await conn.execute(query)).fetchall()
            out[table] = [r[0] for r in rows]
        return out
    finally:
        await conn.close()


async def drop(dsn: str, *schemas: str) -> None:
    conn = await connect(dsn, "public", autocommit=True)
    try:
        for schema in schemas:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
    finally:
        await conn.close()
