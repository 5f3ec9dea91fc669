"""Moving one stored object to one host: stream, compress, hash, put, verify.

The bytes flow store -> (codec) -> MD5 tap -> transfer module, one chunk at a time, so memory
is a few chunks whatever the size. MD5 of the bytes sent is computed on the way, in a worker
thread while the module writes the previous chunk (hashlib releases the GIL on big buffers).
When the bytes go out unchanged (no compression) and the order carries the MD5 the store
computed at ingest, that MD5 is the one of the bytes sent: the store's read verifies size and
ADLER32 before the last chunk leaves, so the stream is the stored content or the delivery
fails. Hashing again would only take a core from the cipher on a busy machine.

Rules kept:
- the final name is never partial: the module writes under a temporary name and renames
  (``usetmp``; the object stores are atomic by themselves), so an interrupted or failed
  delivery leaves at most a temporary file;
- a delivery is verified before it is reported: the remote size must equal the bytes sent, and
  where the protocol keeps an MD5 (S3 ETag of a single-part object, Azure ``Content-MD5`` with
  ``azure.useMD5``) it must equal the MD5 computed on the way; a mismatch is a retriable
  ``ChecksumMismatch``;
- effectively once: an order with ``check_since`` (an earlier attempt's outcome is unknown, or
  this may be a redelivery) first lists the target's directory once (``settle``): it removes
  the temporary files earlier attempts of this transfer left there (their names are derived,
  ``core.leftovers``; where an FTP listing hides dot files, as vsftpd's does, the names of the
  last attempts are deleted unseen), and a file at the final name that ``core.found`` takes for this
  transfer's delivery is reported delivered (``FOUND_*``) instead of being sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import posixpath
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bus.events.base import Compression
from bus.events.config import IfTargetExists
from bus.events.orders import TransferOrdered
from bus.events.transfers import Verification
from bus.logging import get_logger
from consumers.movers import core
from protocols.base import (
    ChecksumMismatch,
    Connection,
    Entry,
    LandedSize,
    Location,
    NotFound,
    TransferError,
)
from protocols.pool import ConnectionPool
from store.compression import compress
from store.errors import StoreError
from store.objects import object_id
from store.ports import ObjectStore

log = get_logger(__name__)

# Hashing smaller chunks inline is cheaper than a thread hop.
THREAD_HASH = 256 * 1024
# schemes whose servers may leave dot files out of a listing (FTP LIST without -a)
HIDING = frozenset({"ftp", "ftps"})


@dataclass(frozen=True)
class Delivered:
    """What a verified delivery did."""

    remote_path: str
    bytes_sent: int
    duration_s: float
    verification: Verification
    md5: str | None


class Meter:
    """Counts bytes sent (for heartbeats) and throttles to a rate when one is set."""

    def __init__(self, rate: float | None, on_bytes: Callable[[int], None]) -> None:
        self._rate = rate
        self._on_bytes = on_bytes
        self._start = time.monotonic()
        self._sent = 0

    async def sent(self, count: int) -> None:
        self._sent += count
        self._on_bytes(count)
        if self._rate:
            ahead = self._sent / self._rate - (time.monotonic() - self._start)
            if ahead > 0:
                await asyncio.sleep(ahead)


class ReadAhead:
    """``stream`` with its next chunk always being read: the first from construction on, so a
    small object's store reads (thread hops) overlap the remote open, and each later chunk
    while the previous one is sent. ``aclose`` stops the read in flight and the stream."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = aiter(stream)
        self._next: asyncio.Future[bytes] = asyncio.ensure_future(anext(self._stream))

    def __aiter__(self) -> ReadAhead:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._next  # StopAsyncIteration at the end, as the stream said
        except TransferError as error:
            # a remote store's module failed: the store's trouble, not the destination host's
            # (``protocols.base.FAULTS``), so it must not read as the host's ConnectionLost
            raise StoreError(f"store read: {error}", retriable=error.retriable) from error
        self._next = asyncio.ensure_future(anext(self._stream))
        return chunk

    async def aclose(self) -> None:
        pending = self._next
        if not pending.done():
            pending.cancel()
        with contextlib.suppress(BaseException):
            await pending  # retrieved: a read error nobody asked for is not logged as lost
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(RuntimeError):  # already closed by the cancellation
                await close()


