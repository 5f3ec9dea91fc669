"""Read-side integrity: compare what was read with what was recorded, before the last chunk.

``VerifiedReader`` holds back one chunk: the final chunk is handed out only after size and
ADLER32 match the object's metadata. A consumer that writes under a temporary name and renames
at the end (every transfer module does) therefore never commits a corrupt copy: it gets
``ObjectCorrupt`` instead of its last bytes.
"""

from __future__ import annotations

from store.checksums import Checksums, Digests
from store.errors import ObjectCorrupt
from store.objects import ObjectMeta


def verify(meta: ObjectMeta, read: Checksums, where: str = "") -> None:
    """Raise ``ObjectCorrupt`` unless ``read`` matches ``meta``'s size and ADLER32."""
    place = f" in {where}" if where else ""
    if read.size != meta.size:
        raise ObjectCorrupt(f"object {meta.id}{place}: {read.size} bytes read, {meta.size} stored")
    if read.adler32 != meta.checksums.adler32:
        raise ObjectCorrupt(
            f"object {meta.id}{place}: ADLER32 {read.adler32} read, "
            f"{meta.checksums.adler32} recorded"
        )


class VerifiedReader:
    """Holds back the latest chunk until the next arrives; ``finish`` verifies, then releases it.

    The caller feeds ``digests`` with every byte read (from offset 0); ``check=False`` turns the
    verification off for reads that cannot see the whole object.
    """

    def __init__(
        self, meta: ObjectMeta, digests: Digests, *, where: str = "", check: bool = True
    ) -> None:
        self._meta = meta
        self._digests = digests
        self._where = where
        self._check = check
        self._held: bytes | None = None

    def hold(self, chunk: bytes) -> bytes | None:
        previous, self._held = self._held, chunk
        return previous

    def finish(self) -> bytes | None:
        if self._check:
            verify(self._meta, self._digests.result(), self._where)
        held, self._held = self._held, None
        return held
