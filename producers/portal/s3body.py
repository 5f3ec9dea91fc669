"""What a request body and a conditional GET must pass at the S3 door: pure checks over the
bytes as they arrive (``payload``) and over the conditional headers (``conditions``).

Rules kept here:

- The payload is read once, as it streams: an aws-chunked body through ``sigv4.ChunkDecoder``
  (each chunk's signature, the trailer's checksums, ``x-amz-decoded-content-length``), any other
  against the SHA-256 it was signed with (``XAmzContentSHA256Mismatch``), ``Content-MD5``
  (``BadDigest``) and an ``x-amz-checksum-*`` header. Every check that needs the whole body
  raises after its last byte and before the caller's ``async for`` ends, so a caller that
  registers only once the loop is done never registers a body that failed.
- Conditions follow RFC 9110's order: ``If-Match`` then ``If-Unmodified-Since`` (412), then
  ``If-None-Match`` then ``If-Modified-Since`` (304).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from starlette.requests import ClientDisconnect, Request

from producers.portal.awschunked import Checksum, ChunkDecoder
from producers.portal.s3xml import MAX_XML, S3Error
from producers.portal.sigv4 import STREAMING, UNSIGNED, Claim, Verified


class Payload:
    """A request's payload, its bytes as they arrive (``async for``), each check of it made
    (see the module rules); a failed check raises after the last byte, before the caller
    registers anything.

    ``checked`` names, before a byte arrives, the client's own checksums of the bytes that will
    be checked (``content-md5``, ``x-amz-checksum-<name>`` in a header or the trailer); once
    the bytes have all passed, ``vouched`` holds each of them with the value that matched."""

    def __init__(self, request: Request, verified: Verified) -> None:
        self._request = request
        self._claim: Claim = verified.claim
        headers = request.headers
        streaming = self._claim.payload in STREAMING
        self._md5 = hashlib.md5(usedforsecurity=False) if "content-md5" in headers else None
        self._sha = None if streaming or self._claim.payload == UNSIGNED else hashlib.sha256()
        self._sums = [] if streaming else [
            (c, v) for n, v in headers.items() if (c := Checksum.of_header(n)) is not None
        ]  # fmt: skip
        self._decoder = None
        if streaming:
            trailer = [t.strip() for t in headers.get("x-amz-trailer", "").split(",") if t.strip()]
            self._decoder = ChunkDecoder(verified, trailer=trailer)
        self.checked = (
            *(("content-md5",) if self._md5 is not None else ()),
            *(f"x-amz-checksum-{c.name}" for c, _ in self._sums),
            *(self._decoder.checksums if self._decoder is not None else ()),
        )
        self.vouched: dict[str, str] = {}

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._read()

    async def _read(self) -> AsyncIterator[bytes]:
        md5, sha, sums, decoder = self._md5, self._sha, self._sums, self._decoder
        received = 0
        try:
            async for data in self._request.stream():
                pieces = decoder.feed(data) if decoder is not None else [data] if data else []
                for piece in pieces:
                    received += len(piece)
                    if md5 is not None:
                        md5.update(piece)
                    if sha is not None:
                        sha.update(piece)
                    for checksum, _ in sums:
                        checksum.update(piece)
                    yield piece
        except ClientDisconnect:
            raise S3Error("IncompleteBody", "the body was cut", 400) from None
        headers, vouched = self._request.headers, dict[str, str]()
        if decoder is not None:
            trailer = decoder.finish()
            vouched |= {name: trailer[name] for name in decoder.checksums}
            declared = headers.get("x-amz-decoded-content-length")
            if declared is not None and declared.strip() != str(received):
                raise S3Error("IncompleteBody", "x-amz-decoded-content-length not received", 400)
        if sha is not None and not hmac.compare_digest(sha.hexdigest(), self._claim.payload):
            raise S3Error(
                "XAmzContentSHA256Mismatch", "the body's SHA-256 is not the one signed", 400
            )
        if md5 is not None:
            sent = headers["content-md5"].strip()
            if not hmac.compare_digest(base64.b64encode(md5.digest()).decode(), sent):
                raise S3Error("BadDigest", "The Content-MD5 you specified did not match", 400)
            vouched["content-md5"] = sent
        for checksum, value in sums:
            checksum.check(value)
            vouched[f"x-amz-checksum-{checksum.name}"] = value.strip()
        self.vouched = vouched


def payload(request: Request, verified: Verified) -> Payload:
    """The payload of ``request`` (see ``Payload``)."""
    return Payload(request, verified)


async def small(request: Request, verified: Verified) -> bytes:
    """A whole payload of at most ``MAX_XML`` bytes (an XML document), checked."""
    body = b""
    async for chunk in payload(request, verified):
        body += chunk
        if len(body) > MAX_XML:
            raise S3Error("MalformedXML", "the body is too large", 400)
    return body


def conditions(request: Request, etag: str, modified: datetime | None) -> int | None:
    """304 or 412 when a conditional header says so (RFC 9110's order), else None."""
    headers = request.headers
    match = headers.get("if-match")
    if match is not None and match.strip() != "*" and etag not in _tags(match):
        return 412
    since = _when(headers.get("if-unmodified-since"))
    if match is None and since is not None and modified is not None and modified > since:
        return 412
    none = headers.get("if-none-match")
    if none is not None and (none.strip() == "*" or etag in _tags(none)):
        return 304
    changed = _when(headers.get("if-modified-since"))
    if none is None and changed and modified and modified.replace(microsecond=0) <= changed:
        return 304
    return None


def _tags(header: str) -> list[str]:
    return [t.strip() if t.strip().startswith('"') else f'"{t.strip()}"' for t in header.split(",")]


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parsedate_to_datetime(text).astimezone(UTC)
    except (TypeError, ValueError):
        return None


__all__ = ["Payload", "conditions", "payload", "small"]
