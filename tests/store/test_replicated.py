"""Replication: copies verified and recorded, reads falling back when the primary copy fails."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocols.base import Location, from_bytes, read_all
from protocols.memory import forget
from store.errors import ObjectCorrupt, ObjectNotFound
from store.local import LocalStore
from store.objects import ObjectId, ObjectSpec
from store.ports import ObjectStore
from store.remote import RemoteStore
from store.replicated import Fallback, ReplicatedStore
from tests.store.contract import StoreContract
from tests.store.test_local import TestLocalStore


def _flip(store: LocalStore, oid: ObjectId, at: int = 1000) -> None:
    path = store._data(oid)
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
async def memory_replica() -> AsyncIterator[RemoteStore]:
    host = f"replica-{uuid.uuid4().hex[:8]}"
    replica = RemoteStore(Location("memory", host=host, path="/replica"))
    yield replica
    await replica.close()
    forget(host)


@pytest.fixture
def events() -> list[Fallback]:
    return []


@pytest.fixture
async def replicated(
    tmp_path: Path, memory_replica: RemoteStore, events: list[Fallback]
) -> AsyncIterator[ReplicatedStore]:
    store = ReplicatedStore(
        LocalStore(tmp_path / "primary"),
        [memory_replica],
        on_fallback=events.append,
        spool_limit=1024 * 1024,
    )
    yield store
    await store.close()


class TestReplicatedStore(StoreContract):
    """The facade itself keeps the contract (no replicas hold the objects here)."""

    @pytest.fixture
    async def store(self, replicated: ReplicatedStore) -> ObjectStore:
        return replicated

    async def reopen(self, store: ObjectStore) -> ObjectStore:
        assert isinstance(store, ReplicatedStore)
        return store

    async def corrupt(self, store: ObjectStore, oid: ObjectId) -> None:
        assert isinstance(store, ReplicatedStore)
        assert isinstance(store.primary, LocalStore)
        await TestLocalStore().corrupt(store.primary, oid)

    async def leftovers(self, store: ObjectStore) -> list[str]:
        assert isinstance(store, ReplicatedStore)
        assert isinstance(store.primary, LocalStore)
        return [p.name for p in store.primary.root.rglob(".*")]


async def test_replicate_records_locations(
    replicated: ReplicatedStore, memory_replica: RemoteStore
) -> None:
    """After replicate, primary and replica both hold the bytes and list both locations."""
    meta = await replicated.put(from_bytes(b"r" * 5000), ObjectSpec(name="r", md5=True))
    copied = await replicated.replicate(meta.id)
    assert copied.locations == (replicated.primary.name, memory_replica.name)
    assert await read_all(memory_replica.get(meta.id)) == b"r" * 5000
    on_replica = await memory_replica.stat(meta.id)
    assert on_replica == copied
    assert on_replica.created == meta.created
    assert (await replicated.primary.stat(meta.id)).locations == copied.locations


async def test_read_falls_back_when_primary_missing(
    replicated: ReplicatedStore, events: list[Fallback]
) -> None:
    """With the primary copy deleted, a read is served by the replica and reported."""
    data = os.urandom(3 * 1024 * 1024)
    meta = await replicated.put(from_bytes(data), ObjectSpec(name="m"))
    await replicated.replicate(meta.id)
    await replicated.primary.delete(meta.id)
    assert await read_all(replicated.get(meta.id)) == data
    assert [(e.failed, e.reason) for e in events] == [(replicated.primary.name, "missing")]
    assert await replicated.stat(meta.id) == await replicated.replicas[0].stat(meta.id)


async def test_small_corrupt_primary_falls_back_transparently(
    replicated: ReplicatedStore, events: list[Fallback]
) -> None:
    """An object within the spool limit whose primary copy is corrupt reads right from a replica."""
    data = os.urandom(500_000)
    meta = await replicated.put(from_bytes(data), ObjectSpec(name="s"))
    await replicated.replicate(meta.id)
    assert isinstance(replicated.primary, LocalStore)
    _flip(replicated.primary, meta.id)
    assert await read_all(replicated.get(meta.id)) == data
    assert [e.reason for e in events] == ["corrupt"]


async def test_large_corrupt_primary_fails_once_then_replica_serves(
    replicated: ReplicatedStore, events: list[Fallback]
) -> None:
    """A streamed object found corrupt fails retriably, and the retry is served by a replica."""
    data = os.urandom(4 * 1024 * 1024)
    meta = await replicated.put(from_bytes(data), ObjectSpec(name="l"))
    await replicated.replicate(meta.id)
    assert isinstance(replicated.primary, LocalStore)
    _flip(replicated.primary, meta.id, at=len(data) // 2)
    with pytest.raises(ObjectCorrupt) as caught:
        await read_all(replicated.get(meta.id))
    assert caught.value.retriable
    assert await read_all(replicated.get(meta.id)) == data
    assert [e.reason for e in events] == ["corrupt"]


async def test_missing_everywhere_is_not_found(replicated: ReplicatedStore) -> None:
    """An object in no backend is ObjectNotFound, not a fallback loop."""
    meta = await replicated.put(from_bytes(b"x"), ObjectSpec(name="x"))
    await replicated.delete(meta.id)
    with pytest.raises(ObjectNotFound):
        await read_all(replicated.get(meta.id))


async def test_replicate_to_file_module(replicated: ReplicatedStore, tmp_path: Path) -> None:
    """replicate(to=...) copies to a store outside the replica list (a file-module store)."""
    target = RemoteStore(Location("file", path=str(tmp_path / "backup")))
    meta = await replicated.put(from_bytes(b"backup me"), ObjectSpec(name="b"))
    copied = await replicated.replicate(meta.id, to=target)
    assert target.name in copied.locations
    assert await read_all(target.get(meta.id)) == b"backup me"
    await target.close()


async def test_corrupt_primary_without_replica_copy_is_corrupt(replicated: ReplicatedStore) -> None:
    """A corrupt primary and no replica copy reports ObjectCorrupt, not ObjectNotFound."""
    meta = await replicated.put(from_bytes(os.urandom(5000)), ObjectSpec(name="c"))
    assert isinstance(replicated.primary, LocalStore)
    _flip(replicated.primary, meta.id)
    with pytest.raises(ObjectCorrupt):
        await read_all(replicated.get(meta.id))
