"""Publisher, topics and the consumer runner against the real local Kafka broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import codec
from bus.consumer import ConsumerRunner, Received
from bus.errors import PermanentError, TransientError
from bus.events import envelope
from bus.events.deadletter import DeadLettered, DeadLetterReason
from bus.events.movers import MoverHeartbeat
from bus.publisher import Publisher
from bus.settings import ROOT, Settings
from bus.topics import DEADLETTER, TopicSpec, apply_topics, catalogue, partition_counts

pytestmark = pytest.mark.kafka


def heartbeat(n: int) -> MoverHeartbeat:
    return MoverHeartbeat(
        envelope=envelope("test", f"mover-{n}"),
        mover_id=f"mover-{n}",
        transfer_group="default",
        capacity=8,
        running=n % 8,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def movers_spec(unique: str) -> TopicSpec:
    return TopicSpec(
        f"test.{unique}.movers", "mover id", 2, "delete", 3_600_000, ("ecpds.movers",), "test topic"
    )


async def wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def run_until(runner: ConsumerRunner, condition: Callable[[], bool]) -> None:
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(condition)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


def collector(seen: list[Received]) -> Callable[[Received], Awaitable[None]]:
    async def handle(received: Received) -> None:
        seen.append(received)

    return handle


async def dead_letters_for(bootstrap: str, topic: str) -> list[DeadLettered]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(DEADLETTER, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[DeadLettered] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    event = codec.decode(r.value)
                    if isinstance(event, DeadLettered) and event.origin_topic == topic:
                        found.append(event)
        return found
    finally:
        await consumer.stop()


@pytest.fixture
async def publisher(kafka: str) -> Publisher:
    pub = Publisher(kafka, client_id="test")
    await pub.start()
    yield pub  # type: ignore[misc]
    await pub.stop()


async def test_apply_topics_is_idempotent(kafka: str, unique: str) -> None:
    """Applying the same declarations twice creates once, then changes nothing."""
    specs = [
        movers_spec(unique),
        TopicSpec(
            f"test.{unique}.config", "kind/id", 1, "compact", -1, ("ecpds.config",), "compacted"
        ),
    ]
    first = await apply_topics(kafka, specs)
    assert [c.action for c in first] == ["created", "created"]
    # a just-created topic's metadata settles on the broker a moment later: wait for it
    for _ in range(50):
        if len(await partition_counts(kafka, [s.name for s in specs])) == len(specs):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    second = await apply_topics(kafka, specs)
    assert [c.action for c in second] == ["unchanged", "unchanged"]


async def test_fixed_catalogue_applies_on_the_broker(kafka: str) -> None:
    """Every declared topic exists after apply, with its declared partition count."""
    await apply_topics(kafka, catalogue())
    wanted = {spec.name: spec.partitions for spec in catalogue()}
    counts: dict[str, int] = {}
    # a topic created a moment ago may show no partitions in metadata until the broker settles
    for _ in range(50):
        counts = await partition_counts(kafka, list(wanted))
        if counts == wanted:
            break
        await asyncio.sleep(0.2)
    assert counts == wanted


async def test_publisher_refuses_a_type_not_allowed_on_the_topic(publisher: Publisher) -> None:
    """Publishing a mover heartbeat on ecpds.config is refused before it reaches Kafka."""
    with pytest.raises(PermanentError):
        await publisher.publish("ecpds.config", "x", heartbeat(1))


async def test_consume_commit_and_resume_after_restart(
    kafka: str, unique: str, publisher: Publisher
) -> None:
    """A new runner in the same group resumes after the last committed offset: nothing twice."""
    spec = movers_spec(unique)
    await apply_topics(kafka, [spec])
    first = [heartbeat(n) for n in range(20)]
    await publisher.publish_many((spec.name, e.mover_id, e) for e in first)

    seen: list[Received] = []
    runner = ConsumerRunner(
        kafka, [spec.name], f"g-{unique}", collector(seen), publisher, specs=[spec]
    )
    await run_until(runner, lambda: len(seen) >= 20)
    assert {r.event.envelope.event_id for r in seen} == {e.envelope.event_id for e in first}

    second = [heartbeat(n) for n in range(20, 27)]
    await publisher.publish_many((spec.name, e.mover_id, e) for e in second)
    again: list[Received] = []
    runner = ConsumerRunner(
        kafka, [spec.name], f"g-{unique}", collector(again), publisher, specs=[spec]
    )
    await run_until(runner, lambda: len(again) >= 7)
    await asyncio.sleep(0.5)
    assert sorted(r.event.mover_id for r in again) == sorted(e.mover_id for e in second)


async def test_poison_message_is_dead_lettered_and_the_next_processed(
    kafka: str, unique: str, publisher: Publisher
) -> None:
    """Garbage, unknown fingerprints and wrong types are dead-lettered; good events flow."""
    spec = movers_spec(unique)
    await apply_topics(kafka, [spec])
    garbage = await publisher.publish_raw(spec.name, b"k", b"not avro at all", [])
    unknown = await publisher.publish_raw(spec.name, b"k", b"\xc3\x01" + b"\x00" * 8 + b"\x02", [])
    wrong = await publisher.publish_raw(
        spec.name, b"k", codec.encode(dead_letter_like()), codec.headers(dead_letter_like())
    )
    good = heartbeat(99)
    await publisher.publish(spec.name, "k", good)

    seen: list[Received] = []
    runner = ConsumerRunner(
        kafka, [spec.name], f"g-{unique}", collector(seen), publisher, specs=[spec]
    )
    await run_until(runner, lambda: len(seen) >= 1 and runner.dead_lettered >= 3)
    assert [r.event.envelope.event_id for r in seen] == [good.envelope.event_id]

    letters = {d.origin_offset: d for d in await dead_letters_for(kafka, spec.name)}
    assert letters[garbage.offset].reason == DeadLetterReason.UNDECODABLE
    assert letters[garbage.offset].original_value == b"not avro at all"
    assert letters[unknown.offset].reason == DeadLetterReason.UNKNOWN_SCHEMA
    assert letters[wrong.offset].reason == DeadLetterReason.TYPE_NOT_ALLOWED
    assert all(d.origin_partition == garbage.partition for d in letters.values())


def dead_letter_like() -> DeadLettered:
    return DeadLettered(
        envelope=envelope("test", "x"),
        reason=DeadLetterReason.UNDECODABLE,
        message="m",
        origin_topic="t",
        origin_partition=0,
        origin_offset=0,
    )


async def test_retriable_failures_are_retried_and_permanent_ones_dead_lettered(
    kafka: str, unique: str, publisher: Publisher
) -> None:
    """A handler failing retriably then succeeding is not dead-lettered; a permanent one is."""
    spec = movers_spec(unique)
    await apply_topics(kafka, [spec])
    flaky, doomed, fine = heartbeat(1), heartbeat(2), heartbeat(3)
    for e in (flaky, doomed, fine):
        await publisher.publish(spec.name, "same-key", e)
    attempts: dict[str, int] = {}
    done: list[str] = []

    async def handle(received: Received) -> None:
        mover = received.event.mover_id
        attempts[mover] = attempts.get(mover, 0) + 1
        if mover == "mover-1" and attempts[mover] <= 2:
            raise TransientError("database restarting")
        if mover == "mover-2":
            raise PermanentError("this event can never be applied")
        done.append(mover)

    runner = ConsumerRunner(kafka, [spec.name], f"g-{unique}", handle, publisher, specs=[spec])
    await run_until(runner, lambda: done == ["mover-1", "mover-3"])
    assert attempts["mover-1"] == 3
    assert runner.dead_lettered == 1
    letters = await dead_letters_for(kafka, spec.name)
    assert [d.reason for d in letters] == [DeadLetterReason.PERMANENT_FAILURE]
    assert letters[0].error_class == "PermanentError"


def kafka_script(settings: Settings, action: str) -> None:
    subprocess.run(
        ["bash", str(ROOT / "infra/kafka/kafka.sh"), action],
        check=True,
        env={**os.environ, **settings.infra_env()},
        capture_output=True,
    )


@pytest.mark.slow
async def test_broker_restart_mid_stream_loses_nothing(
    kafka: str, unique: str, settings: Settings, own_kafka: bool
) -> None:
    """Events published and consumed across a broker restart all arrive; none is lost."""
    if not own_kafka:
        pytest.skip("the broker was running before this session: shared, not restarted")
    spec = movers_spec(unique)
    await apply_topics(kafka, [spec])
    publisher = Publisher(kafka, client_id="restart-test")
    await publisher.start()
    sent: set[str] = set()
    seen: set[str] = set()

    async def handle(received: Received) -> None:
        seen.add(received.event.envelope.event_id)

    runner = ConsumerRunner(kafka, [spec.name], f"g-{unique}", handle, publisher, specs=[spec])
    consuming = asyncio.create_task(runner.run())

    async def produce(count: int) -> None:
        for n in range(count):
            event = heartbeat(n)
            while True:
                try:
                    await publisher.publish(spec.name, str(n), event)
                    break
                except TransientError:
                    await asyncio.sleep(0.5)  # the broker is away: try the same event again
            sent.add(event.envelope.event_id)
            await asyncio.sleep(0.002)

    producing = asyncio.create_task(produce(600))
    await wait_until(lambda: len(seen) >= 100)
    await asyncio.to_thread(kafka_script, settings, "stop")
    await asyncio.sleep(1.0)
    await asyncio.to_thread(kafka_script, settings, "start")
    await asyncio.wait_for(producing, 120)
    try:
        await wait_until(lambda: seen >= sent, 90)
    finally:
        runner.stop()
        await asyncio.wait_for(consuming, 30)
        await publisher.stop()
    assert len(sent) == 600
    assert seen >= sent
