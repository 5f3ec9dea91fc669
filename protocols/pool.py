"""A pool of open transfer connections, reused per remote host.

``async with pool.connection(location) as conn:`` lends a connection opened for the same
scheme, host, port, user, secret and session options (``PoolKey``), or opens one. Rules kept:

- at most ``per_key`` connections per key are lent at once; more callers wait their turn;
- a connection that raised anything but a permanent ``TransferError`` (auth, permission, not
  found leave the session sound) is closed and dropped, never lent again: after a timeout, a
  reset or a cancelled transfer its protocol state is unknown;
- idle connections are closed after ``idle_timeout`` seconds by a reaper task;
- the lent connection resolves paths against the *caller's* location and applies its ``usetmp``
  and ``mkdirs``, so locations that differ only in base path or in those options share sessions.

Read a ``get`` stream to its end (or ``aclose`` it) before leaving the ``async with`` block: an
open stream still holds the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from protocols.base import ByteStream, Connection, Entry, Location, TransferError
from protocols.registry import connect

# Options read per operation by the pooled wrapper, not fixed when the session opens.
PER_OPERATION_OPTIONS = frozenset({"usetmp", "mkdirs"})


@dataclass(frozen=True)
class PoolKey:
    """What makes two locations able to share a session (the secret only as a digest)."""

    scheme: str
    host: str
    port: int | None
    user: str | None
    secret: str
    options: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, location: Location) -> PoolKey:
        digest = hashlib.sha256((location.password or "").encode()).hexdigest()[:16]
        options = tuple(
            sorted((k, v) for k, v in location.options.items() if k not in PER_OPERATION_OPTIONS)
        )
        return cls(location.scheme, location.host, location.port, location.user, digest, options)


@dataclass(frozen=True)
class PoolStats:
    opened: int
    reused: int
    discarded: int
    idle: int
    lent: int


@dataclass
class _Slot:
    """The connections of one key: a bound on lending, and the idle ones (newest last)."""

    limit: asyncio.Semaphore
    idle: list[tuple[Connection, float]] = field(default_factory=list)
    lent: int = 0


class PooledConnection:
    """A lent connection seen through the caller's location."""

    def __init__(self, inner: Connection, location: Location) -> None:
        self.inner = inner
        self.location = location
        self.closed = False

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]:
        return await self.inner.list(
            self.location.resolve(path), recursive=recursive, pattern=pattern, regex=regex
        )

    def get(self, path: str, *, offset: int = 0) -> ByteStream:
        return self.inner.get(self.location.resolve(path), offset=offset)

    async def put(
        self,
        path: str,
        data: AsyncIterable[bytes],
        *,
        use_tmp: bool | None = None,
        mkdirs: bool | None = None,
        offset: int = 0,
    ) -> int:
        return await self.inner.put(
            self.location.resolve(path),
            data,
            use_tmp=self.location.flag("usetmp", True) if use_tmp is None else use_tmp,
            mkdirs=self.location.flag("mkdirs", True) if mkdirs is None else mkdirs,
            offset=offset,
        )

    async def rename(self, source: str, target: str) -> None:
        await self.inner.rename(self.location.resolve(source), self.location.resolve(target))

    async def delete(self, path: str) -> None:
        await self.inner.delete(self.location.resolve(path))

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        await self.inner.mkdir(self.location.resolve(path), parents=parents)

    async def size(self, path: str) -> int:
        return await self.inner.size(self.location.resolve(path))

    async def close(self) -> None:
        """Closing a lent connection means: do not give it back to the pool."""
        self.closed = True


def _sound(connection: Connection) -> bool:
    return not getattr(connection, "broken", False)


class ConnectionPool:
    """Open connections by ``PoolKey``, lent one caller at a time."""

    def __init__(
        self,
        *,
        per_key: int = 4,
        idle_timeout: float = 60.0,
        opener: Callable[[Location], Awaitable[Connection]] = connect,
    ) -> None:
        self.per_key = per_key
        self.idle_timeout = idle_timeout
        self._opener = opener
        self._slots: dict[PoolKey, _Slot] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._opened = self._reused = self._discarded = 0

    def stats(self) -> PoolStats:
        return PoolStats(
            opened=self._opened,
            reused=self._reused,
            discarded=self._discarded,
            idle=sum(len(slot.idle) for slot in self._slots.values()),
            lent=sum(slot.lent for slot in self._slots.values()),
        )

    @contextlib.asynccontextmanager
    async def connection(self, location: Location) -> AsyncIterator[Connection]:
        if self._closed:
            raise RuntimeError("connection pool is closed")
        self._start_reaper()
        key = PoolKey.of(location)
        slot = self._slots.setdefault(key, _Slot(asyncio.Semaphore(self.per_key)))
        async with slot.limit:
            # Counted as lent before the (awaited) open, so the reaper never drops this slot.
            slot.lent += 1
            try:
                inner = await self._take(slot, location)
            except BaseException:
                slot.lent -= 1
                raise
            lent = PooledConnection(inner, location)
            keep = False
            try:
                yield lent
                keep = True
            except TransferError as error:
                keep = not error.retriable
                raise
            finally:
                slot.lent -= 1
                if keep and not lent.closed and _sound(inner) and not self._closed:
                    slot.idle.append((inner, time.monotonic()))
                else:
                    self._discarded += 1
                    await self._close(inner)

    async def _take(self, slot: _Slot, location: Location) -> Connection:
        while slot.idle:
            inner, _ = slot.idle.pop()  # the most recently used is the likeliest alive
            if _sound(inner):
                self._reused += 1
                return inner
            self._discarded += 1
            await self._close(inner)
        connection = await self._opener(location)
        self._opened += 1
        return connection

    @staticmethod
    async def _close(connection: Connection) -> None:
        # Closing is best effort: the peer may already be gone.
        with contextlib.suppress(Exception):
            await connection.close()

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(self.idle_timeout / 4, 0.05))
            await self.reap()

    async def reap(self, now: float | None = None) -> int:
        """Close connections idle for longer than ``idle_timeout``; returns how many."""
        moment = time.monotonic() if now is None else now
        stale: list[Connection] = []
        for key, slot in list(self._slots.items()):
            keep = [(c, t) for c, t in slot.idle if moment - t < self.idle_timeout]
            stale += [c for c, t in slot.idle if moment - t >= self.idle_timeout]
            slot.idle = keep
            if not slot.idle and slot.lent == 0 and not slot.limit.locked():
                del self._slots[key]
        for connection in stale:
            await self._close(connection)
        return len(stale)

    async def close(self) -> None:
        """Close every idle connection; lent ones are closed when given back."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for slot in self._slots.values():
            for connection, _ in slot.idle:
                await self._close(connection)
            slot.idle.clear()
