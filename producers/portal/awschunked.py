"""The aws-chunked bodies of SigV4's streaming forms, decoded as they arrive, and S3's
whole-object checksums. Pure: no I/O (the S3 door feeds the bytes).

Rules kept here:

- ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``: each chunk (``<hex size>;chunk-signature=
  <sig>``) is held whole, its signature checked (chained from the previous one, the first from
  the request's), and only then handed on; a trailer is signed too. A chunk over ``MAX_CHUNK``
  bytes is refused (it would be held in memory).
- ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``: chunks are handed on as they arrive; the trailer's
  ``x-amz-checksum-<name>`` (CRC32, CRC32C, CRC64NVME, SHA1, SHA256; base64 of the big-endian
  digest)
  must match the bytes (``BadDigest``).
- A body that ends before its last chunk or its trailer is ``IncompleteBody``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol

import google_crc32c
from awscrt import checksums as crt_checksums

from producers.portal.sigv4 import (
    EMPTY_SHA256,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    Refusal,
    SigV4Error,
    Verified,
)

MAX_CHUNK = 16 * 1024 * 1024  # a signed chunk is held whole until its signature is checked


def _refuse(message: str, code: str, status: int = 400) -> Refusal:
    return Refusal(code, message, status)


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A CRC behind hashlib's ``update``/``digest``: ``extend(data, crc)`` and its width."""

    def __init__(self, extend: Callable[[bytes, int], int], width: int) -> None:
        self._extend, self._width, self.value = extend, width, 0

    def update(self, data: bytes) -> None:
        self.value = self._extend(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self._width, "big")


CHECKSUMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
_CRCS: dict[str, tuple[Callable[[bytes, int], int], int]] = {
    "crc32": (zlib.crc32, 4),
    "crc32c": (lambda data, crc: google_crc32c.extend(crc, data), 4),
    "crc64nvme": (crt_checksums.crc64nvme, 8),
}


class Checksum:
    """One of S3's whole-object checksums (``x-amz-checksum-<name>``, base64 of the digest)."""

    def __init__(self, name: str) -> None:
        if name not in CHECKSUMS:
            raise SigV4Error(
                _refuse(f"checksum {name[:30]} is not supported", "InvalidRequest", 400)
            )
        self.name = name
        crc = _CRCS.get(name)
        self._hash: _Hash = _Crc(*crc) if crc is not None else hashlib.new(name)

    @classmethod
    def of_header(cls, header: str) -> Checksum | None:
        """The checksum a header ``x-amz-checksum-<name>`` names (None: another header)."""
        prefix = "x-amz-checksum-"
        return cls(header[len(prefix) :]) if header.startswith(prefix) else None

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def encoded(self) -> str:
        return base64.b64encode(self._hash.digest()).decode()

    def check(self, expected: str) -> None:
        if not hmac.compare_digest(self.encoded(), expected.strip()):
            raise SigV4Error(
                _refuse(
                    f"the {self.name.upper()} you specified did not match the calculated checksum",
                    "BadDigest",
                    400,
                )
            )


