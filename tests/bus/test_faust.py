"""The faust app factory: the Avro codec is registered and an agent gets event dataclasses."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bus.events.movers import MoverHeartbeat
from bus.faust_app import FETCH_MAX_WAIT_MS, make_app
from bus.publisher import Publisher
from bus.settings import Settings
from bus.topics import TopicSpec, apply_topics
from tests.bus.test_kafka import heartbeat

pytestmark = pytest.mark.kafka


async def test_agent_receives_decoded_events_quickly(
    kafka: str, unique: str, settings: Settings
) -> None:
    """An agent on an ecpds topic receives the published heartbeats as MoverHeartbeat objects."""
    spec = TopicSpec(
        f"test.{unique}.faust", "mover", 2, "delete", 3_600_000, ("ecpds.movers",), "t"
    )
    await apply_topics(kafka, [spec])
    app = make_app(f"test-{unique}", settings)
    got: list[MoverHeartbeat] = []
    all_in = asyncio.Event()

    @app.agent(app.topic(spec.name))
    async def collect(stream):  # type: ignore[no-untyped-def]
        async for event in stream:
            got.append(event)
            if len(got) >= 5:
                all_in.set()

    loop = asyncio.get_running_loop()
    started = loop.time()
    await app.start()
    try:
        sent = [heartbeat(n) for n in range(5)]
        async with Publisher(kafka) as publisher:
            for event in sent:
                await publisher.publish(spec.name, event.mover_id, event)
        await asyncio.wait_for(all_in.wait(), 60)
    finally:
        await app.stop()
    assert sorted(e.envelope.event_id for e in got) == sorted(e.envelope.event_id for e in sent)
    assert loop.time() - started < 30, "the quick-start settings should join in seconds"
    # the worker consumer's fetches are bounded (faust's own 1.5 s long poll stalled the
    # scheduler): the value reached the fetcher aiokafka built at start
    worker = app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
    assert worker._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    assert worker._fetcher._fetch_max_wait_ms == FETCH_MAX_WAIT_MS


def test_own_topics_get_the_clusters_copies(settings: Settings, unique: str) -> None:
    """faust's own topics (the schedulers' leader topic) get ``ECPDS_KAFKA_REPLICATION``
    copies, as every ecpds topic does: one copy would go offline with its broker."""
    app = make_app(f"test-{unique}", replace(settings, kafka_replication=3))
    assert app.conf.topic_replication_factor == 3
