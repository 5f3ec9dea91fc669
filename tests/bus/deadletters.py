"""Helpers for the poison tests of every stage: a record no schema can read, and the dead
letters a consumer group wrote for a topic."""

from __future__ import annotations

from bus.events.deadletter import DeadLettered
from bus.publisher import Published, Publisher
from tests.ingest.conftest import read_topic

GARBAGE = b"not avro at all"


async def publish_poison(publisher: Publisher, topic: str, key: bytes = b"poison") -> Published:
    """A record on ``topic`` that no consumer can decode."""
    return await publisher.publish_raw(topic, key, GARBAGE, [])


async def dead_letters(
    kafka: str, deadletter_topic: str, origin_topic: str, group: str
) -> list[DeadLettered]:
    """The dead letters ``group`` wrote for records of ``origin_topic``."""
    return [
        event
        for _, _, event in await read_topic(kafka, deadletter_topic)
        if isinstance(event, DeadLettered)
        and event.origin_topic == origin_topic
        and event.consumer_group == group
    ]
