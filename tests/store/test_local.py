"""The local-disk backend keeps the store contract and its on-disk layout rules."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocols.base import from_bytes, read_all
from store.local import LocalStore
from store.objects import ObjectId, ObjectSpec
from store.ports import ObjectStore
from tests.store.contract import StoreContract


def _local(store: ObjectStore) -> LocalStore:
    assert isinstance(store, LocalStore)
    return store


class TestLocalStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ObjectStore]:
        local = LocalStore(tmp_path / "store")
        yield local
        await local.close()

    async def reopen(self, store: ObjectStore) -> ObjectStore:
        return LocalStore(_local(store).root)

    async def corrupt(self, store: ObjectStore, oid: ObjectId) -> None:
        path = _local(store)._data(oid)
        with path.open("r+b") as handle:
            handle.seek(1000)
            byte = handle.read(1)
            handle.seek(1000)
            handle.write(bytes([byte[0] ^ 0xFF]))

    async def leftovers(self, store: ObjectStore) -> list[str]:
        return [p.name for p in _local(store).root.rglob(".*")]


async def test_fan_out_layout(tmp_path: Path) -> None:
    """Bytes and sidecar sit two directory levels down, named by the id's random tail."""
    store = LocalStore(tmp_path)
    meta = await store.put(from_bytes(b"x"), ObjectSpec(name="n"))
    directory = tmp_path / meta.id[-2:] / meta.id[-4:-2]
    assert sorted(p.name for p in directory.iterdir()) == [meta.id, f"{meta.id}.meta.json"]
    await store.close()


async def test_missing_bytes_with_sidecar_is_not_found(tmp_path: Path) -> None:
    """A sidecar whose bytes were removed reads as ObjectNotFound (a replica can serve it)."""
    from store.errors import ObjectNotFound

    store = LocalStore(tmp_path)
    meta = await store.put(from_bytes(b"x"), ObjectSpec(name="n"))
    store._data(meta.id).unlink()
    with pytest.raises(ObjectNotFound):
        await read_all(store.get(meta.id))
    await store.close()


async def test_truncated_bytes_detected(tmp_path: Path) -> None:
    """A stored file shorter than recorded is reported corrupt, not served short."""
    from store.errors import ObjectCorrupt

    store = LocalStore(tmp_path)
    meta = await store.put(from_bytes(os.urandom(5000)), ObjectSpec(name="n"))
    os.truncate(store._data(meta.id), 4000)
    with pytest.raises(ObjectCorrupt):
        await read_all(store.get(meta.id))
    await store.close()


async def test_nothing_at_final_name_while_put_runs(tmp_path: Path) -> None:
    """While a put is still streaming, neither bytes nor sidecar exist at their final names."""
    store = LocalStore(tmp_path)
    oid = ObjectId(os.urandom(16).hex())
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield os.urandom(2 * 1024 * 1024)
        await release.wait()
        yield b"end"

    put = asyncio.create_task(store.put(slow(), ObjectSpec(name="slow", id=oid)))
    await asyncio.sleep(0.2)
    assert not store._data(oid).exists()
    assert not await store.exists(oid)
    release.set()
    meta = await put
    assert meta.size == 2 * 1024 * 1024 + 3
    assert store._data(oid).exists()
    await store.close()


async def test_concurrent_puts(tmp_path: Path) -> None:
    """Many puts at once (more than the put threads) all complete with the right bytes."""
    store = LocalStore(tmp_path, max_puts=2)
    blobs = [os.urandom(300_000 + i) for i in range(12)]
    metas = await asyncio.gather(
        *(store.put(from_bytes(b, 65536), ObjectSpec(name=f"c{i}")) for i, b in enumerate(blobs))
    )
    for meta, blob in zip(metas, blobs, strict=True):
        assert await read_all(store.get(meta.id)) == blob
    await store.close()


async def test_put_file_without_copy_file_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where copy_file_range is refused (other filesystems, old kernels), put_file still works."""
    import errno

    def refuse(*_args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    source = tmp_path / "in.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    source.write_bytes(data)
    store = LocalStore(tmp_path / "s")
    meta = await store.put_file(source, ObjectSpec(name="f", md5=True))
    assert await read_all(store.get(meta.id)) == data
    streamed = await store.put(from_bytes(data), ObjectSpec(name="g", md5=True))
    assert meta.checksums == streamed.checksums
    await store.close()


def test_default_root_follows_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a root argument the store lives at ECPDS_STORE_ROOT."""
    monkeypatch.setenv("ECPDS_STORE_ROOT", str(tmp_path / "objects"))
    assert LocalStore().root == tmp_path / "objects"
