"""Every compression codec round-trips as a streaming filter and rejects garbage clearly."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.errors import ConfigurationError
from protocols.base import from_bytes, read_all
from store import codecs
from store.compression import CODECS, codec, compress, decompress
from store.errors import CodecError

NAMES = sorted(CODECS)
SAMPLES = {
    "empty": b"",
    "one-byte": b"x",
    "mixed-3MiB": os.urandom(1 << 20) + b"ecpds data " * 200_000 + os.urandom(100_000),
}


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sample", sorted(SAMPLES))
async def test_round_trip(name: str, sample: str) -> None:
    """Compressing then decompressing gives back exactly the input."""
    data = SAMPLES[sample]
    packed = await read_all(compress(name, from_bytes(data), entry="f.dat", size=len(data)))
    assert await read_all(decompress(name, from_bytes(packed))) == data


@pytest.mark.parametrize("name", NAMES)
async def test_round_trip_odd_chunking(name: str) -> None:
    """Chunk boundaries on either side (999-byte input, 7-byte compressed chunks) do not matter."""
    data = b"abc" * 50_000 + os.urandom(20_000)
    packed = await read_all(compress(name, pieces(data, 999)))
    assert await read_all(decompress(name, pieces(packed, 7))) == data


@pytest.mark.parametrize("name", [n for n in NAMES if n != "none"])
async def test_garbage_is_a_codec_error(name: str) -> None:
    """Decompressing bytes that are not of the codec raises a permanent CodecError."""
    with pytest.raises(CodecError) as caught:
        await read_all(decompress(name, from_bytes(b"this is not compressed data " * 100)))
    assert caught.value.retriable is False


@pytest.mark.parametrize("name", [n for n in NAMES if n != "none"])
async def test_truncated_is_a_codec_error(name: str) -> None:
    """A compressed stream cut short raises CodecError instead of passing as complete."""
    data = os.urandom(200_000)
    packed = await read_all(compress(name, from_bytes(data)))
    with pytest.raises(CodecError):
        await read_all(decompress(name, from_bytes(packed[: len(packed) // 2])))


def test_extensions_follow_openecpds() -> None:
    """Each codec names the extension OpenECPDS gives the target file."""
    assert {name: c.extension for name, c in CODECS.items()} == {
        "none": "",
        "lzma": ".lzma",
        "zip": ".zip",
        "gzip": ".gz",
        "bzip2": ".bz2",
        "lbzip2": ".bz2",
        "lz4": ".lz4",
        "snappy": ".sz",
        "zstd": ".zst",
    }


def test_unknown_codec_is_a_configuration_error() -> None:
    """An unknown codec name is reported as a configuration error naming the known ones."""
    with pytest.raises(ConfigurationError, match="gzip"):
        codec("rar")


async def test_formats_are_the_standard_ones() -> None:
    """Output is readable by the standard tools' libraries (.gz, .bz2, .lzma alone, .zip)."""
    data = b"standard formats " * 10_000
    gz = await read_all(compress("gzip", from_bytes(data)))
    assert gzip.decompress(gz) == data
    for name in ("bzip2", "lbzip2"):
        assert bz2.decompress(await read_all(compress(name, from_bytes(data)))) == data
    alone = await read_all(compress("lzma", from_bytes(data)))
    assert lzma.decompress(alone, format=lzma.FORMAT_ALONE) == data
    packed = await read_all(compress("zip", from_bytes(data), entry="product.grib"))
    with zipfile.ZipFile(io.BytesIO(packed)) as archive:
        assert archive.namelist() == ["product.grib"]
        assert archive.read("product.grib") == data


async def test_snappy_framing_starts_with_stream_identifier() -> None:
    """Snappy output is the framing format, starting with the sNaPpY stream identifier."""
    packed = await read_all(compress("snappy", from_bytes(b"")))
    assert packed == codecs.SNAPPY_STREAM_ID
    assert await read_all(decompress("snappy", from_bytes(packed))) == b""


async def test_concatenated_gzip_members_decode() -> None:
    """Concatenated gzip members (as pigz or cat writes them) decode as one stream."""
    joined = gzip.compress(b"first ") + gzip.compress(b"second")
    assert await read_all(decompress("gzip", from_bytes(joined))) == b"first second"


async def test_zip_reader_accepts_a_stored_entry() -> None:
    """A zip made by another tool with a stored (uncompressed) entry streams out too."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.txt", b"stored bytes")
    assert await read_all(decompress("zip", from_bytes(buffer.getvalue()))) == b"stored bytes"


@pytest.mark.skipif(shutil.which("lbzip2") is None, reason="lbzip2 program not installed")
async def test_lbzip2_program_garbage_reports_its_message() -> None:
    """When the lbzip2 program rejects its input, the error carries the program's message."""
    with pytest.raises(CodecError, match="lbzip2"):
        await read_all(decompress("lbzip2", from_bytes(b"garbage" * 10)))


async def test_source_failure_propagates_through_a_filter() -> None:
    """A failing source stream fails the compressed stream too (never a short 'complete' one)."""

    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(2 << 20)
        raise ConnectionError("source went away")

    for name in ("gzip", "lbzip2"):
        with pytest.raises(ConnectionError):
            await read_all(compress(name, failing()))


def _children_named(name: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            comm = fields[0].split("(", 1)[1]
            ppid = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if comm == name and ppid == os.getpid():
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(shutil.which("lbzip2") is None, reason="lbzip2 program not installed")
async def test_lbzip2_program_stopped_when_reader_stops_early() -> None:
    """A consumer that stops reading midway leaves no lbzip2 process behind."""
    data = os.urandom(8 << 20)
    stream = compress("lbzip2", from_bytes(data))
    first = await anext(stream)
    assert first.startswith(b"BZh")
    await stream.aclose()
    assert _children_named("lbzip2") == []


async def test_zip_crc_mismatch_detected() -> None:
    """A zip entry whose data no longer matches its CRC-32 is a CodecError."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.txt", b"stored bytes")
    damaged = buffer.getvalue().replace(b"stored bytes", b"stored bytez")
    with pytest.raises(CodecError, match="CRC"):
        await read_all(decompress("zip", from_bytes(damaged)))
