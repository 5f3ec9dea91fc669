"""Incremental, blocking compression filters, one class pair per format.

A filter turns chunks into chunks: ``feed(data) -> bytes`` then ``finish() -> bytes``. They
hold no I/O and are driven by ``store.compression``, which runs them in a worker thread per
batch (zlib, bz2, lzma, lz4, zstd and snappy all release the GIL while they work). Decoders
accept concatenated members/frames (as pigz, pbzip2 or zstd's multi-frame output have) and
raise ``CodecError`` on corrupt or truncated input; zero input bytes decode to zero bytes.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Protocol

import cramjam
import lz4.frame
import zstandard

from store.errors import CodecError


class Filter(Protocol):
    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Passthrough:
    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


class Compress:
    """Any library compressor with ``compress``/``flush`` (zlib, bz2, lzma, zstd)."""

    def __init__(self, compressor: _Compressor, header: bytes = b"") -> None:
        self._compressor = compressor
        self._header = header

    def feed(self, data: bytes) -> bytes:
        out = self._header + self._compressor.compress(data)
        self._header = b""
        return out

    def finish(self) -> bytes:
        return self._header + self._compressor.flush()


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, /) -> bytes: ...


class Decompress:
    """A library decompressor restarted at each member boundary; errors become CodecError."""

    def __init__(self, codec: str, factory: Callable[[], _Decompressor], *, multi: bool = True):
        self._codec = codec
        self._factory = factory
        self._multi = multi
        self._decoder: _Decompressor | None = None
        self._done = False

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        try:
            while data:
                if self._done:
                    raise CodecError(f"{self._codec}: trailing data after the end of the stream")
                if self._decoder is None:
                    self._decoder = self._factory()
                out.append(self._decoder.decompress(data))
                if not self._decoder.eof:
                    break
                data = self._decoder.unused_data
                self._decoder = None
                self._done = not self._multi
        except CodecError:
            raise
        except Exception as error:  # each library has its own error type
            raise CodecError(f"{self._codec}: corrupt input ({error})") from error
        return b"".join(out)

    def finish(self) -> bytes:
        if self._decoder is not None:
            raise CodecError(f"{self._codec}: truncated input (stream ended before its end mark)")
        return b""


def gzip_encoder() -> Filter:
    return Compress(zlib.compressobj(6, zlib.DEFLATED, 31))


def gzip_decoder() -> Filter:
    return Decompress("gzip", lambda: zlib.decompressobj(31))


def bzip2_encoder() -> Filter:
    return Compress(bz2.BZ2Compressor(9))


def bzip2_decoder() -> Filter:
    return Decompress("bzip2", bz2.BZ2Decompressor)


def lzma_encoder() -> Filter:
    # The legacy .lzma ("alone") format, as OpenECPDS writes it.
    return Compress(lzma.LZMACompressor(format=lzma.FORMAT_ALONE))


def lzma_decoder() -> Filter:
    return Decompress("lzma", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE), multi=False)


class Lz4Encoder:
    def __init__(self) -> None:
        self._compressor = lz4.frame.LZ4FrameCompressor()
        self._header: bytes = self._compressor.begin()

    def feed(self, data: bytes) -> bytes:
        out = self._header + bytes(self._compressor.compress(data))
        self._header = b""
        return out

    def finish(self) -> bytes:
        return self._header + bytes(self._compressor.flush())


def lz4_decoder() -> Filter:
    return Decompress("lz4", lz4.frame.LZ4FrameDecompressor)


def zstd_encoder() -> Filter:
    return Compress(zstandard.ZstdCompressor(level=3).compressobj())


def zstd_decoder() -> Filter:
    return Decompress("zstd", lambda: zstandard.ZstdDecompressor().decompressobj())


SNAPPY_STREAM_ID = b"\xff\x06\x00\x00sNaPpY"


class SnappyEncoder:
    """The snappy framing format (.sz); always starts with the stream identifier."""

    def __init__(self) -> None:
        self._compressor = cramjam.snappy.Compressor()
        self._started = False

    def feed(self, data: bytes) -> bytes:
        self._compressor.compress(data)
        out = bytes(self._compressor.flush())
        return self._start(out) if out else b""

    def finish(self) -> bytes:
        return self._start(bytes(self._compressor.finish()))

    def _start(self, out: bytes) -> bytes:
        if self._started:
            return out
        self._started = True
        return out if out.startswith(SNAPPY_STREAM_ID) else SNAPPY_STREAM_ID + out


class SnappyDecoder:
    """Cuts the stream at frame-chunk boundaries; cramjam decodes and CRC-checks whole chunks."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        end = 0
        while end + 4 <= len(self._buffer):
            length = int.from_bytes(self._buffer[end + 1 : end + 4], "little")
            if end + 4 + length > len(self._buffer):
                break
            end += 4 + length
        if not end:
            return b""
        # A stream identifier may repeat anywhere in a framed stream, so each batch gets one.
        batch = SNAPPY_STREAM_ID + bytes(self._buffer[:end])
        del self._buffer[:end]
        try:
            return bytes(cramjam.snappy.decompress(batch))
        except Exception as error:  # cramjam.DecompressionError
            raise CodecError(f"snappy: corrupt input ({error})") from error

    def finish(self) -> bytes:
        if self._buffer:
            raise CodecError("snappy: truncated input (incomplete chunk at the end)")
        return b""


