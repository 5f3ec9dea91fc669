"""Compression as streaming filters over async byte streams, by codec name (OpenECPDS's modes).

``compress(codec, stream)`` and ``decompress(codec, stream)`` are async generators. Input is
gathered into batches of about 1 MiB; each batch is (de)compressed in a worker thread while the
next batch is read from the source, so the event loop stays free and source and codec overlap.
``lbzip2`` pipes through the ``lbzip2`` program (parallel, same .bz2 format) when it is on PATH,
feeding its stdin and reading its stdout concurrently, else falls back to the bz2 library.
Corrupt or truncated input raises ``CodecError`` (permanent); an unknown codec name is a
``ConfigurationError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from dataclasses import dataclass

from bus.errors import ConfigurationError
from protocols.base import DEFAULT_CHUNK
from store import codecs
from store.codecs import Filter
from store.errors import CodecError

# Generators, not just iterators: a consumer that stops early can aclose() and stop the work.
ByteStream = AsyncGenerator[bytes, None]
# Batches smaller than this are run inline: a thread hop would cost more than the work.
INLINE = 64 * 1024


@dataclass(frozen=True)
class Codec:
    """A compression mode: its name, the extension a target name gets, its filters."""

    name: str
    extension: str
    encoder: Callable[[str, int | None], Filter]
    decoder: Callable[[], Filter]
    program: str | None = None


def _plain(factory: Callable[[], Filter]) -> Callable[[str, int | None], Filter]:
    return lambda _name, _size: factory()


CODECS: dict[str, Codec] = {
    "none": Codec("none", "", lambda _n, _s: codecs.Passthrough(), codecs.Passthrough),
    "lzma": Codec("lzma", ".lzma", _plain(codecs.lzma_encoder), codecs.lzma_decoder),
    "zip": Codec("zip", ".zip", codecs.ZipEncoder, codecs.ZipDecoder),
    "gzip": Codec("gzip", ".gz", _plain(codecs.gzip_encoder), codecs.gzip_decoder),
    "bzip2": Codec("bzip2", ".bz2", _plain(codecs.bzip2_encoder), codecs.bzip2_decoder),
    "lbzip2": Codec(
        "lbzip2", ".bz2", _plain(codecs.bzip2_encoder), codecs.bzip2_decoder, program="lbzip2"
    ),
    "lz4": Codec("lz4", ".lz4", _plain(codecs.Lz4Encoder), codecs.lz4_decoder),
    "snappy": Codec("snappy", ".sz", _plain(codecs.SnappyEncoder), codecs.SnappyDecoder),
    "zstd": Codec("zstd", ".zst", _plain(codecs.zstd_encoder), codecs.zstd_decoder),
}


def codec(name: str | Codec) -> Codec:
    """The codec called ``name`` (case-insensitive)."""
    if isinstance(name, Codec):
        return name
    found = CODECS.get(name.strip().lower())
    if found is None:
        raise ConfigurationError("compression", f"unknown codec {name!r} (known: {sorted(CODECS)})")
    return found


def compress(
    name: str | Codec, stream: AsyncIterable[bytes], *, entry: str = "data", size: int | None = None
) -> ByteStream:
    """Compress ``stream``; ``entry`` names the zip entry, ``size`` (if known) avoids zip64."""
    chosen = codec(name)
    if chosen.program and shutil.which(chosen.program):
        return _pipe(chosen, [chosen.program, "-c"], stream)
    return _filter(chosen.encoder(entry, size), stream)


def decompress(name: str | Codec, stream: AsyncIterable[bytes]) -> ByteStream:
    """Decompress ``stream``; corrupt or truncated input raises ``CodecError``."""
    chosen = codec(name)
    if chosen.program and shutil.which(chosen.program):
        return _pipe(chosen, [chosen.program, "-d", "-c"], stream)
    return _filter(chosen.decoder(), stream)


async def _batches(stream: AsyncIterable[bytes], size: int = DEFAULT_CHUNK) -> ByteStream:
    parts: list[bytes] = []
    held = 0
    async for chunk in stream:
        parts.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(parts) if len(parts) > 1 else parts[0]
            parts, held = [], 0
    if held:
        yield b"".join(parts)


async def _run(work: Callable[[bytes], bytes], data: bytes) -> bytes:
    if len(data) < INLINE:
        return work(data)
    return await asyncio.to_thread(work, data)


async def _filter(flt: Filter, stream: AsyncIterable[bytes]) -> ByteStream:
    # One batch in the worker thread while the next is read: filters are stateful, so never
    # more than one at a time, in order.
    inflight: asyncio.Future[bytes] | None = None
    try:
        async for batch in _batches(stream):
            if inflight is not None:
                out = await inflight
                inflight = None
                if out:
                    yield out
            inflight = asyncio.ensure_future(_run(flt.feed, batch))
        if inflight is not None:
            out = await inflight
            inflight = None
            if out:
                yield out
        if tail := flt.finish():
            yield tail
    finally:
        if inflight is not None and not inflight.done():
            inflight.cancel()
            with contextlib.suppress(BaseException):
                await inflight


async def _pipe(chosen: Codec, argv: list[str], stream: AsyncIterable[bytes]) -> ByteStream:
    source = aiter(stream)
    first = b""
    async for chunk in source:
        if chunk:
            first = chunk
            break
    if not first and argv[1] == "-d":
        return  # zero input bytes decode to zero bytes, as with the library filters
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    if stdin is None or stdout is None or stderr is None:  # pragma: no cover - PIPE gives all
        raise CodecError(f"{chosen.name}: {argv[0]} started without pipes")

    async def feed() -> None:
        try:
            if first:
                stdin.write(first)
                await stdin.drain()
            async for chunk in source:
                stdin.write(chunk)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return  # the program stopped reading: its exit status says why
        except BaseException:
            proc.kill()  # never let a partial input look like a complete one
            raise
        finally:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stdin.close()

    feeder = asyncio.create_task(feed())
    errors = asyncio.create_task(stderr.read())
    try:
        while chunk := await stdout.read(DEFAULT_CHUNK):
            yield chunk
        await feeder
        status = await proc.wait()
        message = (await errors).decode(errors="replace").strip()
        if status != 0:
            raise CodecError(f"{chosen.name}: {argv[0]} failed ({status}): {message}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for task in (feeder, errors):
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