async def hashed(
    stream: AsyncIterable[bytes], md5: Any, meter: Meter
) -> AsyncGenerator[bytes, None]:
    """Pass ``stream`` through, updating ``md5`` (if any) in order; one chunk hashes while the
    previous one is sent."""
    pending: asyncio.Future[None] | None = None
    try:
        async for chunk in stream:
            if pending is not None:
                await pending
                pending = None
            if md5 is None:
                pass
            elif len(chunk) >= THREAD_HASH:
                pending = asyncio.ensure_future(asyncio.to_thread(md5.update, chunk))
            else:
                md5.update(chunk)
            await meter.sent(len(chunk))
            yield chunk
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await pending


async def deliver(
    order: TransferOrdered,
    location: Location,
    path: str,
    store: ObjectStore,
    pool: ConnectionPool,
    meter: Meter,
    *,
    temporary: str | None = None,
    check_since: datetime | None = None,
) -> Delivered:
    """Put the order's object at ``path`` on ``location`` (through ``temporary`` when given)
    and verify it; with ``check_since``, first ``settle`` what earlier attempts left."""
    started = time.monotonic()
    remote = location.resolve(path)
    async with pool.connection(location) as conn:
        if check_since is not None:
            landed = await settle(order, conn, location, path, check_since)
            if landed is not None:
                return Delivered(
                    remote_path=remote,
                    bytes_sent=0,
                    duration_s=time.monotonic() - started,
                    verification=landed,
                    md5=order.checksums.md5,
                )
        resumed = await _resume_point(order, conn, path)
        if resumed == order.size:
            verification = Verification.SIZE
            md5_hex = order.checksums.md5
            sent = 0
        else:
            known = order.checksums.md5 if order.compression == Compression.NONE else None
            md5 = None if known else hashlib.md5(usedforsecurity=False)
            read = ReadAhead(store.get(object_id(order.guid), offset=resumed))
            source: AsyncIterable[bytes] = read
            if order.compression != Compression.NONE:
                entry = posixpath.basename(order.original or order.target) or "data"
                source = compress(order.compression.value.lower(), source, entry=entry)
            stream = hashed(source, md5, meter)
            try:
                if resumed:
                    sent = await conn.put(path, stream, use_tmp=False, offset=resumed)
                else:
                    sent = await conn.put(path, stream, temporary=temporary)
            finally:
                await stream.aclose()
                await read.aclose()
            # a resumed put hashed only the tail: the whole file's MD5 is the stored one
            md5_hex = order.checksums.md5 if resumed or md5 is None else md5.hexdigest()
            verification = await verify(conn, location, path, resumed + sent, md5_hex)
    return Delivered(
        remote_path=remote,
        bytes_sent=sent,
        duration_s=time.monotonic() - started,
        verification=verification,
        md5=md5_hex,
    )


async def settle(
    order: TransferOrdered, conn: Connection, location: Location, path: str, since: datetime
) -> Verification | None:
    """Remove this transfer's earlier temporary files beside ``path``; how a file already at
    the final name is verified as its delivery (None: send it)."""
    remote = location.resolve(path)
    directory, name = posixpath.split(remote)
    pattern = core.leftovers(order, location, path)
    try:
        entries: list[Entry] | None = await conn.list(directory)
    except TransferError as error:
        if error.retriable:
            raise
        entries = None  # no listing here (or no directory yet): ask the final name's size
    entry: Entry | None = None
    if entries is None:
        try:
            entry = Entry(name, await conn.size(path), None)
        except TransferError as error:
            if error.retriable:
                raise
    else:
        for item in entries:
            if item.name == name:
                entry = item
            elif not item.is_dir and core.is_leftover(pattern, order, item.name):
                await _remove(conn, posixpath.join(directory, item.name), order)
        if location.scheme in HIDING and not any(i.name.startswith(".") for i in entries):
            # an FTP LIST without -a (vsftpd's default) hides dot files: delete the names
            # this transfer's last attempts derived, unseen (a missing one is no error)
            for temporary in core.derived_leftovers(order, location, path):
                await _remove(conn, temporary, order)
    verification = core.found(order, entry, since, None)
    if verification is not None:
        remote_md5 = await remote_checksum(conn, remote)
        verification = core.found(order, entry, since, remote_md5)
    return verification


