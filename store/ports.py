"""The port every Object Data Store backend implements (local disk, any transfer module, replicas).

Rules every backend keeps, checked by ``tests/store/contract.py``:
- ``put`` returns only once bytes and metadata are durable; an object is visible (``stat``,
  ``exists``, ``list``) only when complete: a source stream failing midway leaves nothing,
  no partial object and no temporary file.
- ``get`` streams the bytes and verifies size and ADLER32 when the read reaches the end; on a
  mismatch it raises ``ObjectCorrupt`` *before* handing out the last chunk, so a consumer that
  writes under a temporary name never commits a corrupt copy.
- A missing object raises ``ObjectNotFound``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from store.objects import ObjectId, ObjectMeta, ObjectSpec

ByteStream = AsyncIterator[bytes]


@runtime_checkable
class ObjectStore(Protocol):
    """A place that keeps objects: bytes plus a metadata sidecar, addressed by id."""

    @property
    def name(self) -> str:
        """Where this backend keeps objects (a URL without secrets), recorded in ``locations``."""
        ...

    async def put(self, data: AsyncIterable[bytes], spec: ObjectSpec) -> ObjectMeta: ...

    async def put_file(self, path: Path, spec: ObjectSpec) -> ObjectMeta: ...

    def get(self, oid: ObjectId, *, offset: int = 0) -> ByteStream: ...

    async def stat(self, oid: ObjectId) -> ObjectMeta: ...

    async def exists(self, oid: ObjectId) -> bool: ...

    async def delete(self, oid: ObjectId) -> None: ...

    async def list(self, prefix: str = "") -> list[ObjectMeta]: ...

    async def update(self, meta: ObjectMeta) -> None:
        """Rewrite an existing object's metadata (locations, user metadata); bytes unchanged."""
        ...

    async def close(self) -> None: ...
