"""Checksums computed in one pass over chunks match the reference functions."""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest

from store.checksums import Digests, adler32_hex, checksums_of


def test_empty_input_has_adler32_one() -> None:
    """Zero bytes give ADLER32 00000001 and size 0, and no MD5/SHA-512 unless asked."""
    result = Digests().result()
    assert (result.size, result.adler32, result.md5, result.sha512) == (0, "00000001", None, None)


@pytest.mark.parametrize("chunk", [1, 7, 65536, 1 << 20])
def test_chunked_equals_whole(chunk: int) -> None:
    """Hashing in chunks of any size gives the same ADLER32, MD5 and SHA-512 as one call."""
    data = os.urandom(60_001) + b"a" * 40_000
    digests = Digests(md5=True, sha512=True)
    for start in range(0, len(data), chunk):
        digests.update(data[start : start + chunk])
    result = digests.result()
    assert result.size == len(data)
    assert result.adler32 == f"{zlib.adler32(data):08x}"
    assert result.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert result.sha512 == hashlib.sha512(data).hexdigest()


def test_only_requested_digests() -> None:
    """MD5 and SHA-512 are computed only when asked for."""
    assert checksums_of(b"abc", md5=True).sha512 is None
    assert checksums_of(b"abc", sha512=True).md5 is None
    assert checksums_of(b"abc", md5=True).md5 == "900150983cd24fb0d6963f7d28e17f72"


def test_adler32_hex_is_eight_digits() -> None:
    """ADLER32 is rendered as 8 lowercase hex digits, zero-padded."""
    assert adler32_hex(0x1) == "00000001"
    assert adler32_hex(0xDEADBEEF) == "deadbeef"


def test_memoryview_chunks_accepted() -> None:
    """A memoryview slice (as a ring-buffer reader passes) hashes like bytes."""
    buffer = bytearray(b"0123456789")
    digests = Digests(md5=True)
    digests.update(memoryview(buffer)[:5])
    assert digests.result() == checksums_of(b"01234", md5=True)


def test_light_and_heavy_halves_equal_update() -> None:
    """Feeding update_light and update_heavy with the same chunks equals update with them."""
    chunks = [os.urandom(1000), b"", os.urandom(70_000)]
    whole = Digests(md5=True, sha512=True)
    halves = Digests(md5=True, sha512=True)
    for chunk in chunks:
        whole.update(chunk)
        halves.update_light(chunk)
    for chunk in chunks:  # the heavy half may lag behind (another thread), order kept
        halves.update_heavy(chunk)
    assert halves.result() == whole.result()
