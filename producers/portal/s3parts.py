"""The S3 door's multipart uploads in progress: their parts kept on local disk, never in the
user's view, until ``CompleteMultipartUpload`` streams them (in the order it lists) through the
session's one upload path (``Session.open_write``).

Rules kept here:

- An upload is a folder ``<var>/portal/multipart/<upload id>/`` (mode 0700): its parts
  ``<number>`` (mode 0600; a part sent again replaces the previous one) and ``upload.json``,
  which names its user, bucket, key and the parts that have fully arrived. The manifest is
  rewritten (temporary file, rename) after each part lands, so an upload survives a restart of
  the portal or a crash of its process: at start every upload is read back; a part file the
  manifest does not list (cut by the crash) is deleted, as is an upload older than ``KEEP`` or
  whose manifest cannot be read. Parts are not fsynced: an upload does not survive a crash of
  the machine (the client sends it again).
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
- Abort (or a complete that registered) deletes the upload's folder: nothing is left.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from bus.private import replace_private
from producers.portal.s3body import Payload
from producers.portal.s3xml import S3Error

MANIFEST = "upload.json"
KEEP = timedelta(days=7)  # an upload not completed nor aborted within this is dropped at start
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
    """Every multipart upload in progress of one portal, kept under ``root`` (module rules)."""

    def __init__(self, root: Path, now: datetime) -> None:
        self.root = root
        self._pending: dict[str, Pending] = {}
        self._saving: dict[str, asyncio.Lock] = {}
        self.resumed = self._load(now)

    def _load(self, now: datetime) -> int:
        """Read back the uploads a previous run left (module rules); how many were kept."""
        if not self.root.is_dir():
            return 0
        for folder in sorted(self.root.iterdir()):
            pending = _read(folder) if folder.is_dir() else None
            if pending is None or now - pending.initiated > KEEP:
                _remove(folder)
                continue
            listed = {part.path.name for part in pending.parts.values()}
            for leftover in folder.iterdir():
                if leftover.name != MANIFEST and leftover.name not in listed:
                    leftover.unlink(missing_ok=True)  # a part cut mid-way, or a temporary
            self._pending[pending.upload_id] = pending
        return len(self._pending)

    def create(self, login: str, bucket: str, key: str, now: datetime) -> Pending:
        upload_id = secrets.token_urlsafe(24)
        pending = Pending(upload_id, login, bucket, key, now)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)  # upload ids are not listed
        (self.root / upload_id).mkdir(mode=0o700)
        _write_manifest(self.root / upload_id, _manifest(pending))
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
        """Keep part ``number`` from ``body``; a body that fails leaves no part."""
        if not 1 <= number <= MAX_PARTS:
            raise S3Error("InvalidArgument", f"part numbers are 1 to {MAX_PARTS}", 400)
        if pending.upload_id not in self._pending:
            raise S3Error("NoSuchUpload", "the upload was aborted", 404)
        folder = self.root / pending.upload_id
        final = folder / str(number)
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
        async with self._saving.setdefault(pending.upload_id, asyncio.Lock()):
            if pending.upload_id in self._pending:  # the latest parts, once they all landed
                await asyncio.to_thread(_write_manifest, folder, _manifest(pending))
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
        """Forget ``pending`` and delete its folder (its parts and manifest)."""
        self._pending.pop(pending.upload_id, None)
        self._saving.pop(pending.upload_id, None)
        pending.parts.clear()
        _remove(self.root / pending.upload_id)


def part_tag(vouched: Mapping[str, str], size: int) -> str:
    """A part's ETag (32 hex digits, as an MD5) from the checksums its client sent and the door
    checked: the MD5 itself when ``Content-MD5`` was one of them."""
    if "content-md5" in vouched:
        return base64.b64decode(vouched["content-md5"]).hex()
    text = ";".join(f"{name}={vouched[name]}" for name in sorted(vouched)) + f";{size}"
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _manifest(pending: Pending) -> str:
    return json.dumps(
        {
            "upload_id": pending.upload_id,
            "login": pending.login,
            "bucket": pending.bucket,
            "key": pending.key,
            "initiated": pending.initiated.isoformat(),
            "parts": [
                {"number": p.number, "size": p.size, "etag": p.etag, "mtime": p.mtime.isoformat()}
                for p in sorted(pending.parts.values(), key=lambda p: p.number)
            ],
        }
    )


def _write_manifest(folder: Path, text: str) -> None:
    replace_private(folder / MANIFEST, text)


def _read(folder: Path) -> Pending | None:
    """The upload kept in ``folder``, its parts those listed whose file is whole; None when
    its manifest cannot be read."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        pending = Pending(
            str(data["upload_id"]),
            str(data["login"]),
            str(data["bucket"]),
            str(data["key"]),
            datetime.fromisoformat(data["initiated"]),
        )
        for item in data["parts"]:
            path = folder / str(int(item["number"]))
            if path.is_file() and path.stat().st_size == int(item["size"]):
                part = Part(
                    int(item["number"]),
                    path,
                    int(item["size"]),
                    str(item["etag"]),
                    datetime.fromisoformat(item["mtime"]),
                )
                pending.parts[part.number] = part
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pending if pending.upload_id == folder.name else None


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _open_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


__all__ = ["KEEP", "MIN_PART", "Multiparts", "Part", "Pending", "part_tag"]
