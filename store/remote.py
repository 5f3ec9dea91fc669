"""An Object Data Store backend over any transfer module: S3, Azure, GCS, SFTP, file, memory.

Objects live under the location's base path: bytes at ``<fan-out>/<id>`` and metadata at
``<fan-out>/<id>.meta.json``. Rules kept:
- the transfer module's put writes under a temporary name and renames (``usetmp``, on by
  default), so no partial object is ever at its final name; the sidecar is written only after
  the bytes, so an object is visible only once complete. A failing source leaves no sidecar.
- checksums are computed while streaming, in both directions; a read from offset 0 is verified
  (size and ADLER32) before its last chunk is handed out. A ranged read (offset > 0) cannot see
  the skipped bytes and is not verified.
- transfer errors keep their ``retriable`` flag; a missing file becomes ``ObjectNotFound``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

from protocols import registry
from protocols.base import Connection, Location, NotFound, from_bytes, read_all
from store.checksums import Digests
from store.errors import ObjectNotFound, StoreError
from store.objects import ObjectId, ObjectMeta, ObjectSpec, fanout, new_object_id, object_id, utcnow
from store.streams import digest, file_chunks, hashing
from store.verify import VerifiedReader

META_SUFFIX: Final = ".meta.json"
Connector = Callable[[Location], Awaitable[Connection]]


class RemoteStore:
    """Objects kept through one transfer-module connection, opened on first use."""

    def __init__(self, location: Location, *, connect: Connector = registry.connect) -> None:
        self.location = location
        self._connect = connect
        self._connection: Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.location.url

    async def _conn(self) -> Connection:
        if self._connection is None:
            async with self._lock:
                if self._connection is None:
                    self._connection = await self._connect(self.location)
        return self._connection

    @staticmethod
    def _data(oid: ObjectId) -> str:
        oid = object_id(oid)
        return f"{fanout(oid)}/{oid}"

    def _meta(self, oid: ObjectId) -> str:
        return self._data(oid) + META_SUFFIX

    async def put(self, data: AsyncIterable[bytes], spec: ObjectSpec) -> ObjectMeta:
        oid = object_id(spec.id) if spec.id else new_object_id()
        digests = Digests(md5=spec.md5, sha512=spec.sha512)
        conn = await self._conn()
        await conn.put(self._data(oid), hashing(data, digests), mkdirs=True)
        meta = ObjectMeta.stored(spec, oid, digests.result(), self.name, utcnow())
        try:
            await conn.put(self._meta(oid), from_bytes(meta.to_json()), mkdirs=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.delete(self._data(oid))
            raise
        return meta

    async def put_file(self, path: Path, spec: ObjectSpec) -> ObjectMeta:
        try:
            return await self.put(file_chunks(path), spec)
        except FileNotFoundError as error:
            raise ObjectNotFound(f"no source file {path}") from error

    async def get(self, oid: ObjectId, *, offset: int = 0) -> AsyncIterator[bytes]:
        meta = await self.stat(oid)
        if offset > meta.size or offset < 0:
            raise StoreError(f"offset {offset} outside object {oid} of {meta.size} bytes")
        conn = await self._conn()
        digests = Digests()
        reader = VerifiedReader(meta, digests, where=self.name, check=offset == 0)
        try:
            async for chunk in conn.get(self._data(oid), offset=offset):
                if offset == 0:
                    await digest(digests, chunk)
                if previous := reader.hold(chunk):
                    yield previous
        except NotFound as error:
            raise ObjectNotFound(f"bytes of object {oid} missing in {self.name}") from error
        if last := reader.finish():
            yield last

    async def stat(self, oid: ObjectId) -> ObjectMeta:
        conn = await self._conn()
        try:
            raw = await read_all(conn.get(self._meta(oid)))
        except NotFound as error:
            raise ObjectNotFound(f"no object {oid} in {self.name}") from error
        return ObjectMeta.from_json(raw)

    async def exists(self, oid: ObjectId) -> bool:
        try:
            path = self._meta(oid)
        except ObjectNotFound:
            return False
        conn = await self._conn()
        try:
            await conn.size(path)
        except NotFound:
            return False
        return True

    async def delete(self, oid: ObjectId) -> None:
        conn = await self._conn()
        try:
            await conn.delete(self._meta(oid))  # the sidecar first: gone in one step
        except NotFound as error:
            raise ObjectNotFound(f"no object {oid} in {self.name}") from error
        with contextlib.suppress(NotFound):
            await conn.delete(self._data(oid))

    async def update(self, meta: ObjectMeta) -> None:
        if not await self.exists(meta.id):
            raise ObjectNotFound(f"no object {meta.id} in {self.name}")
        conn = await self._conn()
        await conn.put(self._meta(meta.id), from_bytes(meta.to_json()), mkdirs=True)

    async def list(self, prefix: str = "") -> builtins.list[ObjectMeta]:
        conn = await self._conn()
        try:
            entries = await conn.list("", recursive=True, pattern=f"*{META_SUFFIX}")
        except NotFound:
            return []
        found: builtins.list[ObjectMeta] = []
        for entry in entries:
            if entry.is_dir or entry.name.rsplit("/", 1)[-1].startswith("."):
                continue  # directories, and sidecars still being written
            try:
                meta = ObjectMeta.from_json(await read_all(conn.get(entry.name)))
            except (NotFound, StoreError):
                continue  # deleted while listing, or not ours
            if meta.name.startswith(prefix):
                found.append(meta)
        return sorted(found, key=lambda meta: (meta.name, meta.id))

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
