"""Fixtures of the ingest tests: the ingest stack on its own test topics, a real local store
in a temporary folder, a known API token, and helpers to define configuration and read the
events back from Kafka."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import codec
from bus.config.apply import events_for, plan
from bus.config.view import LiveConfig
from bus.errors import DecodeError
from bus.events import Event
from bus.kafka_access import kafka_options
from bus.publisher import Publisher
from bus.settings import Settings
from bus.tokens import token_digest
from bus.topics import partition_counts
from producers.api.app import create_app
from producers.api.ingest import ApiState
from producers.api.runtime import RuntimeOptions, running
from producers.ingest.service import IngestTopics

TOKEN = "test-operator-token"


@dataclass(frozen=True)
class Names:
    """The topics, store folder and token file of one test module."""

    config: str
    topics: IngestTopics
    store: Path
    tokens: Path
    portal: str

    def options(self) -> RuntimeOptions:
        return RuntimeOptions(
            config_topic=self.config,
            topics=self.topics,
            store_root=self.store,
            tokens_file=self.tokens,
            portal_topic=self.portal,
        )


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Names:
    u = uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp(f"ingest-{u}")
    tokens = root / "api-tokens"
    tokens.write_text(f"ops:{token_digest(TOKEN)}\n")
    return Names(
        config=f"test.{u}.config",
        topics=IngestTopics(f"test.{u}.datafiles", f"test.{u}.transfers"),
        store=root / "store",
        tokens=tokens,
        portal=f"test.{u}.portal",
    )


@pytest.fixture(scope="module")
async def stack(kafka: str, settings: Settings, names: Names) -> AsyncIterator[ApiState]:
    async with running(settings, names.options()) as state:
        yield state


@pytest.fixture(scope="module")
async def client(stack: ApiState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(stack))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://ingest.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


@pytest.fixture(scope="module")
async def publisher(kafka: str) -> AsyncIterator[Publisher]:
    async with Publisher(kafka) as pub:
        yield pub


async def define(state: ApiState, publisher: Publisher, topic: str, *entities: object) -> None:
    """Publish configuration entities and wait until the API's live view has them."""
    live = state.config
    assert isinstance(live, LiveConfig)
    changes = plan(live.view, list(entities))  # type: ignore[arg-type]
    published = [
        await publisher.publish(topic, key, event)
        for key, event in events_for(changes, source="test")
    ]
    if published:
        await live.reached(published, timeout=20)


async def read_topic(kafka: str, topic: str) -> list[tuple[int, int, Event]]:
    """Every event of ``topic`` as (partition, offset, event), read up to its current end
    (records no schema can read are left out)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_options(),  # as every client of ours: over SASL_SSL in the SASL leg
    )
    await consumer.start()
    try:
        count = (await partition_counts(kafka, [topic]))[topic]
        assigned = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        found: list[tuple[int, int, Event]] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    if r.offset < ends[tp]:
                        with contextlib.suppress(DecodeError):  # a poison record of a test
                            found.append((tp.partition, r.offset, codec.decode(r.value)))
        return found
    finally:
        await consumer.stop()


async def events_of(kafka: str, topics: IngestTopics, data_file_id: str) -> list[Event]:
    """The events of one data file on both topics: datafiles ones first, each in log order."""
    found: list[Event] = []
    for topic in (topics.datafiles, topics.transfers):
        for _, _, event in await read_topic(kafka, topic):
            if getattr(event, "data_file_id", None) == data_file_id:
                found.append(event)
    return found
