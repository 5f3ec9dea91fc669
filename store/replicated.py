"""An ``ObjectStore`` facade over a primary backend and replicas, with read fallback.

Writes go to the primary; ``replicate`` copies an object to replicas (verified against the
recorded ADLER32) and records every copy in ``locations``. A read tries the primary, then
each replica, when a copy is missing, fails its checksum or its backend fails. Every fallback
is reported to ``on_fallback`` (and logged) so the caller can publish an event.

Streaming and fallback: corruption is only known at the end of a read. Objects up to
``spool_limit`` bytes are held in memory until verified, so their fallback is invisible to the
reader. Larger objects are streamed as they come; if such a copy turns out corrupt the read
raises ``ObjectCorrupt`` (retriable, and the consumer never got the last chunk), and that
copy is remembered as bad so the retry is served by a replica.
"""

from __future__ import annotations

import builtins
import logging
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bus.errors import EcpdsError
from store.errors import ObjectCorrupt, ObjectNotFound
from store.objects import ObjectId, ObjectMeta, ObjectSpec
from store.ports import ObjectStore

log = logging.getLogger(__name__)
SPOOL_LIMIT = 8 * 1024 * 1024
BAD_COPIES_KEPT = 10_000

Reason = Literal["missing", "corrupt", "failed"]


@dataclass(frozen=True)
class Fallback:
    """A read of ``object_id`` skipped the copy in ``failed`` for ``reason``."""

    object_id: ObjectId
    failed: str
    reason: Reason
    detail: str


def _reason(error: Exception) -> Reason:
    if isinstance(error, ObjectNotFound):
        return "missing"
    if isinstance(error, ObjectCorrupt):
        return "corrupt"
    return "failed"


class ReplicatedStore:
    """A primary store plus replicas; reads fall back, writes go to the primary."""

    def __init__(
        self,
        primary: ObjectStore,
        replicas: Sequence[ObjectStore] = (),
        *,
        on_fallback: Callable[[Fallback], None] | None = None,
        spool_limit: int = SPOOL_LIMIT,
    ) -> None:
        self.primary = primary
        self.replicas = tuple(replicas)
        self._on_fallback = on_fallback
        self._spool_limit = spool_limit
        # Copies found corrupt mid-stream: the next read skips them. Bounded, oldest dropped.
        self._bad: OrderedDict[tuple[str, ObjectId], None] = OrderedDict()

    @property
    def name(self) -> str:
        return self.primary.name

    @property
    def backends(self) -> tuple[ObjectStore, ...]:
        return (self.primary, *self.replicas)

    async def put(self, data: AsyncIterable[bytes], spec: ObjectSpec) -> ObjectMeta:
        return await self.primary.put(data, spec)

    async def put_file(self, path: Path, spec: ObjectSpec) -> ObjectMeta:
        return await self.primary.put_file(path, spec)

    async def replicate(self, oid: ObjectId, to: ObjectStore | None = None) -> ObjectMeta:
        """Copy ``oid`` to ``to`` (default: every replica); returns the meta with all locations."""
        meta = await self.stat(oid)
        for target in [to] if to is not None else self.replicas:
            spec = ObjectSpec(
                name=meta.name,
                source=meta.source,
                content_type=meta.content_type,
                metadata=meta.metadata,
                id=meta.id,
                md5=meta.checksums.md5 is not None,
                sha512=meta.checksums.sha512 is not None,
            )
            copy = await target.put(self.get(oid), spec)
            if copy.checksums.adler32 != meta.checksums.adler32 or copy.size != meta.size:
                await target.delete(oid)
                raise ObjectCorrupt(f"object {oid}: copy to {target.name} does not match")
            meta = meta.with_location(target.name)
            self._bad.pop((target.name, oid), None)
        # Every copy carries the same metadata: created, checksums and the full location list.
        for backend in self.backends:
            if meta.locations and backend.name in meta.locations:
                await backend.update(meta)
        return meta

    async def get(self, oid: ObjectId, *, offset: int = 0) -> AsyncIterator[bytes]:
        sources = [b for b in self.backends if (b.name, oid) not in self._bad] or list(
            self.backends
        )
        worst: EcpdsError | None = None  # a corrupt or failing copy says more than "missing"
        for index, backend in enumerate(sources):
            last = index == len(sources) - 1
            spool: list[bytes] = []
            spooled = 0
            streaming = False
            try:
                async for chunk in backend.get(oid, offset=offset):
                    if streaming:
                        yield chunk
                        continue
                    spool.append(chunk)
                    spooled += len(chunk)
                    if spooled > self._spool_limit:
                        streaming = True
                        for held in spool:
                            yield held
                        spool = []
            except EcpdsError as error:
                if isinstance(error, ObjectCorrupt):
                    self._remember_bad(backend.name, oid)
                if not isinstance(error, ObjectNotFound) and worst is None:
                    worst = error
                if not (last and isinstance(error, ObjectNotFound)):
                    self._report(oid, backend, error)
                if streaming:
                    raise
                if last:
                    if worst is not None and worst is not error:
                        raise worst from error
                    raise
                continue
            for held in spool:
                yield held
            return

    def _remember_bad(self, name: str, oid: ObjectId) -> None:
        self._bad[(name, oid)] = None
        while len(self._bad) > BAD_COPIES_KEPT:
            self._bad.popitem(last=False)

    def _report(self, oid: ObjectId, backend: ObjectStore, error: Exception) -> None:
        fallback = Fallback(oid, backend.name, _reason(error), str(error))
        log.warning("object %s: copy in %s %s: %s", oid, backend.name, fallback.reason, error)
        if self._on_fallback is not None:
            self._on_fallback(fallback)

    async def stat(self, oid: ObjectId) -> ObjectMeta:
        error: EcpdsError | None = None
        for backend in self.backends:
            try:
                return await backend.stat(oid)
            except EcpdsError as exc:
                error = error or exc
        assert error is not None
        raise error

    async def exists(self, oid: ObjectId) -> bool:
        for backend in self.backends:
            if await backend.exists(oid):
                return True
        return False

    async def delete(self, oid: ObjectId) -> None:
        """Delete every copy; ``ObjectNotFound`` only if no backend had one."""
        deleted = False
        for backend in self.backends:
            try:
                await backend.delete(oid)
                deleted = True
            except ObjectNotFound:
                continue
        if not deleted:
            raise ObjectNotFound(f"no object {oid} in {self.name} or its replicas")

    async def update(self, meta: ObjectMeta) -> None:
        await self.primary.update(meta)
        for backend in self.replicas:
            if await backend.exists(meta.id):
                await backend.update(meta)

    async def list(self, prefix: str = "") -> builtins.list[ObjectMeta]:
        return await self.primary.list(prefix)

    async def close(self) -> None:
        for backend in self.backends:
            await backend.close()