async def _remove(conn: Connection, temporary: str, order: TransferOrdered) -> None:
    """Delete a temporary file an earlier attempt left (gone already or refused: logged)."""
    try:
        await conn.delete(temporary)
    except NotFound:
        return  # its writer renamed or removed it meanwhile
    except TransferError as error:
        if error.retriable:
            raise
        log.warning(
            "temporary file not removed",
            transfer_id=order.transfer_id,
            path=temporary,
            error=str(error),
        )
        return
    log.info("temporary file removed", transfer_id=order.transfer_id, path=temporary)


async def _resume_point(order: TransferOrdered, conn: Connection, path: str) -> int:
    """Where to start: the remote size for a resumable target, else 0."""
    if order.if_target_exists != IfTargetExists.RESUME or order.compression != Compression.NONE:
        return 0
    try:
        existing = await conn.size(path)
    except TransferError as error:
        if error.retriable:
            raise
        return 0  # not there (or no size on this protocol): send it all
    return existing if 0 < existing <= order.size else 0


async def verify(
    conn: Connection, location: Location, path: str, sent: int, md5: str | None
) -> Verification:
    """Check the remote size (and MD5 where kept); how the file was verified."""
    sized = False
    inner: Any = getattr(conn, "inner", conn)
    # SFTP stats the final name in the round trip of its rename: a size that matches is taken
    # from there (one that does not is asked again, and then fails the check)
    landed = inner.landed_size(location.resolve(path)) if isinstance(inner, LandedSize) else None
    try:
        remote_size = landed if landed == sent else await conn.size(path)
    except TransferError as error:
        if error.retriable:
            raise
        remote_size = None  # this protocol cannot tell a size (plain HTTP without HEAD size)
    if remote_size is not None:
        if remote_size != sent:
            raise ChecksumMismatch(f"{path}: remote size {remote_size}, sent {sent} bytes")
        sized = True
    remote_md5 = await remote_checksum(conn, location.resolve(path))
    checked = False
    if remote_md5 is not None and md5 is not None:
        if remote_md5 != md5:
            raise ChecksumMismatch(f"{path}: remote MD5 {remote_md5}, sent {md5}")
        checked = True
    if sized and checked:
        return Verification.SIZE_AND_CHECKSUM
    if sized:
        return Verification.SIZE
    return Verification.CHECKSUM if checked else Verification.NONE


async def remote_checksum(conn: Connection, absolute: str) -> str | None:
    """The MD5 the remote side keeps for a file, when its protocol offers one (else None).

    The transfer contract has no checksum operation, so this looks at the module's session:
    S3's ``ETag`` is the MD5 of a single-part object (a multipart one has ``-N``), Azure keeps
    ``Content-MD5`` when the blob was put with ``useMD5``.
    """
    inner: Any = getattr(conn, "inner", conn)
    kind = type(inner).__name__
    try:
        if kind == "S3Connection":
            bucket, key = inner.split(absolute)
            head = await inner._client.head_object(Bucket=bucket, Key=key)
            etag = str(head.get("ETag", "")).strip('"')
            return etag.lower() if etag and "-" not in etag else None
        if kind == "AzureConnection":
            props = await inner._blob(absolute).get_blob_properties()
            digest = props.content_settings.content_md5
            return bytes(digest).hex() if digest else None
    except Exception:  # a checksum we cannot read is no verification, not a failure
        return None
    return None
