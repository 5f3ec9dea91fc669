"""What the object-store transfer modules (``s3``, ``az``, ``gs``) share: one way to be a store.

An object store has no directories and no partial objects: a path is a bucket (or container)
and a key, a directory is a key prefix, and an object appears whole when its upload completes.
``ObjectStoreConnection`` writes that once (path splitting, listing by prefix, directory
markers, ``usetmp`` renames, uploads in one request or in parts); a module supplies only its
service's calls. ``Chunker`` and ``send_parts`` cut a source stream into part buffers.

Rules kept:
- ``usetmp`` defaults to False: an object is visible only once its upload completes, so the
  final name never shows a partial object and a temporary name would only double the bytes
  moved. When asked, the temporary object is renamed, and removed if that rename fails.
- Part buffers are bounded: a buffer is alive only in the ``Chunker`` or in the one task that
  sends it, and ``send_parts`` takes a slot before filling a buffer and gives it back once the
  part is sent, so at most ``buffers x size`` bytes are held whatever the object size.
- A failure of the caller's own source stream reaches the caller as it was raised, never
  translated into a server error.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, NoReturn

from protocols.base import (
    AuthenticationFailed,
    ByteStream,
    Entry,
    Location,
    NotFound,
    PermissionDenied,
    ProtocolFailure,
    ServerFailure,
    TransferError,
    select,
    temporary_name,
)

MIB = 1024 * 1024


def mib_option(location: Location, name: str, default: float, minimum: float = 1) -> int:
    """An option given in MiB, returned in bytes; a given value is raised to ``minimum`` MiB."""
    raw = location.option(name)
    if not raw:
        return int(default * MIB)
    try:
        return int(max(float(raw), minimum) * MIB)
    except ValueError as exc:
        raise ProtocolFailure(f"option {name}={raw!r} is not a number of MiB") from exc


def status_error(status: int, text: str) -> TransferError:
    """The error an HTTP status means when the service's answer says no more."""
    if status == 401:
        return AuthenticationFailed(text)
    if status == 403:
        return PermissionDenied(text)
    if status == 404:
        return NotFound(text)
    if status >= 500 or status in {408, 429}:
        return ServerFailure(text)
    return ProtocolFailure(text)


def utc(moment: datetime | None) -> datetime | None:
    """Listings carry UTC times whatever zone the SDK attached."""
    return moment.astimezone(UTC) if moment else None


def host_url(location: Location, scheme: str) -> str:
    """``scheme://host[:port]`` of the location (an endpoint given by host, not by service)."""
    port = f":{location.port}" if location.port else ""
    return f"{scheme}://{location.host}{port}"


class Chunker:
    """Cuts an async byte stream into in-memory buffers of a given size (shorter only at the end).

    Buffers are ``io.BytesIO``: chunks are copied once, straight into them, and aiohttp sends a
    BytesIO in 64 KiB slices where a bytes-like body would be copied whole (slice, header
    join, transport buffer). A buffer handed back with ``unread`` is continued by the next
    call, so a caller can look at the head of a stream without keeping a second reference to
    it alive (which would break the memory bound). ``last`` is the length of the last buffer.
    """

    def __init__(self, data: AsyncIterable[bytes]) -> None:
        self._iterator = aiter(data)
        self._carry = memoryview(b"")
        self._head: io.BytesIO | None = None
        self.exhausted = False
        self.error: BaseException | None = None
        self.total = 0
        self.last = 0

    def unread(self, buffer: io.BytesIO) -> None:
        self._head = buffer
        self.total -= self.last

    async def whole(self, size: int) -> io.BytesIO | None:
        """The whole stream in one buffer if it ends within ``size`` bytes, else None.

        With None the bytes read are handed back (``unread``), so the next ``next`` starts
        with them and no reference to that buffer is left with the caller.
        """
        head = await self.next(size)
        if self.exhausted:
            return head
        self.unread(head)
        return None

    async def next(self, size: int) -> io.BytesIO:
        buffer = self._head if self._head is not None else io.BytesIO()
        self._head = None
        filled = buffer.seek(0, io.SEEK_END)
        if size > filled:
            # One jump to the full size makes BytesIO allocate exactly, not 12.5% more.
            buffer.seek(size - 1)
            buffer.write(b"\0")
            buffer.seek(filled)
        taken = self._carry[: max(0, size - filled)]
        filled += buffer.write(taken)
        self._carry = self._carry[len(taken) :]
        while filled < size and not self.exhausted:
            try:
                chunk = await anext(self._iterator)
            except StopAsyncIteration:
                self.exhausted = True
                break
            except BaseException as exc:
                self.error = exc  # the producer's failure, not the server's
                raise
            view = memoryview(chunk)
            written = buffer.write(view[: size - filled])
            filled += written
            self._carry = view[written:]
        buffer.truncate(filled)
        buffer.seek(0)
        self.last = filled
        self.total += filled
        return buffer


