"""The janitor runner against the real Kafka and a real local store in a temp dir."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.config.source import FixedConfig
from bus.config.view import ConfigView
from bus.events import Event
from bus.events.base import Envelope, TransferStatus
from bus.events.config import DeleteFromSpool
from bus.events.datafiles import DataFileDeleted, DataFileExpired, DataFileReplicated
from bus.events.transfers import TransferExpired
from bus.publisher import Publisher
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.janitor.feed import EventFeed
from consumers.janitor.runner import JanitorRunner
from protocols.base import from_bytes
from store.local import LocalStore
from store.objects import ObjectId, ObjectSpec
from tests.config.factories import destination
from tests.conftest import eventually
from tests.janitor.factories import queued, registered, scheduled, started, stored, succeeded

pytestmark = pytest.mark.kafka
HOLD = TransferStatus.HOLD

CONFIG = FixedConfig(
    ConfigView(
        destinations={
            "site-a": destination("site-a"),
            "fast": destination("fast", delete_from_spool=DeleteFromSpool.ON_SUCCESS),
        }
    )
)


@pytest.fixture
async def topics(kafka: str, unique: str) -> tuple[str, str]:
    datafiles, transfers = f"test.{unique}.datafiles", f"test.{unique}.transfers"
    await apply_topics(
        kafka,
        [
            TopicSpec(datafiles, "data file id", 3, "delete", DAY_MS, ("ecpds.datafiles",), "t"),
            TopicSpec(transfers, "destination", 2, "delete", DAY_MS, ("ecpds.transfers",), "t"),
        ],
    )
    return datafiles, transfers


@pytest.fixture
async def publisher(kafka: str) -> AsyncIterator[Publisher]:
    async with Publisher(kafka) as pub:
        yield pub


class CountingStore(LocalStore):
    """A local store that counts the objects it really deleted; optionally hangs after one."""

    def __init__(self, root: Path, *, hang_after_first: bool = False) -> None:
        super().__init__(root, durable=False)
        self.deleted: list[str] = []
        self.first_deleted = asyncio.Event()
        self._hang = hang_after_first

    async def delete(self, oid: ObjectId) -> None:
        await super().delete(oid)  # raises ObjectNotFound when already gone: not counted
        self.deleted.append(oid)
        self.first_deleted.set()
        if self._hang:
            await asyncio.Event().wait()  # "crash" here: deleted, DataFileDeleted not published


async def put_object(store: LocalStore, dfid: str) -> None:
    await store.put(
        from_bytes(b"payload " + dfid.encode()), ObjectSpec(name=dfid, id=ObjectId(dfid))
    )


async def publish_history(
    publisher: Publisher,
    topics: tuple[str, str],
    dfid: str,
    dest: str,
    expiry: datetime,
    *,
    done: bool,
    status: TransferStatus = TransferStatus.WAIT,
) -> None:
    datafiles, transfers = topics
    await publisher.publish(datafiles, dfid, registered(dfid, dest, expiry))
    await publisher.publish(datafiles, dfid, stored(dfid, "local"))
    events: list[Event] = [queued(dfid, dest, status, expiry)]
    if done:
        events += [scheduled(dfid, dest), started(dfid, dest), succeeded(dfid, dest)]
    for event in events:
        await publisher.publish(transfers, dest, event)


async def read_events(kafka: str, topic: str) -> list[Event]:
    feed = EventFeed(kafka, [topic])
    await feed.start()
    events: list[Event] = []
    try:
        while not feed.caught_up:
            events += await feed.poll(0.5)
    finally:
        await feed.stop()
    return events


def new_id() -> str:
    return uuid.uuid4().hex


async def test_expired_and_delivered_data_is_deleted_and_recorded(
    kafka: str, topics: tuple[str, str], publisher: Publisher, tmp_path: Path
) -> None:
    """Expired files go (with DataFileExpired and DataFileDeleted), a live one stays."""
    store = CountingStore(tmp_path / "store")
    now = datetime.now(UTC)
    past, future = now - timedelta(minutes=5), now + timedelta(hours=1)
    expired, delivered_fast, live, fresh, held = (new_id() for _ in range(5))
    for dfid in (expired, delivered_fast, live, fresh, held):
        await put_object(store, dfid)
    await publish_history(publisher, topics, expired, "site-a", past, done=True)
    await publish_history(publisher, topics, delivered_fast, "fast", future, done=True)
    await publish_history(publisher, topics, live, "site-a", past, done=False)  # WAIT: live
    await publish_history(publisher, topics, fresh, "site-a", future, done=True)
    await publish_history(publisher, topics, held, "site-a", past, done=False, status=HOLD)
    runner = JanitorRunner(
        kafka, store, CONFIG, datafiles_topic=topics[0], transfers_topic=topics[1], interval=0.3
    )
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: _deleted_count(kafka, topics[0], 3))
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
    events = await read_events(kafka, topics[0])
    deleted = {e.data_file_id: e.reason for e in events if isinstance(e, DataFileDeleted)}
    assert deleted == {
        expired: "on-expiration",
        delivered_fast: "on-success",
        held: "on-expiration",
    }
    expired_ids = {e.data_file_id for e in events if isinstance(e, DataFileExpired)}
    assert expired_ids == {expired, held}
    assert sorted(store.deleted) == sorted([expired, delivered_fast, held])
    transfer_events = await read_events(kafka, topics[1])
    (held_expired,) = [e for e in transfer_events if isinstance(e, TransferExpired)]
    assert held_expired.transfer_id == f"{held}-site-a"
    assert held_expired.reason == "not transferred before expiration"
    assert await store.exists(ObjectId(live))
    assert await store.exists(ObjectId(fresh))
    assert not await store.exists(ObjectId(expired))


async def _deleted_count(kafka: str, topic: str, wanted: int) -> bool:
    events = await read_events(kafka, topic)
    return sum(isinstance(e, DataFileDeleted) for e in events) >= wanted


async def test_restart_mid_sweep_resumes_without_double_delete(
    kafka: str, topics: tuple[str, str], publisher: Publisher, tmp_path: Path
) -> None:
    """Killed after its first store delete, a new janitor finishes: each file deleted once."""
    root = tmp_path / "store"
    crashing = CountingStore(root, hang_after_first=True)
    past = datetime.now(UTC) - timedelta(minutes=5)
    files = [new_id() for _ in range(4)]
    for dfid in files:
        await put_object(crashing, dfid)
        await publish_history(publisher, topics, dfid, "site-a", past, done=True)
    first = JanitorRunner(
        kafka, crashing, CONFIG, datafiles_topic=topics[0], transfers_topic=topics[1], interval=0.3
    )
    task = asyncio.create_task(first.run())
    await asyncio.wait_for(crashing.first_deleted.wait(), 30)
    task.cancel()  # the crash: one object is gone, its DataFileDeleted was never published
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(crashing.deleted) == 1

    resumed = CountingStore(root)
    second = JanitorRunner(
        kafka, resumed, CONFIG, datafiles_topic=topics[0], transfers_topic=topics[1], interval=0.3
    )
    task = asyncio.create_task(second.run())
    try:
        await eventually(lambda: _deleted_count(kafka, topics[0], len(files)))
        await asyncio.sleep(1.0)  # a few more sweeps: they must not delete or record again
    finally:
        second.stop()
        await asyncio.wait_for(task, 20)
    events = await read_events(kafka, topics[0])
    assert Counter(
        e.data_file_id for e in events if isinstance(e, DataFileDeleted)
    ) == dict.fromkeys(files, 1)
    assert Counter(
        e.data_file_id for e in events if isinstance(e, DataFileExpired)
    ) == dict.fromkeys(files, 1)
    assert sorted(crashing.deleted + resumed.deleted) == sorted(files)  # no object twice
    assert second.sweeps >= 2


class NamedLocalStores:
    """Stores by name, each a local store (what ``NamedStores`` resolves ``file`` hosts to)."""

    def __init__(self, **stores: LocalStore) -> None:
        self.stores = stores

    def store_for(self, name: str) -> LocalStore:
        return self.stores[name]


async def test_replicas_are_deleted_with_the_stored_copy(
    kafka: str, topics: tuple[str, str], publisher: Publisher, tmp_path: Path
) -> None:
    """An expired file replicated to the archive store loses both copies, one DataFileDeleted
    per store."""
    store, archive = CountingStore(tmp_path / "store"), CountingStore(tmp_path / "archive")
    dfid = new_id()
    await put_object(store, dfid)
    await put_object(archive, dfid)
    past = datetime.now(UTC) - timedelta(minutes=5)
    await publish_history(publisher, topics, dfid, "site-a", past, done=True)
    replica = DataFileReplicated(
        envelope=Envelope(event_id=new_id(), occurred_at=past, source="test", correlation_id=dfid),
        data_file_id=dfid,
        guid=dfid,
        from_store="local",
        to_store="archive",
        location=dfid,
        size=10,
        duration_ms=1,
    )
    await publisher.publish(topics[0], dfid, replica)
    runner = JanitorRunner(
        kafka,
        store,
        CONFIG,
        stores=NamedLocalStores(local=store, archive=archive),
        datafiles_topic=topics[0],
        transfers_topic=topics[1],
        interval=0.3,
    )
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: _deleted_count(kafka, topics[0], 2))
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
    events = await read_events(kafka, topics[0])
    assert sorted(e.store for e in events if isinstance(e, DataFileDeleted)) == ["archive", "local"]
    assert (store.deleted, archive.deleted) == ([dfid], [dfid])