class _Sink:
    """A write-only, non-seekable file for zipfile: it then writes data descriptors."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class ZipEncoder:
    """A single-entry zip archive written in streaming mode (data descriptor, zip64 if needed)."""

    def __init__(self, entry: str, size: int | None) -> None:
        self._sink = _Sink()
        self._archive = zipfile.ZipFile(self._sink, "w", zipfile.ZIP_DEFLATED)
        info = zipfile.ZipInfo(entry or "data")
        info.compress_type = zipfile.ZIP_DEFLATED
        # Unknown size: announce zip64 up front, zipfile refuses to grow past 2 GiB otherwise.
        big = size is None or size >= zipfile.ZIP64_LIMIT
        self._entry = self._archive.open(info, "w", force_zip64=big)

    def feed(self, data: bytes) -> bytes:
        self._entry.write(data)
        return self._sink.take()

    def finish(self) -> bytes:
        self._entry.close()
        self._archive.close()
        return self._sink.take()


_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


class ZipDecoder:
    """Streams out the first entry of a zip archive (stored or deflated), checking its CRC-32.

    The CRC is in the local header, or (bit 3 of the flags, streaming writers) in the data
    descriptor right after the entry's data; the central directory is not needed.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._inflate: zlib._Decompress | None = None
        self._stored_left: int | None = None
        self._descriptor = False
        self._header_crc = 0
        self._crc = 0
        self._done = False
        self._tail = b""  # bytes after the entry's data: the data descriptor, if any

    def feed(self, data: bytes) -> bytes:
        if self._done:
            if len(self._tail) < 16:
                self._tail += data[:16]
            return b""  # the central directory and the rest: not needed to stream the entry
        if self._inflate is None and self._stored_left is None:
            self._buffer += data
            if not self._parse_header():
                return b""
            data, self._buffer = self._buffer, b""
        return self._body(data)

    def _parse_header(self) -> bool:
        if len(self._buffer) < _LOCAL_HEADER.size:
            return False
        (magic, _, flags, method, _, _, crc, csize, _, name_len, extra_len) = (
            _LOCAL_HEADER.unpack_from(self._buffer)
        )
        if magic != b"PK\x03\x04":
            raise CodecError("zip: corrupt input (no local file header)")
        start = _LOCAL_HEADER.size + name_len + extra_len
        if len(self._buffer) < start:
            return False
        self._buffer = self._buffer[start:]
        self._descriptor = bool(flags & 0x08)
        self._header_crc = crc
        if method == zipfile.ZIP_DEFLATED:
            self._inflate = zlib.decompressobj(-15)
        elif method == zipfile.ZIP_STORED and not self._descriptor and csize != 0xFFFFFFFF:
            self._stored_left = csize
            self._done = csize == 0
        else:
            raise CodecError(f"zip: unsupported entry (method {method}, flags {flags:#x})")
        return True

    def _body(self, data: bytes) -> bytes:
        if self._inflate is not None:
            try:
                out = self._inflate.decompress(data)
            except zlib.error as error:
                raise CodecError(f"zip: corrupt input ({error})") from error
            self._done = self._inflate.eof
            rest = self._inflate.unused_data if self._done else b""
        else:
            assert self._stored_left is not None
            out, rest = data[: self._stored_left], data[self._stored_left :]
            self._stored_left -= len(out)
            self._done = self._stored_left == 0
        self._tail = rest[:16]
        self._crc = zlib.crc32(out, self._crc)
        return out

    def finish(self) -> bytes:
        if self._inflate is None and self._stored_left is None and not self._buffer:
            return b""  # no input at all
        if not self._done:
            raise CodecError("zip: truncated input (entry data ended early)")
        expected = self._header_crc
        if self._descriptor:
            tail = self._tail[4:] if self._tail.startswith(b"PK\x07\x08") else self._tail
            if len(tail) < 4:
                raise CodecError("zip: truncated input (no data descriptor)")
            expected = int.from_bytes(tail[:4], "little")
        if expected != self._crc:
            raise CodecError(f"zip: CRC-32 {self._crc:08x} read, {expected:08x} recorded")
        return b""
