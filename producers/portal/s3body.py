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


async def payload(request: Request, verified: Verified) -> AsyncIterator[bytes]:
    """The payload's bytes as they arrive, each check of it made (see the module rules);
    a failed check raises after the last byte, before the caller registers anything."""
    found: Claim = verified.claim
    headers = request.headers
    md5 = hashlib.md5(usedforsecurity=False) if "content-md5" in headers else None
    sha = hashlib.sha256() if found.payload not in STREAMING and found.payload != UNSIGNED else None
    sums = [
        (c, v) for n, v in headers.items() if (c := Checksum.of_header(n)) is not None
    ] if found.payload not in STREAMING else []  # fmt: skip
    decoder = None
    if found.payload in STREAMING:
        trailer = [t.strip() for t in headers.get("x-amz-trailer", "").split(",") if t.strip()]
        decoder = ChunkDecoder(verified, trailer=trailer)
    received = 0
    try:
        async for data in request.stream():
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
    if decoder is not None:
        decoder.finish()
        declared = headers.get("x-amz-decoded-content-length")
        if declared is not None and declared.strip() != str(received):
            raise S3Error("IncompleteBody", "x-amz-decoded-content-length not received", 400)
    if sha is not None and not hmac.compare_digest(sha.hexdigest(), found.payload):
        raise S3Error("XAmzContentSHA256Mismatch", "the body's SHA-256 is not the one signed", 400)
    if md5 is not None:
        sent = headers["content-md5"].strip()
        if not hmac.compare_digest(base64.b64encode(md5.digest()).decode(), sent):
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match", 400)
    for checksum, value in sums:
        checksum.check(value)


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


__all__ = ["conditions", "payload", "small"]
