"""Checksums computed in one pass over byte chunks: ADLER32 always, MD5 and SHA-512 on demand.

ADLER32 guards integrity inside the store (recorded on put, verified on read); MD5 serves
remote integrity (``Content-MD5``, ``.md5`` sidecars); SHA-512 serves WIS2 notifications. MD5
and SHA-512 cost real CPU (MD5 ~600 MB/s per core), so they are computed only when asked. Feed
large chunks (1 MiB): ``zlib`` and ``hashlib`` release the GIL on big buffers, so a
``Digests`` can be updated from a worker thread while another thread does the I/O.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

Chunk = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Checksums:
    """What was computed over ``size`` bytes; hex strings, lowercase."""

    size: int
    adler32: str
    md5: str | None = None
    sha512: str | None = None


def adler32_hex(value: int) -> str:
    """ADLER32 as the 8-digit hex string OpenECPDS shows."""
    return f"{value & 0xFFFFFFFF:08x}"


class Digests:
    """An accumulator: ``update`` with each chunk in order, then ``result``."""

    __slots__ = ("_adler", "_md5", "_sha512", "_size", "_updates")

    def __init__(self, *, md5: bool = False, sha512: bool = False) -> None:
        self._adler = 1
        self._size = 0
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self._sha512 = hashlib.sha512() if sha512 else None
        # Bound methods resolved once, so a chunk costs only the hash calls themselves.
        self._updates: tuple[Callable[[Chunk], None], ...] = tuple(
            h.update for h in (self._md5, self._sha512) if h is not None
        )

    def update(self, chunk: Chunk) -> None:
        view = memoryview(chunk)
        self._adler = zlib.adler32(view, self._adler)
        self._size += view.nbytes
        for update in self._updates:
            update(view)

    def update_light(self, chunk: Chunk) -> None:
        """Size and ADLER32 only; pair with ``update_heavy`` on the same chunks, in order.

        The split lets a writer keep the cheap sum in its I/O thread and give MD5/SHA-512 a
        core of their own.
        """
        view = memoryview(chunk)
        self._adler = zlib.adler32(view, self._adler)
        self._size += view.nbytes

    def update_heavy(self, chunk: Chunk) -> None:
        """MD5 and SHA-512 only (whichever were asked for)."""
        for update in self._updates:
            update(chunk)

    @property
    def size(self) -> int:
        return self._size

    @property
    def heavy(self) -> bool:
        """True when MD5 or SHA-512 is computed (CPU-bound, best fed from cache-hot buffers)."""
        return bool(self._updates)

    def result(self) -> Checksums:
        return Checksums(
            size=self._size,
            adler32=adler32_hex(self._adler),
            md5=self._md5.hexdigest() if self._md5 is not None else None,
            sha512=self._sha512.hexdigest() if self._sha512 is not None else None,
        )


def checksums_of(data: Chunk, *, md5: bool = False, sha512: bool = False) -> Checksums:
    """Checksums of an in-memory buffer (tests, sidecars, small objects)."""
    digests = Digests(md5=md5, sha512=sha512)
    digests.update(data)
    return digests.result()