async def send_parts(
    chunker: Chunker,
    size: int,
    buffers: int,
    send: Callable[[int, io.BytesIO, int], Awaitable[None]],
    read: Callable[[io.BytesIO], None] | None = None,
) -> int:
    """Send the stream as parts of ``size`` bytes, ``send(number, body, length)`` a task each.

    Parts are numbered from 1; ``read`` sees every part in order before it is sent (a running
    checksum). At most ``buffers`` part buffers are alive at once. Returns the number of parts
    (at least one: an empty stream is one empty part). On any failure, a part's, the source's
    or a cancellation, the parts still running are cancelled and awaited before the error
    propagates, so the caller may abort the upload knowing nothing is still being sent.
    """
    slots = asyncio.Semaphore(buffers)
    tasks: list[asyncio.Task[None]] = []

    async def one(number: int, body: io.BytesIO, length: int) -> None:
        try:
            await send(number, body, length)
        finally:
            slots.release()

    try:
        while True:
            await slots.acquire()
            body = await chunker.next(size)
            if not chunker.last and tasks:
                slots.release()
                break
            if read is not None:
                read(body)
            tasks.append(asyncio.create_task(one(len(tasks) + 1, body, chunker.last)))
            del body  # only the sending task may keep the buffer alive
            for task in tasks:
                if task.done():
                    task.result()  # fail fast: a failed part stops the producer
            if chunker.exhausted:
                break
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return len(tasks)


@dataclass(frozen=True, slots=True)
class Listed:
    """One key of a listing page, before it is made relative to the listed prefix."""

    key: str
    size: int = 0
    mtime: datetime | None = None
    is_dir: bool = False


