"""The contract every Object Data Store backend keeps, as one reusable test class.

A backend's test module subclasses ``StoreContract`` and provides a ``store`` fixture plus
three hooks: ``reopen`` (a second instance over the same place), ``corrupt`` (change one stored
byte behind the store's back) and ``leftovers`` (temporary files still present).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocols.base import from_bytes, read_all
from store.errors import ObjectCorrupt, ObjectNotFound, StoreError
from store.objects import ObjectId, ObjectSpec, new_object_id
from store.ports import ObjectStore

DATA = os.urandom(2 * 1024 * 1024 + 12_345)


async def failing_source(good: int) -> AsyncIterator[bytes]:
    """Yields ``good`` bytes, then fails like a provider dropping the connection."""
    yield os.urandom(good)
    raise ConnectionResetError("provider went away")


class StoreContract:
    async def reopen(self, store: ObjectStore) -> ObjectStore:
        raise NotImplementedError

    async def corrupt(self, store: ObjectStore, oid: ObjectId) -> None:
        raise NotImplementedError

    async def leftovers(self, store: ObjectStore) -> list[str]:
        raise NotImplementedError

    async def test_round_trip(self, store: ObjectStore) -> None:
        """Bytes read back equal the bytes put, with size and checksums recorded."""
        meta = await store.put(from_bytes(DATA), ObjectSpec(name="a/product.grib", md5=True))
        assert await read_all(store.get(meta.id)) == DATA
        assert meta.size == len(DATA)
        assert meta.checksums.md5 == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
        assert meta.checksums.sha512 is None
        assert meta.locations == (store.name,)

    async def test_empty_object(self, store: ObjectStore) -> None:
        """A zero-byte object is stored and read back as zero bytes."""
        meta = await store.put(from_bytes(b""), ObjectSpec(name="empty"))
        assert (meta.size, meta.checksums.adler32) == (0, "00000001")
        assert await read_all(store.get(meta.id)) == b""

    async def test_metadata_persisted(self, store: ObjectStore) -> None:
        """Metadata given and computed at put is what a fresh instance reads back."""
        spec = ObjectSpec(
            name="dir/file.bin",
            source="acq:host1",
            content_type="application/x-grib",
            metadata={"destination": "ECMWF", "k": "v"},
            sha512=True,
        )
        meta = await store.put(from_bytes(b"hello"), spec)
        again = await self.reopen(store)
        assert await again.stat(meta.id) == meta
        assert meta.checksums.sha512 == hashlib.sha512(b"hello").hexdigest()
        assert meta.created.tzinfo is not None

    async def test_given_id_is_kept(self, store: ObjectStore) -> None:
        """A caller-chosen id (a uuid4 hex too) is the object's id."""
        oid = ObjectId(os.urandom(16).hex())
        meta = await store.put(from_bytes(b"x"), ObjectSpec(name="x", id=oid))
        assert meta.id == oid
        assert await store.exists(oid)

    async def test_corrupt_byte_detected_on_read(self, store: ObjectStore) -> None:
        """A changed stored byte makes the read fail with ObjectCorrupt before its last chunk."""
        meta = await store.put(from_bytes(DATA), ObjectSpec(name="c"))
        await self.corrupt(store, meta.id)
        received: list[bytes] = []

        async def read() -> None:
            async for chunk in store.get(meta.id):
                received.append(chunk)

        with pytest.raises(ObjectCorrupt) as caught:
            await read()
        assert caught.value.retriable is True
        assert sum(map(len, received)) < meta.size

    async def test_missing_object(self, store: ObjectStore) -> None:
        """An unknown id is ObjectNotFound for stat, get and delete, and exists is False."""
        oid = new_object_id()
        assert not await store.exists(oid)
        with pytest.raises(ObjectNotFound):
            await store.stat(oid)
        with pytest.raises(ObjectNotFound):
            await read_all(store.get(oid))
        with pytest.raises(ObjectNotFound):
            await store.delete(oid)

    async def test_malformed_id_is_not_found(self, store: ObjectStore) -> None:
        """An id that is not 32 hex digits (e.g. a path) is refused as not found."""
        with pytest.raises(ObjectNotFound):
            await store.stat(ObjectId("../../etc/passwd"))
        assert not await store.exists(ObjectId("../x"))

    async def test_delete(self, store: ObjectStore) -> None:
        """A deleted object is gone from stat, get, exists and list."""
        meta = await store.put(from_bytes(b"bye"), ObjectSpec(name="gone"))
        await store.delete(meta.id)
        assert not await store.exists(meta.id)
        with pytest.raises(ObjectNotFound):
            await read_all(store.get(meta.id))
        assert await store.list("gone") == []

    async def test_list_by_prefix(self, store: ObjectStore) -> None:
        """list(prefix) returns the objects whose name starts with prefix, sorted by name."""
        for name in ("2026/11/27/b.grib", "2026/11/27/a.grib", "2026/11/28/c.grib", "other"):
            await store.put(from_bytes(name.encode()), ObjectSpec(name=name))
        day = [m.name for m in await store.list("2026/11/27/")]
        assert day == ["2026/11/27/a.grib", "2026/11/27/b.grib"]
        assert len(await store.list("")) == 4

    async def test_failed_source_leaves_nothing(self, store: ObjectStore) -> None:
        """A source failing midway leaves no object visible and no temporary file."""
        oid = new_object_id()
        with pytest.raises(ConnectionResetError):
            await store.put(failing_source(3 * 1024 * 1024), ObjectSpec(name="partial", id=oid))
        assert not await store.exists(oid)
        assert await store.list("partial") == []
        assert await self.leftovers(store) == []

    @pytest.mark.parametrize("offset", [0, 1, 1024 * 1024, len(DATA) - 1, len(DATA)])
    async def test_offset_read(self, store: ObjectStore, offset: int) -> None:
        """A read from an offset returns the bytes from there to the end."""
        meta = await store.put(from_bytes(DATA), ObjectSpec(name="o"))
        assert await read_all(store.get(meta.id, offset=offset)) == DATA[offset:]

    async def test_offset_past_end_refused(self, store: ObjectStore) -> None:
        """An offset beyond the object's size is an error, not an empty read."""
        meta = await store.put(from_bytes(b"abc"), ObjectSpec(name="o"))
        with pytest.raises(StoreError):
            await read_all(store.get(meta.id, offset=4))

    async def test_put_file(self, store: ObjectStore, tmp_path: Path) -> None:
        """A local file is stored with the same checksums as the same bytes streamed."""
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)
        from_file = await store.put_file(source, ObjectSpec(name="f", md5=True))
        streamed = await store.put(from_bytes(DATA), ObjectSpec(name="s", md5=True))
        assert from_file.checksums == streamed.checksums
        assert await read_all(store.get(from_file.id)) == DATA

    async def test_update_metadata(self, store: ObjectStore) -> None:
        """update rewrites the metadata of an existing object and refuses a missing one."""
        meta = await store.put(from_bytes(b"m"), ObjectSpec(name="m"))
        changed = meta.with_location("s3://elsewhere/store")
        await store.update(changed)
        assert (await store.stat(meta.id)).locations == changed.locations
        with pytest.raises(ObjectNotFound):
            await store.update(changed.__class__(**{**changed.__dict__, "id": new_object_id()}))
