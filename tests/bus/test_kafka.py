"""Publisher, topics and a stage across a broker restart, against the real local Kafka broker
(the stage kit's contract itself is in test_stage.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bus.errors import PermanentError, TransientError
from bus.events import envelope
from bus.events.movers import MoverHeartbeat
from bus.publisher import Publisher
from bus.settings import ROOT, Settings
from bus.stage import Publish, Received, Stage
from bus.topics import TopicSpec, apply_topics, catalogue, partition_counts

pytestmark = pytest.mark.kafka


def heartbeat(n: int, mover: str | None = None) -> MoverHeartbeat:
    mover_id = mover or f"mover-{n}"
    return MoverHeartbeat(
        envelope=envelope("test", mover_id),
        mover_id=mover_id,
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


async def test_two_applies_at_once_both_raise_the_partitions(kafka: str, unique: str) -> None:
    """Two instances applying the same wider declaration at once (two schedulers starting
    together) both succeed: the one that finds the partitions already raised does not fail."""
    narrow = movers_spec(unique)
    await apply_topics(kafka, [narrow])
    for _ in range(50):  # the new topic's metadata settles a moment later
        if await partition_counts(kafka, [narrow.name]) == {narrow.name: 2}:
            break
        await asyncio.sleep(0.2)
    wide = replace(narrow, partitions=4)
    changes = await asyncio.gather(*(apply_topics(kafka, [wide]) for _ in range(3)))
    assert {c.action for each in changes for c in each} <= {"partitions", "unchanged"}
    assert await partition_counts(kafka, [wide.name]) == {wide.name: 4}


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

    class Seen:
        async def handle(self, received: Received) -> Sequence[Publish]:
            seen.add(received.event.envelope.event_id)
            return ()

    runner = Stage(
        Seen(),
        bootstrap=kafka,
        topics=[spec.name],
        group_id=f"g-{unique}",
        source="restart-test",
        publisher=publisher,
        specs=[spec],
    )
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