class ObjectStoreConnection(ABC):
    """The transfer contract over a bucket/container of keys; subclasses make the service calls.

    ``split`` finds the bucket: the ``container_option`` option, else the first path segment.
    ``put`` reads up to ``multipart_size`` bytes: a stream that ends there is stored by
    ``_put_whole`` (one request), a longer one by ``_put_parts`` (which must leave nothing
    visible when it fails or is cancelled).
    """

    container_noun: ClassVar[str] = "bucket"
    container_option: ClassVar[str] = "bucketName"
    appended: ClassVar[str]  # what cannot be appended to, for the refusal
    multipart_size: int

    def __init__(self, location: Location) -> None:
        self.location = location

    @staticmethod
    @abstractmethod
    def translate(exc: BaseException, what: str) -> TransferError:
        """The module's error map: a library error as the project's own."""

    def fail(self, exc: BaseException, what: str, source: Chunker | None = None) -> NoReturn:
        """Raise the translated error; an error of the caller's own source stream passes as is."""
        if source is not None and exc is source.error:
            raise exc
        raise self.translate(exc, what) from exc

    def split(self, path: str) -> tuple[str, str]:
        """``(bucket, key)`` for a path; raises if no bucket can be found."""
        resolved = self.location.resolve(path).lstrip("/")
        container = self.location.option(self.container_option)
        if not container:
            container, _, resolved = resolved.partition("/")
        if not container or container == ".":
            noun, option = self.container_noun, self.container_option
            raise ProtocolFailure(f"{path!r}: no {noun} in the path and no {option} option")
        return container, "" if resolved == "." else resolved

    @abstractmethod
    def _listing(self, container: str, prefix: str, recursive: bool) -> AsyncIterator[Listed]:
        """Keys under ``prefix`` (and, unless ``recursive``, the sub-prefixes one level down)."""

    @abstractmethod
    async def _put_whole(self, container: str, key: str, body: io.BytesIO, length: int) -> None:
        """Store a whole (short) object in one request."""

    @abstractmethod
    async def _put_parts(self, container: str, key: str, chunker: Chunker) -> None:
        """Store the chunker's stream in parts; nothing may appear if this fails."""

    @abstractmethod
    async def _put_marker(self, container: str, key: str) -> None:
        """Store the empty object that marks a directory."""

    @abstractmethod
    async def _remove(self, container: str, key: str) -> None:
        """Delete one object (the temporary one of a ``usetmp`` put whose rename failed)."""

    @abstractmethod
    async def open(self) -> None:
        """Set up the session (and the bucket, when asked) before the first call."""

    @abstractmethod
    def get(self, path: str, *, offset: int = 0) -> ByteStream: ...

    @abstractmethod
    async def rename(self, source: str, target: str) -> None: ...

    @abstractmethod
    async def delete(self, path: str) -> None: ...

    @abstractmethod
    async def size(self, path: str) -> int: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]:
        container, key = self.split(path)
        prefix = f"{key.rstrip('/')}/" if key else ""
        entries: list[Entry] = []
        try:
            async for listed in self._listing(container, prefix, recursive):
                name = listed.key[len(prefix) :]
                if not name:
                    continue  # the directory's own marker
                is_dir = listed.is_dir or name.endswith("/")
                size = 0 if is_dir else listed.size
                entries.append(Entry(name.rstrip("/"), size, listed.mtime, is_dir=is_dir))
        except Exception as exc:
            self.fail(exc, f"list {path}")
        return select(entries, pattern, regex)

    async def put(
        self,
        path: str,
        data: AsyncIterable[bytes],
        *,
        use_tmp: bool | None = None,
        mkdirs: bool | None = None,
        offset: int = 0,
        temporary: str | None = None,
    ) -> int:
        if offset:
            refusal = f"{self.appended} cannot be appended to (offset {offset})"
            raise ProtocolFailure(f"put {path}: {refusal}")
        if use_tmp is None:
            use_tmp = self.location.flag("usetmp", False)
        target = (temporary or temporary_name(path, self.location)) if use_tmp else path
        container, key = self.split(target)
        written = await self._write(container, key, data, path)
        if use_tmp:
            try:
                await self.rename(target, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._remove(container, key))
                raise
        return written

    async def _write(self, container: str, key: str, data: AsyncIterable[bytes], path: str) -> int:
        chunker = Chunker(data)
        try:
            whole = await chunker.whole(self.multipart_size)
            if whole is not None:
                await self._put_whole(container, key, whole, chunker.last)
            else:
                await self._put_parts(container, key, chunker)
        except Exception as exc:
            self.fail(exc, f"put {path}", chunker)
        return chunker.total

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        if not self.location.flag("dirMarker", False):
            return  # prefixes exist as soon as an object is under them
        container, key = self.split(path)
        if not key:
            return
        try:
            await self._put_marker(container, f"{key.rstrip('/')}/")
        except Exception as exc:
            self.fail(exc, f"mkdir {path}")


class ObjectStoreModule:
    """A transfer module whose ``connect`` makes an ``opens`` connection and opens it."""

    opens: ClassVar[type[ObjectStoreConnection]]

    async def connect(self, location: Location) -> ObjectStoreConnection:
        connection = self.opens(location)
        await connection.open()
        return connection
