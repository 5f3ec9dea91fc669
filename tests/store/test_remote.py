"""The store backend over transfer modules keeps the store contract (memory, file modules)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from protocols.base import Location, from_bytes, read_all
from protocols.memory import forget
from store.objects import ObjectId, ObjectSpec
from store.ports import ObjectStore
from store.remote import RemoteStore
from tests.store.contract import StoreContract


def _remote(store: ObjectStore) -> RemoteStore:
    assert isinstance(store, RemoteStore)
    return store


class RemoteContract(StoreContract):
    """The contract's hooks done through the store's own transfer-module connection."""

    async def reopen(self, store: ObjectStore) -> ObjectStore:
        return RemoteStore(_remote(store).location)

    async def corrupt(self, store: ObjectStore, oid: ObjectId) -> None:
        remote = _remote(store)
        conn = await remote._conn()
        path = remote._data(oid)
        data = bytearray(await read_all(conn.get(path)))
        data[1000] ^= 0xFF
        await conn.put(path, from_bytes(bytes(data)))

    async def leftovers(self, store: ObjectStore) -> list[str]:
        conn = await _remote(store)._conn()
        entries = await conn.list("", recursive=True)
        return [e.name for e in entries if not e.is_dir and e.name.rsplit("/", 1)[-1][0] == "."]


class TestMemoryRemoteStore(RemoteContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[ObjectStore]:
        host = f"store-{uuid.uuid4().hex[:8]}"
        remote = RemoteStore(Location("memory", host=host, path="/objects"))
        yield remote
        await remote.close()
        forget(host)


class TestFileRemoteStore(RemoteContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        remote = RemoteStore(Location("file", path=str(tmp_path / "objects")))
        yield remote
        await remote.close()


async def test_layout_under_base_path() -> None:
    """Bytes and sidecar sit at <base>/<fan-out>/<id> and <id>.meta.json on the remote side."""
    host = f"store-{uuid.uuid4().hex[:8]}"
    store = RemoteStore(Location("memory", host=host, path="/base"))
    meta = await store.put(from_bytes(b"payload"), ObjectSpec(name="n"))
    conn = await store._conn()
    names = sorted(e.name for e in await conn.list("", recursive=True) if not e.is_dir)
    fan = f"{meta.id[-2:]}/{meta.id[-4:-2]}"
    assert names == [f"{fan}/{meta.id}", f"{fan}/{meta.id}.meta.json"]
    assert meta.locations == (f"memory://{host}/base",)
    await store.close()
    forget(host)


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    """A moto S3 server in this process, on a free 127.0.0.1 port, for this module."""
    from moto.server import ThreadedMotoServer

    from tests.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield port
    server.stop()


class TestS3RemoteStore(RemoteContract):
    @pytest.fixture
    async def store(self, moto_port: int) -> AsyncIterator[ObjectStore]:
        bucket = f"store-{uuid.uuid4().hex[:8]}"
        location = Location.parse(
            f"s3://test:secret@127.0.0.1:{moto_port}/{bucket}/objects",
            scheme="http",
            mkBucket="yes",
            retryCount="1",
        )
        remote = RemoteStore(location)
        yield remote
        await remote.close()
