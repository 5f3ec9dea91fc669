"""``bus.feeds.Feed`` against the real broker: the one group-less reader every fold stands on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition

from bus.errors import TransientError
from bus.events import Event, envelope
from bus.events.movers import TransferAbortRequested
from bus.feeds import Feed
from bus.publisher import Published, Publisher
from bus.topics import TopicSpec, apply_topics
from tests.bus.test_kafka import heartbeat as beat

pytestmark = pytest.mark.kafka


def abort(n: int) -> TransferAbortRequested:
    return TransferAbortRequested(
        envelope=envelope("test", f"t-{n}"),
        transfer_id=f"t-{n}",
        destination="site-a",
        attempt=1,
        reason="test",
    )


def ids(events: Sequence[Event]) -> list[str]:
    return sorted(getattr(e, "mover_id", None) or getattr(e, "transfer_id", "") for e in events)


class Seen:
    """A fold that only remembers what it was given, batch by batch."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches = 0

    def __call__(self, events: Sequence[Event]) -> None:
        self.events += events
        self.batches += 1


@pytest.fixture
async def topic(kafka: str, unique: str) -> str:
    name = f"test.{unique}.feed"
    await apply_topics(kafka, [TopicSpec(name, "id", 2, "delete", 3_600_000, (), "feed test")])
    return name


@pytest.fixture
async def publisher(kafka: str) -> AsyncIterator[Publisher]:
    async with Publisher(kafka, client_id="test-feeds") as pub:
        yield pub


async def publish(publisher: Publisher, topic: str, *events: Event) -> list[Published]:
    return [await publisher.publish(topic, f"k{i}", e) for i, e in enumerate(events)]


def past(published: Sequence[Published]) -> dict[TopicPartition, int]:
    """The positions just after these published events."""
    return {TopicPartition(p.topic, p.partition): p.offset + 1 for p in published}


async def test_reads_every_partition_from_the_beginning_then_follows(
    kafka: str, topic: str, publisher: Publisher
) -> None:
    """Events of both partitions written before start are folded by ``ready``; later ones are
    folded as they arrive, and ``reached`` waits until they are."""
    await publish(publisher, topic, *(beat(n) for n in range(6)))
    seen = Seen()
    feed = Feed(kafka, [topic], seen)
    await feed.start()
    try:
        await feed.ready(20)
        assert feed.caught_up
        assert ids(seen.events) == [f"mover-{n}" for n in range(6)]
        later = await publish(publisher, topic, beat(6), beat(7))
        await feed.reached(past(later))
        assert ids(seen.events) == [f"mover-{n}" for n in range(8)]
    finally:
        await feed.stop()


async def test_an_empty_topic_is_caught_up_at_start(kafka: str, topic: str) -> None:
    """With nothing on the topic, the feed is caught up as soon as it has started."""
    feed = Feed(kafka, [topic], Seen())
    await feed.start()
    try:
        assert feed.caught_up
    finally:
        await feed.stop()


async def test_only_hands_over_the_named_types_and_skips_junk(
    kafka: str, topic: str, publisher: Publisher
) -> None:
    """With ``only``, other event types and undecodable records are passed over, and the feed
    still reaches its end."""
    await publisher.publish_raw(topic, b"junk", b"not avro", [])
    await publish(publisher, topic, beat(1), abort(1), beat(2), abort(2))
    seen = Seen()
    feed = Feed(kafka, [topic], seen, only=[TransferAbortRequested.AVRO_NAME])
    await feed.start()
    try:
        await feed.ready(20)
        assert ids(seen.events) == ["t-1", "t-2"]
    finally:
        await feed.stop()


async def test_since_starts_at_the_first_record_written_after_it(
    kafka: str, topic: str, publisher: Publisher
) -> None:
    """A topic given a ``since`` time is read from the first record at or after it."""
    await publish(publisher, topic, beat(1), beat(2))
    await asyncio.sleep(0.05)  # record timestamps are in milliseconds
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await publish(publisher, topic, beat(3))
    seen = Seen()
    feed = Feed(kafka, [topic], seen, since={topic: since})
    await feed.start()
    try:
        await feed.ready(20)
        assert ids(seen.events) == ["mover-3"]
    finally:
        await feed.stop()


async def test_an_applied_position_is_skipped_when_read_back(
    kafka: str, topic: str, publisher: Publisher
) -> None:
    """A position named by ``applied`` before the feed reads it is not handed over again."""
    seen = Seen()
    feed = Feed(kafka, [topic], seen)
    await feed.start()
    try:
        await feed.ready(20)
        first = await publisher.publish(topic, "same-key", beat(1))
        await feed.reached(past([first]))
        # the next record of that key lands just after it: name it before it is written
        feed.applied(first.topic, first.partition, first.offset + 1)
        own = await publisher.publish(topic, "same-key", beat(2))
        assert (own.partition, own.offset) == (first.partition, first.offset + 1)
        other = await publisher.publish(topic, "same-key", beat(3))
        await feed.reached(past([other]))
        assert ids(seen.events) == ["mover-1", "mover-3"]
    finally:
        await feed.stop()


async def test_a_fold_that_raises_stops_the_feed_and_says_so(
    kafka: str, topic: str, publisher: Publisher
) -> None:
    """A callback error ends the feed; ``ready`` raises with it rather than timing out."""

    def broken(events: Sequence[Event]) -> None:
        raise ValueError("fold broke")

    await publish(publisher, topic, beat(1))
    feed = Feed(kafka, [topic], broken)
    await feed.start()
    try:
        with pytest.raises(TransientError, match="fold broke"):
            await feed.ready(20)
        assert isinstance(feed.failure, ValueError)
        assert not feed.caught_up
    finally:
        await feed.stop()
