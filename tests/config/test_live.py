"""LiveConfig against the real Kafka: rebuilt from the compacted topic, then kept live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bus.config import key_of
from bus.config.apply import events_for, plan
from bus.config.view import ConfigView, LiveConfig, config_spec
from bus.events import Event
from bus.publisher import Publisher
from bus.topics import apply_topics
from tests.config import factories as f

pytestmark = pytest.mark.kafka


@pytest.fixture
async def topic(kafka: str, unique: str) -> str:
    name = f"test.{unique}.config"
    await apply_topics(kafka, [config_spec(name)])
    return name


@pytest.fixture
async def publisher(kafka: str, topic: str) -> AsyncIterator[Publisher]:
    async with Publisher(kafka, specs=[config_spec(topic)]) as pub:
        yield pub


def defining(*entities: object) -> list[tuple[str, Event]]:
    return events_for(plan(ConfigView(), list(entities)), source="test")  # type: ignore[arg-type]


async def test_rebuilds_from_the_topic_then_follows_changes(
    kafka: str, topic: str, publisher: Publisher
) -> None:
    """A new LiveConfig is ready with everything already on the topic, then sees new events."""
    for key, event in defining(f.destination(), f.host(), f.association()):
        await publisher.publish(topic, key, event)
    async with LiveConfig(kafka, topic) as live:
        assert set(live.view.destinations) == {"site-a"}
        assert [h.id for h in live.view.hosts_for("site-a")] == ["ftp-1"]
        seen: list[int] = []
        live.add_listener(lambda view, events: seen.append(len(events)))
        view = live.view
        changes = plan(view, [f.destination("site-b"), f.destination(max_connections=9)])
        published = [
            await publisher.publish(topic, key, event)
            for key, event in events_for(changes, source="test")
        ]
        after = await live.reached(published, timeout=20)
        assert after is live.view
        assert set(after.destinations) == {"site-a", "site-b"}
        assert after.destinations["site-a"].max_connections == 9
        assert sum(seen) == 2
        assert view.destinations["site-a"].max_connections == 5  # the old view is untouched


async def test_restart_rebuilds_the_same_view(kafka: str, topic: str, publisher: Publisher) -> None:
    """Two LiveConfigs started one after the other over the same topic hold equal views,
    including removals (the latest event per key wins)."""
    events = defining(f.destination("a"), f.destination("b"), f.host())
    for key, event in events:
        await publisher.publish(topic, key, event)
    for key, event in events_for(
        plan(ConfigView().evolve(e for _, e in events), [], prune=True)[:1], source="test"
    ):
        await publisher.publish(topic, key, event)
    async with LiveConfig(kafka, topic) as first:
        view = first.view
    async with LiveConfig(kafka, topic) as second:
        assert second.view == view
    assert len(view.destinations) + len(view.hosts) == 2


async def test_empty_topic_is_ready_at_once(kafka: str, unique: str) -> None:
    """A configuration topic created by the view itself is ready with an empty view."""
    live = LiveConfig(kafka, f"test.{unique}.empty-config")
    await live.start()
    try:
        assert await asyncio.wait_for(live.ready(), 20) == ConfigView()
    finally:
        await live.stop()


async def test_undecodable_record_is_skipped(kafka: str, topic: str, publisher: Publisher) -> None:
    """A record that is not an ecpds event does not stop the view from reading what follows."""
    await publisher.publish_raw(topic, b"junk/1", b"not avro", [])
    ((key, event),) = defining(f.destination("after-junk"))
    assert key == key_of(f.destination("after-junk"))
    await publisher.publish(topic, key, event)
    async with LiveConfig(kafka, topic) as live:
        assert set(live.view.destinations) == {"after-junk"}
