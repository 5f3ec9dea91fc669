"""``projections.rebuild`` against the real Kafka broker and PostgreSQL, with the live
projector running throughout."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bus.settings import Settings
from projections.migrate import migrate
from projections.projector import Projector
from projections.rebuild import rebuild
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