class ChunkDecoder:
    """An aws-chunked body decoded as it arrives: ``feed`` returns the payload bytes it could
    vouch for (a signed chunk only once it is whole and its signature checked), ``finish``
    checks the body ended with its last chunk and its trailer, and returns the trailer."""

    def __init__(self, verified: Verified, *, trailer: Sequence[str] = ()) -> None:
        self._claim = verified.claim
        self._key = verified.signing_key
        self._signed = verified.claim.payload != STREAMING_UNSIGNED_TRAILER
        self._previous = verified.claim.signature
        self._expect_trailer = tuple(t.lower() for t in trailer)
        self._buffer = bytearray()
        self._want = -1  # bytes of the current chunk still to come; -1: reading a chunk header
        self._chunk_signature = ""
        self._held: list[bytes] = []  # a signed chunk's bytes, until it is whole
        self._done = False  # the last (empty) chunk was read
        self._trailer_done = False
        self._trailer_signed = False
        self.trailer: dict[str, str] = {}
        self._checksums = {
            name: c for name in self._expect_trailer if (c := Checksum.of_header(name)) is not None
        }
        self.checksums = tuple(self._checksums)  # the trailer's checksums of the bytes, checked

    def feed(self, data: bytes) -> list[bytes]:
        # a chunk's bytes are sliced from ``data`` (a whole read of them is ``data`` itself,
        # no copy); only a line cut between two reads is kept over
        out: list[bytes] = []
        if self._buffer:
            data = bytes(self._buffer) + data
            self._buffer.clear()
        at, end = 0, len(data)
        while at < end:
            if self._trailer_done:
                raise self._error("bytes after the end of the body")
            if self._want > 0:
                take = min(self._want, end - at)
                piece = data[at : at + take]
                at += take
                self._want -= take
                if self._signed:
                    self._held.append(piece)
                else:
                    self._count(piece)
                    out.append(piece)
                continue
            if self._want == 0:  # a chunk's bytes end with CRLF
                if end - at < 2:
                    break
                if data[at : at + 2] != b"\r\n":
                    raise self._error("a chunk does not end with CRLF")
                at += 2
                self._want = -1
                if self._signed:
                    whole = b"".join(self._held)
                    self._held = []
                    self._check_chunk(whole)
                    self._count(whole)
                    out.append(whole)
                continue
            newline = data.find(b"\r\n", at)
            if newline < 0:
                if end - at > 4096:
                    raise self._error("a chunk header or trailer line longer than 4096 bytes")
                break
            line = data[at:newline].decode("latin-1")
            at = newline + 2
            if self._done:
                self._trailer_line(line)
            else:
                self._header(line)
        if at < end:
            self._buffer += data[at:]
        return [piece for piece in out if piece]

    def _count(self, data: bytes) -> None:
        for checksum in self._checksums.values():
            checksum.update(data)

    def _header(self, line: str) -> None:
        size_text, _, extension = line.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise self._error("a malformed chunk size") from None
        if size > MAX_CHUNK or size < 0:
            raise self._error(f"a chunk of more than {MAX_CHUNK} bytes")
        if self._signed:
            name, _, value = extension.partition("=")
            if name.strip() != "chunk-signature" or not value:
                raise self._error("a chunk without its signature")
            self._chunk_signature = value.strip()
        if size == 0:
            if self._signed:
                self._check_chunk(b"")
            self._done = True  # then the trailer (or only the final CRLF)
            return
        self._want = size

    def _trailer_line(self, line: str) -> None:
        if line == "":
            self._trailer_done = True
            return
        name, sep, value = line.partition(":")
        if not sep:
            raise self._error("a malformed trailer line")
        name = name.strip().lower()
        if name == "x-amz-trailer-signature":
            self._check_trailer(value.strip())
        else:
            self.trailer[name] = value.strip()

    def _check_chunk(self, data: bytes) -> None:
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self._claim.amz_date_text,
                self._claim.scope,
                self._previous,
                EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            ]
        )
        expected = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self._chunk_signature):
            raise SigV4Error(
                _refuse("a chunk's signature does not match", "SignatureDoesNotMatch", 403)
            )
        self._previous = expected

    def _check_trailer(self, signature: str) -> None:
        if self._claim.payload != STREAMING_SIGNED_TRAILER:
            return
        lines = "".join(f"{name}:{value}\n" for name, value in self.trailer.items())
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                self._claim.amz_date_text,
                self._claim.scope,
                self._previous,
                hashlib.sha256(lines.encode()).hexdigest(),
            ]
        )
        expected = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise SigV4Error(
                _refuse("the trailer's signature does not match", "SignatureDoesNotMatch", 403)
            )
        self._trailer_signed = True

    def finish(self) -> dict[str, str]:
        """The trailer, once the body ended as it must; its checksums checked."""
        if not self._done or self._want >= 0 or self._held:
            raise self._error("the body ended before its last chunk")
        if self._buffer:
            self.feed(b"")
        if self._expect_trailer and not self._trailer_done:
            raise self._error("the body ended before its trailer")
        if self._claim.payload == STREAMING_SIGNED_TRAILER and not self._trailer_signed:
            raise SigV4Error(_refuse("the trailer is not signed", "SignatureDoesNotMatch", 403))
        for name in self._expect_trailer:
            if name not in self.trailer:
                raise self._error(f"the trailer lacks {name}")
            checksum = self._checksums.get(name)
            if checksum is not None:
                checksum.check(self.trailer[name])
        return self.trailer

    @staticmethod
    def _error(message: str) -> SigV4Error:
        return SigV4Error(_refuse(message, "IncompleteBody", 400))


__all__ = ["CHECKSUMS", "MAX_CHUNK", "Checksum", "ChunkDecoder"]
