"""Fixtures of the acquisition tests: their own topics, a live configuration to define hosts
and destinations in, an operator key, a real local store, and helpers that start the runner
stack and read the events back from Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import codec
from bus.config.apply import events_for, plan
from bus.config.secrets import OperatorKey
from bus.config.view import LiveConfig
from bus.events import Event
from bus.publisher import Publisher
from bus.settings import Settings
from bus.topics import partition_counts
from producers.acquisition.runner import RuntimeOptions, Scheduler, running
from producers.ingest.service import IngestTopics


@dataclass(frozen=True)
class Names:
    """The topics, store and key file of one test module."""

    config: str
    acquisition: str
    topics: IngestTopics
    store: Path
    key_file: Path

    def options(self) -> RuntimeOptions:
        return RuntimeOptions(
            config_topic=self.config,
            acquisition_topic=self.acquisition,
            topics=self.topics,
            store_root=self.store,
            durable=False,
        )


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Names:
    u = uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp(f"acq-{u}")
    return Names(
        config=f"test.{u}.config",
        acquisition=f"test.{u}.acquisition",
        topics=IngestTopics(f"test.{u}.datafiles", f"test.{u}.transfers"),
        store=root / "store",
        key_file=root / "operator.key",
    )


@pytest.fixture(scope="module")
def acq_settings(settings: Settings, names: Names) -> Settings:
    return dataclasses.replace(settings, key_file=names.key_file)


@pytest.fixture(scope="module")
def operator_key(names: Names) -> OperatorKey:
    return OperatorKey.load(names.key_file)


@pytest.fixture(scope="module")
async def live(kafka: str, names: Names) -> AsyncIterator[LiveConfig]:
    async with LiveConfig(kafka, names.config) as config:
        await config.ready()
        yield config


@pytest.fixture(scope="module")
async def publisher(kafka: str) -> AsyncIterator[Publisher]:
    async with Publisher(kafka) as pub:
        yield pub


@dataclass
class Env:
    """What a test needs: define configuration, run the stack, read events."""

    kafka: str
    names: Names
    settings: Settings
    live: LiveConfig
    publisher: Publisher
    key: OperatorKey

    async def define(self, *entities: object) -> None:
        """Publish configuration entities and wait until the live view has them."""
        changes = plan(self.live.view, list(entities))  # type: ignore[arg-type]
        published = [
            await self.publisher.publish(self.names.config, k, e)
            for k, e in events_for(changes, source="test")
        ]
        if published:
            await self.live.reached(published, timeout=20)

    @contextlib.asynccontextmanager
    async def runner(self, limit: int = 16) -> AsyncIterator[Scheduler]:
        """The acquisition runner, polling in the background until the block ends."""
        options = dataclasses.replace(self.names.options(), limit=limit)
        async with running(self.settings, options) as scheduler:
            stop = asyncio.Event()
            task = asyncio.create_task(scheduler.run(stop))
            try:
                yield scheduler
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)

    async def events(self, topic: str) -> list[Event]:
        return await read_topic(self.kafka, topic)

    async def acquisition(self, host: str) -> list[Event]:
        return [
            e
            for e in await self.events(self.names.acquisition)
            if getattr(e, "host_id", "") == host
        ]

    async def until(
        self, topic: str, check: Callable[[list[Event]], bool], timeout: float = 30
    ) -> list[Event]:
        """Re-read ``topic`` until ``check`` holds on its events (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.events(topic)
            if check(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met on {topic}: {found[-5:]}")
            await asyncio.sleep(0.3)


@pytest.fixture(scope="module")
def env(
    kafka: str,
    names: Names,
    acq_settings: Settings,
    live: LiveConfig,
    publisher: Publisher,
    operator_key: OperatorKey,
) -> Env:
    return Env(kafka, names, acq_settings, live, publisher, operator_key)


async def read_topic(kafka: str, topic: str) -> list[Event]:
    """Every event of ``topic``, read up to its current end (partitions one after another)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        counts = await partition_counts(kafka, [topic])
        if not counts.get(topic):
            return []
        assigned = [TopicPartition(topic, p) for p in range(counts[topic])]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        found: list[Event] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                found.extend(codec.decode(r.value) for r in records if r.offset < ends[tp])
        found.sort(key=lambda e: e.envelope.occurred_at)
        return found
    finally:
        await consumer.stop()
