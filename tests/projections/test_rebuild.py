"""``projections.rebuild`` against the real Kafka broker and PostgreSQL, with the live
projector running throughout."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bus.settings import Settings
from projections.db import connect
from projections.migrate import migrate
from projections.projector import Projector
from projections.rebuild import create_indexes, drop_secondary_indexes, rebuild
from tests.projections import stream
from tests.projections.support import (
    create_topics,
    drop,
    project,
    publish,
    snapshot,
    wait_caught_up,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_rebuild_equals_live_and_live_continues_after_the_swap(
    kafka: str, postgres: str, settings: Settings, schema: str, unique: str
) -> None:
    """The rebuilt tables equal the live ones row for row; events published during a rebuild
    reach the swapped-in tables through the live projector, which never stopped."""
    settings = replace(settings, pg_dsn=postgres, kafka_bootstrap=kafka)
    prefix = f"test.{unique}"
    name = f"test-{unique}"
    topics = await create_topics(kafka, prefix)
    ends = await publish(kafka, prefix, stream.events(600))
    live = Projector(dsn=postgres, bootstrap=kafka, schema=schema, name=name, topics=topics)
    task = asyncio.create_task(live.run())
    try:
        await wait_caught_up(postgres, schema, name, ends)
        before = await snapshot(postgres, schema)
        report = await rebuild(settings, schema=schema, name=name, topics=topics)
        assert report.events == sum(v + 1 for v in ends.values())
        assert await snapshot(postgres, schema) == before

        # a second rebuild while events keep arriving: the live projector follows the swap
        more = stream.events(600, seed=8, first=10_000, with_config=False)
        publishing = asyncio.create_task(publish(kafka, prefix, more))
        await rebuild(settings, schema=schema, name=name, topics=topics)
        ends.update(await publishing)
        await wait_caught_up(postgres, schema, name, ends)
    finally:
        live.stop()
        await asyncio.wait_for(task, 30)
    clean = f"{schema}_clean"
    await migrate(postgres, clean)
    try:
        await project(postgres, kafka, clean, f"{name}-clean", topics, ends)
        assert await snapshot(postgres, schema) == await snapshot(postgres, clean)
    finally:
        await drop(postgres, clean)


async def _indexes(dsn: str, schema: str) -> list[tuple[str, str]]:
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT indexname, replace(indexdef, %s, 'S') FROM pg_indexes"
            " WHERE schemaname = %s ORDER BY 1",
            (f"{schema}.", schema),
        )
        return await cur.fetchall()
    finally:
        await conn.close()


async def test_secondary_indexes_dropped_for_the_replay_come_back_the_same(
    postgres: str, schema: str
) -> None:
    """The indexes a rebuild drops for its replay are created again with their definitions,
    and the primary keys the replay's upserts need are never dropped."""
    before = await _indexes(postgres, schema)
    definitions = await drop_secondary_indexes(postgres, schema)
    during = await _indexes(postgres, schema)
    assert len(definitions) >= 10
    assert {name for name, _ in during} >= {"transfers_pkey", "transfer_history_pkey"}
    assert all("UNIQUE" in definition for _, definition in during)
    await create_indexes(postgres, schema, definitions)
    assert await _indexes(postgres, schema) == before
