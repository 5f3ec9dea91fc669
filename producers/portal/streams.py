"""The bytes of one portal file on their way: a download from the object store, an upload
into the ingest service, an upload under a temporary name spooled on local disk.

Rules kept here (the module rules of ``producers.portal.service`` apply):

- A download is complete only when every byte was served in order from offset 0, so the
  store's verified end was reached; then a held transfer is marked ``DONE``
  (``TransferDownloaded``). Every download ends as one ``PortalDownloaded`` with the bytes sent.
- An upload streams into the ingest service as it arrives, in order (offset = bytes received),
  handed over in pieces of ``GATHER`` bytes; it ends registered (``PortalUploaded``), or
  aborted: the ingest service then fails the registration and keeps no object. An upload
  passing its cap is aborted with the cap's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bus.errors import EcpdsError
from bus.events import envelope
from bus.events.datafiles import RefusalReason
from bus.events.portal import PortalDownloaded, PortalUploaded
from bus.events.transfers import TransferDownloaded
from bus.logging import get_logger
from producers.ingest.core import PORTAL_REQUESTER, Submission
from producers.ingest.core import Refused as IngestRefused
from producers.ingest.service import Failure, Receipt
from producers.portal.access import Direction, PortalPath
from producers.portal.errors import Failed, TooLarge, Unsupported
from projections.portal import Available
from store.errors import ObjectCorrupt
from store.objects import ObjectId
from store.ports import ObjectStore

if TYPE_CHECKING:
    from producers.portal.service import Session

log = get_logger(__name__)

CHUNK = 256 * 1024  # bytes read from a spooled upload at a time
UPLOAD_QUEUE = 16  # chunks in flight between a door and the ingest service
# Bytes an upload gathers before handing them to the ingest service: the store's own chunk
# (1 MiB), so its writer thread, ADLER32 and MD5 see few large buffers, not one hand-over per
# SFTP WRITE (255 KiB) or HTTPS body read (often 16-64 KiB).
GATHER = 1024 * 1024


@dataclass(slots=True)
class Staged:
    """An upload under a temporary name, spooled at ``path``."""

    path: Path
    size: int = 0
    mtime: datetime = field(default_factory=lambda: datetime.now(UTC))


def _over(cap: tuple[int, str] | None, size: int) -> str | None:
    """Why ``size`` bytes pass ``cap``, or None."""
    if cap is None or size <= cap[0]:
        return None
    return f"more than {cap[0]} bytes: {cap[1]}"


async def read_file(path: Path) -> AsyncIterator[bytes]:
    """The bytes of a local file, read off the event loop."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()


