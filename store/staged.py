"""The store a mover of a regional (continental) transfer group reads from: the group's replica.

Rule kept: a regional mover reads its replica only, never the central store behind it. An
object missing there is ``NotStaged`` (retriable: the replicator pre-stages it, the next
attempt is requeued after the destination's retry frequency), not ``ObjectNotFound`` (which
ends a transfer as the file's own fault). Reading the central store from the region would pull
the bytes across the long link the region exists to avoid, and would hide a pre-staging that
does not work; a transfer that keeps missing its copy is ordered to the central group by the
scheduler after ``fallback_after`` attempts, and the central movers read the central store.
Writes are refused: the replica is filled by the replicator, never by a mover.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from store.errors import NotStaged, ObjectNotFound, StoreError
from store.objects import ObjectId, ObjectMeta, ObjectSpec
from store.ports import ObjectStore


class StagedStore:
    """A read-only view of a regional replica that says ``NotStaged`` for a missing object."""

    def __init__(self, replica: ObjectStore, central: str) -> None:
        self.replica = replica
        self.central = central  # the order's store, named in the error for the operator

    @property
    def name(self) -> str:
        return self.replica.name

    def _not_staged(self, oid: ObjectId, error: ObjectNotFound) -> NotStaged:
        return NotStaged(
            f"object {oid} is not staged in the regional store {self.replica.name} yet"
            f" (its copy in {self.central or 'the default store'}: {error})"
        )

    async def get(self, oid: ObjectId, *, offset: int = 0) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.replica.get(oid, offset=offset):
                yield chunk
        except ObjectNotFound as error:
            raise self._not_staged(oid, error) from error

    async def stat(self, oid: ObjectId) -> ObjectMeta:
        try:
            return await self.replica.stat(oid)
        except ObjectNotFound as error:
            raise self._not_staged(oid, error) from error

    async def exists(self, oid: ObjectId) -> bool:
        return await self.replica.exists(oid)

    async def list(self, prefix: str = "") -> builtins.list[ObjectMeta]:
        return await self.replica.list(prefix)

    async def put(self, data: AsyncIterable[bytes], spec: ObjectSpec) -> ObjectMeta:
        raise StoreError(f"{self.name}: a regional replica is written by the replicator only")

    async def put_file(self, path: Path, spec: ObjectSpec) -> ObjectMeta:
        raise StoreError(f"{self.name}: a regional replica is written by the replicator only")

    async def delete(self, oid: ObjectId) -> None:
        raise StoreError(f"{self.name}: a regional replica is written by the replicator only")

    async def update(self, meta: ObjectMeta) -> None:
        raise StoreError(f"{self.name}: a regional replica is written by the replicator only")

    async def close(self) -> None:
        """Nothing: the replica's backend belongs to ``NamedStores``, which closes it."""
