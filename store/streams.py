"""Small async stream helpers shared by the store backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from protocols.base import DEFAULT_CHUNK
from store.checksums import Digests

# Below this a chunk is hashed on the event loop: a thread hop would cost more than the hash.
INLINE_HASH = 256 * 1024


async def digest(digests: Digests, chunk: bytes) -> None:
    """Update ``digests`` without blocking the loop on a large chunk."""
    if len(chunk) < INLINE_HASH:
        digests.update(chunk)
    else:
        await asyncio.to_thread(digests.update, chunk)


async def hashing(stream: AsyncIterable[bytes], digests: Digests) -> AsyncIterator[bytes]:
    """Pass ``stream`` through, feeding every chunk to ``digests`` on the way."""
    async for chunk in stream:
        await digest(digests, chunk)
        yield chunk


async def file_chunks(path: Path, size: int = DEFAULT_CHUNK) -> AsyncIterator[bytes]:
    """A local file as an async byte stream (reads in a worker thread)."""
    source = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(source.read, size):
            yield chunk
    finally:
        source.close()