class Download:
    """One file being read by a client, at any offsets (see the module rules).

    Sequential reads are served from the store's chunks without gathering them in a buffer (a
    read within one chunk is one slice), and the next chunk is fetched while the current one
    is served, so the store's read and checksum (in a worker thread) overlap the door's work
    on the event loop (the SSH record layer's encryption, TLS)."""

    def __init__(self, session: Session, path: PortalPath, item: Available, store: ObjectStore):
        self.session = session
        self.path = path
        self.item = item
        self._store = store
        self._stream: AsyncIterator[bytes] | None = None
        self._ahead: asyncio.Future[bytes | None] | None = None  # the next chunk, on its way
        self._chunk = b""  # the chunk being served, from ``_at``
        self._at = 0
        self._next = 0  # offset in the file of the next byte to serve
        self._whole = True  # every read so far continued the previous one, from offset 0
        self.sent = 0
        self._started = time.monotonic()
        self._closed = False

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (b"" at or past the end)."""
        if offset >= self.item.size:
            return b""
        if offset != self._next:
            self._whole = False  # a seek: this read cannot vouch for the whole file
        if self._stream is None or offset != self._next:
            await self._reopen(offset)
        parts: list[bytes] = []
        wanted = size
        while wanted:
            if self._at >= len(self._chunk):
                chunk = await self._following()
                if chunk is None:
                    break
                self._chunk, self._at = chunk, 0
            chunk, at = self._chunk, self._at
            take = min(wanted, len(chunk) - at)
            parts.append(chunk if take == len(chunk) else chunk[at : at + take])
            self._at += take
            wanted -= take
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._next = offset + len(data)
        self.sent += len(data)
        return data

    async def _following(self) -> bytes | None:
        """The store's next chunk (None at its end); the one after it is asked for at once."""
        assert self._stream is not None
        ahead = self._ahead or asyncio.ensure_future(anext(self._stream, None))
        self._ahead = None
        try:
            chunk = await ahead
        except ObjectCorrupt as error:
            self._whole = False
            log.error("portal download corrupt", path=str(self.path), error=str(error))
            raise Failed(f"{self.path}: stored bytes do not match their checksum") from error
        except EcpdsError as error:
            self._whole = False
            raise Failed(f"{self.path}: the store failed ({error})") from error
        if chunk is not None:
            self._ahead = asyncio.ensure_future(anext(self._stream, None))
        return chunk

    async def _reopen(self, offset: int) -> None:
        await self._drop()
        self._chunk, self._at = b"", 0
        self._next = offset
        self._stream = self._store.get(ObjectId(self.item.guid), offset=offset)

    async def _drop(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:  # the stream cannot be closed while a read of it is running
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    @property
    def complete(self) -> bool:
        """Every byte served in order from offset 0: the verified end was reached."""
        return self._whole and self._next == self.item.size and self.sent == self.item.size

    async def close(self) -> None:
        """End the download: count it, and publish it (and ``DONE`` when it was complete)."""
        if self._closed:
            return
        self._closed = True
        await self._drop()
        session, item, portal = self.session, self.item, self.session.portal
        complete = self.complete
        duration = int((time.monotonic() - self._started) * 1000)
        portal.usage.moved(session.login, Direction.DOWNLOAD, self.sent, portal.clock())
        log.info(
            "portal download",
            user=session.login,
            path=str(self.path),
            bytes=self.sent,
            complete=complete,
            duration_ms=duration,
            protocol=session.protocol,
        )
        destination = self.path.destination or ""
        downloaded = PortalDownloaded(
            envelope=envelope(portal.source, item.transfer_id),
            user=session.login,
            destination=destination,
            path=self.path.name,
            protocol=session.protocol,
            bytes_sent=self.sent,
            duration_ms=duration,
            complete=complete,
            data_file_id=item.data_file_id,
            transfer_id=item.transfer_id,
            client_address=session.address,
        )
        await portal.publish(portal.topics.portal, session.login, downloaded)
        if complete and item.status == "HOLD":
            done = TransferDownloaded(
                envelope=envelope(portal.source, item.transfer_id, downloaded.envelope.event_id),
                transfer_id=item.transfer_id,
                destination=destination,
                user=session.login,
                protocol=session.protocol,
                bytes_sent=self.sent,
            )
            await portal.publish(portal.topics.transfers, destination, done)


class Upload:
    """One file streaming into the ingest service as the client writes it."""

    def __init__(
        self,
        session: Session,
        path: PortalPath,
        size: int | None,
        cap: tuple[int, str] | None = None,
        target: str | None = None,
    ) -> None:
        self.session = session
        self.path = path
        self.received = 0
        self._cap = cap
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(UPLOAD_QUEUE)
        self._held: list[bytes] = []  # received, not handed over yet (under GATHER bytes)
        self._held_size = 0
        self._started = time.monotonic()
        assert path.destination is not None
        submission = Submission(
            destination=path.destination,
            target=target if target is not None else path.name,
            user=session.login,
            requested_by=f"{PORTAL_REQUESTER}{session.login}",
            original=path.parts[-1],
            size=size,
        )
        self._task = asyncio.ensure_future(session.portal.ingest.submit(submission, self._body()))
        self._ended = False
        session.portal.uploads.add(self)

    async def _body(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def _put(self, item: bytes | BaseException | None) -> None:
        """Hand ``item`` to the ingest service unless it has already answered."""
        if not self._queue.full() and not self._task.done():
            self._queue.put_nowait(item)  # the common case: no task or wait per chunk
            return
        putting = asyncio.ensure_future(self._queue.put(item))
        await asyncio.wait({putting, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not putting.done():
            putting.cancel()

    async def write(self, offset: int, data: bytes) -> None:
        if offset != self.received:
            await self.abort()
            raise Unsupported(f"{self.path}: writes must be sequential (resume is not supported)")
        if self._task.done():
            await self._answer()  # refused or failed early: say why
        if (over := _over(self._cap, self.received + len(data))) is not None:
            await self.abort(over)
            raise TooLarge(f"{self.path}: {over}")
        self._held.append(data)
        self._held_size += len(data)
        self.received += len(data)
        if self._held_size >= GATHER:
            await self._hand_over()

    async def _hand_over(self) -> None:
        """Hand the bytes held to the ingest service, as one chunk."""
        held = self._held
        chunk = held[0] if len(held) == 1 else b"".join(held)
        self._held, self._held_size = [], 0
        await self._put(chunk)

    async def finish(self) -> Receipt:
        """The client closed the file: the registration's outcome."""
        self._ended = True
        self.session.portal.uploads.discard(self)
        if self._held:
            await self._hand_over()
        await self._put(None)
        receipt = await self._answer()
        session, portal = self.session, self.session.portal
        duration = int((time.monotonic() - self._started) * 1000)
        portal.usage.moved(session.login, Direction.UPLOAD, receipt.size, portal.clock())
        uploaded = PortalUploaded(
            envelope=envelope(portal.source, receipt.data_file_id),
            user=session.login,
            destination=self.path.destination or "",
            path=self.path.name,
            protocol=session.protocol,
            size=receipt.size,
            duration_ms=duration,
            data_file_id=receipt.data_file_id,
            client_address=session.address,
        )
        await portal.publish(portal.topics.portal, session.login, uploaded)
        log.info(
            "portal upload",
            user=session.login,
            path=str(self.path),
            bytes=receipt.size,
            data_file_id=receipt.data_file_id,
            protocol=session.protocol,
        )
        return receipt

    async def _answer(self) -> Receipt:
        outcome = await self._task
        if isinstance(outcome, Receipt):
            return outcome
        if isinstance(outcome, IngestRefused):
            if outcome.reason is RefusalReason.TOO_LARGE:
                raise TooLarge(f"{self.path}: {outcome.message}")
            raise Failed(f"{self.path}: {outcome.message}")
        assert isinstance(outcome, Failure)
        raise Failed(f"{self.path}: {outcome.message}")

    async def abort(self, why: str | None = None) -> None:
        """The client went away midway (or the upload passed its cap): the ingest service
        fails the registration and keeps no object."""
        if self._ended:
            # ended by another caller (a door's abort, a finish): its outcome is awaited, so a
            # shutdown's ``cut_uploads`` returns only once the registration is closed
            await self._outcome_seen()
            return
        self._ended = True
        self._held, self._held_size = [], 0
        while not self._queue.empty():  # bytes not stored yet are dropped: the cut goes first
            self._queue.get_nowait()
        why = why or f"upload of {self.path} cut after {self.received} bytes"
        await self._put(ConnectionAbortedError(why))
        await self._outcome_seen()
        self.session.portal.uploads.discard(self)
        log.info("portal upload cut", user=self.session.login, path=str(self.path))

    async def _outcome_seen(self) -> None:
        """Wait for the ingest service's answer to an aborted upload (its failure, if it raised,
        is the cut itself: retrieved, not raised)."""
        await asyncio.wait({self._task})
        if not self._task.cancelled():
            self._task.exception()


class SpoolWriter:
    """An upload under a temporary name: spooled locally until renamed to a final name."""

    def __init__(
        self,
        session: Session,
        path: PortalPath,
        staged: Staged,
        cap: tuple[int, str] | None = None,
    ) -> None:
        self.session = session
        self.path = path
        self.staged = staged
        self.received = 0
        self._cap = cap
        self._handle = staged.path.open("wb")
        os.chmod(staged.path, 0o600)

    async def write(self, offset: int, data: bytes) -> None:
        if offset != self.received:
            await self.abort()
            raise Unsupported(f"{self.path}: writes must be sequential (resume is not supported)")
        if (over := _over(self._cap, self.received + len(data))) is not None:
            await self.abort(over)
            raise TooLarge(f"{self.path}: {over}")
        await asyncio.to_thread(self._handle.write, data)
        self.received += len(data)
        self.staged.size = self.received
        self.staged.mtime = datetime.now(UTC)

    async def finish(self) -> None:
        await asyncio.to_thread(self._handle.close)

    async def abort(self, why: str | None = None) -> None:
        self._handle.close()
        assert self.path.destination is not None
        self.session.portal.unstage(self.session.login, self.path.destination, self.path.name)


__all__ = ["CHUNK", "GATHER", "Download", "SpoolWriter", "Staged", "Upload", "read_file"]
