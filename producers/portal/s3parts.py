"""The S3 door's multipart uploads in progress: their parts spooled on local disk, never in the
user's view, until ``CompleteMultipartUpload`` streams them (in the order it lists) through the
session's one upload path (``Session.open_write``).

Rules kept here:

- A part is a file ``<var>/portal/spool/s3-<upload id>-<part number>`` (mode 0600), the same
  spool the portal clears at start (uploads in progress die with the process that held them);
  a part sent again replaces the previous one.
- An upload belongs to the user, bucket and key that created it: any other asking for it gets
  ``NoSuchUpload``, so an upload id tells nothing.
- A part's ETag is the MD5 of its bytes, as S3's, unless the client vouched for them with a
  checksum of its own that the door checked (``x-amz-checksum-crc32`` and friends, as boto3
  and aws-cli send by default, and no ``Content-MD5``): then it is an opaque tag made from
  that checksum and the size, which spares an MD5 of every byte (the registered object still
  gets the MD5 of all its bytes). S3 calls a part's ETag opaque; clients that compare it with
  an MD5 (s3cmd) send no such checksum, and a client that sends ``Content-MD5`` gets it back.
- Complete checks S3's rules: parts listed in ascending order, each sent with that ETag, every
  part but the last at least ``MIN_PART`` bytes. The object's ETag is S3's: the MD5 of the
  parts' ETags (as digests), ``-`` and their count.
- Abort (or a complete that registered) deletes every part: nothing is left.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from producers.portal.s3body import Payload
from producers.portal.s3xml import S3Error

MIN_PART = 5 * 1024 * 1024
MAX_PARTS = 10_000
WRITE = 1024 * 1024


@dataclass(slots=True)
class Part:
    number: int
    path: Path
    size: int
    etag: str  # 32 hex digits, without quotes (see the module rules)
    mtime: datetime


@dataclass(slots=True)
class Pending:
    """One multipart upload in progress."""

    upload_id: str
    login: str
    bucket: str
    key: str
    initiated: datetime
    parts: dict[int, Part] = field(default_factory=dict)
    completing: bool = False


class Multiparts:
    """Every multipart upload in progress of one portal."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self._pending: dict[str, Pending] = {}

    def create(self, login: str, bucket: str, key: str, now: datetime) -> Pending:
        upload_id = secrets.token_urlsafe(24)
        pending = Pending(upload_id, login, bucket, key, now)
        self._pending[upload_id] = pending
        return pending

    def find(self, upload_id: str, login: str, bucket: str, key: str) -> Pending:
        pending = self._pending.get(upload_id)
        if pending is None or (pending.login, pending.bucket, pending.key) != (login, bucket, key):
            raise S3Error("NoSuchUpload", "no such upload (aborted or completed?)", 404)
        return pending

    def listing(self, login: str, bucket: str, prefix: str) -> list[Pending]:
        found = [
            p
            for p in self._pending.values()
            if p.login == login and p.bucket == bucket and p.key.startswith(prefix)
        ]
        return sorted(found, key=lambda p: (p.key, p.initiated))

    async def put_part(
        self, pending: Pending, number: int, body: AsyncIterable[bytes] | Payload, now: datetime
    ) -> Part:
        """Spool part ``number`` from ``body``; a body that fails leaves no part."""
        if not 1 <= number <= MAX_PARTS:
            raise S3Error("InvalidArgument", f"part numbers are 1 to {MAX_PARTS}", 400)
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self.spool / f"s3-{pending.upload_id}-{number}"
        temporary = final.with_name(final.name + f".{secrets.token_hex(4)}")
        vouched = isinstance(body, Payload) and bool(body.checked)
        digest = None if vouched else hashlib.md5(usedforsecurity=False)
        size = 0
        handle = await asyncio.to_thread(_open_private, temporary)
        held: list[bytes] = []  # a MiB at a time, hashed and written in a worker thread
        held_size = 0  # (MD5 releases the GIL: it runs beside the event loop, not on it)

        def spill(pieces: list[bytes]) -> None:  # as they came: no joined copy
            if digest is not None:
                for piece in pieces:
                    digest.update(piece)
            handle.writelines(pieces)

        try:
            async for chunk in body:
                size += len(chunk)
                held.append(chunk)
                held_size += len(chunk)
                if held_size >= WRITE:
                    await asyncio.to_thread(spill, held)
                    held, held_size = [], 0
            if held:
                await asyncio.to_thread(spill, held)
            await asyncio.to_thread(handle.close)
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
        if pending.upload_id not in self._pending:  # aborted while it arrived
            temporary.unlink(missing_ok=True)
            raise S3Error("NoSuchUpload", "the upload was aborted", 404)
        os.replace(temporary, final)
        if digest is not None:
            etag = digest.hexdigest()
        else:
            assert isinstance(body, Payload)
            etag = part_tag(body.vouched, size)
        part = Part(number, final, size, etag, now)
        pending.parts[number] = part
        return part

    def chosen(self, pending: Pending, listed: list[tuple[int, str]]) -> tuple[list[Part], str]:
        """The parts a complete lists, checked, and the object's S3 ETag."""
        numbers = [n for n, _ in listed]
        if numbers != sorted(set(numbers)):
            raise S3Error("InvalidPartOrder", "parts must be listed in ascending order", 400)
        parts = []
        for number, etag in listed:
            part = pending.parts.get(number)
            if part is None or part.etag != etag.lower():
                raise S3Error("InvalidPart", f"part {number} was not sent with ETag {etag}", 400)
            parts.append(part)
        for part in parts[:-1]:
            if part.size < MIN_PART:
                raise S3Error(
                    "EntityTooSmall", f"part {part.number} is under {MIN_PART} bytes", 400
                )
        joined = b"".join(bytes.fromhex(p.etag) for p in parts)
        etag = f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(parts)}"
        return parts, etag

    def drop(self, pending: Pending) -> None:
        """Forget ``pending`` and delete its parts."""
        self._pending.pop(pending.upload_id, None)
        for part in pending.parts.values():
            part.path.unlink(missing_ok=True)
        pending.parts.clear()

    def drop_all(self) -> None:
        for pending in list(self._pending.values()):
            self.drop(pending)


def part_tag(vouched: Mapping[str, str], size: int) -> str:
    """A part's ETag (32 hex digits, as an MD5) from the checksums its client sent and the door
    checked: the MD5 itself when ``Content-MD5`` was one of them."""
    if "content-md5" in vouched:
        return base64.b64decode(vouched["content-md5"]).hex()
    text = ";".join(f"{name}={vouched[name]}" for name in sorted(vouched)) + f";{size}"
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _open_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


__all__ = ["MIN_PART", "Multiparts", "Part", "Pending", "part_tag"]
