"""A pool of open transfer connections, reused per remote host.

``async with pool.connection(location) as conn:`` lends a connection opened for the same
scheme, host, port, user, secret and session options (``PoolKey``), or opens one. Rules kept:

- at most ``per_key`` connections per key are lent at once; more callers wait their turn;
- a connection that raised anything but a permanent ``TransferError`` (auth, permission, not
  found leave the session sound) is closed and dropped, never lent again: after a timeout, a
  reset or a cancelled transfer its protocol state is unknown;
- idle connections are closed after ``idle_timeout`` seconds by a reaper task;
- a connection that runs many operations at once (``multiplexed``: SFTP, whose requests carry
  ids) is lent to up to ``share`` callers together: their requests then leave in the same
  packets and the server handles them in one process. A failure that would drop it only
  retires it: nobody new is lent it, and it is closed when its last caller gives it back;
- the lent connection resolves paths against the *caller's* location and applies its ``usetmp``
  and ``mkdirs``, so locations that differ only in base path or in those options share sessions.
  A path resolved against a relative base is still relative (to the login directory), so such
  callers share sessions opened at the login directory itself, which keep it as it is, and
  never those opened at an absolute base, which would put it under that base a second time.

Read a ``get`` stream to its end (or ``aclose`` it) before leaving the ``async with`` block: an
open stream still holds the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from protocols.base import LOGIN_DIRECTORY, ByteStream, Connection, Entry, Location, TransferError
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
    relative: bool = False  # the caller's base path is under the login directory

    @classmethod
    def of(cls, location: Location) -> PoolKey:
        digest = hashlib.sha256((location.password or "").encode()).hexdigest()[:16]
        options = tuple(
            sorted((k, v) for k, v in location.options.items() if k not in PER_OPERATION_OPTIONS)
        )
        relative = not location.path.startswith("/")
        return cls(
            location.scheme, location.host, location.port, location.user, digest, options, relative
        )


@dataclass(frozen=True)
class PoolStats:
    opened: int
    reused: int
    discarded: int
    idle: int
    lent: int


@dataclass(eq=False)
class _Shared:
    """A multiplexed connection and how many callers hold it."""

    connection: Connection
    users: int = 0
    retiring: bool = False
    since: float = field(default_factory=time.monotonic)  # when it was last given back


@dataclass
class _Slot:
    """The connections of one key: a bound on lending, the idle ones (newest last), and the
    multiplexed ones lent to several callers."""

    limit: asyncio.Semaphore
    idle: list[tuple[Connection, float]] = field(default_factory=list)
    shared: list[_Shared] = field(default_factory=list)
    lent: int = 0
    multiplexed: bool | None = None  # what its connections are, once one has been opened
    opening: asyncio.Future[None] | None = None  # a first connection being opened


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
        temporary: str | None = None,
    ) -> int:
        return await self.inner.put(
            self.location.resolve(path),
            data,
            use_tmp=self.location.flag("usetmp", True) if use_tmp is None else use_tmp,
            mkdirs=self.location.flag("mkdirs", True) if mkdirs is None else mkdirs,
            offset=offset,
            temporary=self.location.resolve(temporary) if temporary else None,
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


def _multiplexed(connection: Connection) -> bool:
    return bool(getattr(connection, "multiplexed", False))


class ConnectionPool:
    """Open connections by ``PoolKey``, lent one caller at a time (a multiplexed one to up to
    ``share`` callers at a time)."""

    def __init__(
        self,
        *,
        per_key: int = 4,
        idle_timeout: float = 60.0,
        share: int = 1,
        opener: Callable[[Location], Awaitable[Connection]] = connect,
    ) -> None:
        """``per_key`` callers per key at once; a multiplexed connection serves up to
        ``share`` of them together (1: every caller has a connection of its own)."""
        self.per_key = per_key
        self.share = max(1, share)
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
            idle=sum(
                len(slot.idle) + sum(1 for e in slot.shared if not e.users)
                for slot in self._slots.values()
            ),
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
                inner, shared = await self._acquire(slot, location)
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
                sound = keep and not lent.closed and _sound(inner) and not self._closed
                if shared is not None:
                    await self._give_back(slot, shared, sound)
                elif sound:
                    slot.idle.append((inner, time.monotonic()))
                else:
                    self._discarded += 1
                    await self._close(inner)

    async def _acquire(self, slot: _Slot, location: Location) -> tuple[Connection, _Shared | None]:
        """A connection for one caller: room on a shared one, else an idle or a new one.

        While the first connection of a slot that may be shared is being opened, other callers
        wait for it instead of opening their own (once a slot's connections are known not to
        be multiplexed, nobody waits).
        """
        while self.share > 1:
            shared = self._lend_shared(slot)
            if shared is not None:
                return shared.connection, shared
            if slot.opening is None or slot.multiplexed is False:
                break
            await asyncio.shield(slot.opening)
        if self.share == 1 or slot.multiplexed is False:
            return await self._take(slot, location), None
        opening = slot.opening = asyncio.get_running_loop().create_future()
        try:
            inner = await self._take(slot, location)
        finally:
            slot.opening = None
            opening.set_result(None)
        slot.multiplexed = _multiplexed(inner)
        if not slot.multiplexed:
            return inner, None
        shared = _Shared(inner, users=1)
        slot.shared.append(shared)
        return inner, shared

    def _lend_shared(self, slot: _Slot) -> _Shared | None:
        """The busiest multiplexed connection with room for one more caller, if any (filling
        one before the next keeps the packets full)."""
        free = [
            e
            for e in slot.shared
            if e.users < self.share and not e.retiring and _sound(e.connection)
        ]
        if not free:
            return None
        chosen = max(free, key=lambda e: e.users)
        chosen.users += 1
        self._reused += 1
        return chosen

    async def _give_back(self, slot: _Slot, shared: _Shared, sound: bool) -> None:
        shared.users -= 1
        shared.since = time.monotonic()
        if not sound:
            shared.retiring = True  # its state is unknown: nobody new, closed once free
        if shared.retiring and not shared.users:
            slot.shared.remove(shared)
            self._discarded += 1
            await self._close(shared.connection)

    async def _take(self, slot: _Slot, location: Location) -> Connection:
        while slot.idle:
            inner, _ = slot.idle.pop()  # the most recently used is the likeliest alive
            if _sound(inner):
                self._reused += 1
                return inner
            self._discarded += 1
            await self._close(inner)
        if not location.path.startswith("/"):
            location = dataclasses.replace(location, path=LOGIN_DIRECTORY)  # see the docstring
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
            unused = [
                e for e in slot.shared if not e.users and moment - e.since >= self.idle_timeout
            ]
            stale += [e.connection for e in unused]
            slot.shared = [e for e in slot.shared if e not in unused]
            if not slot.idle and not slot.shared and slot.lent == 0 and not slot.limit.locked():
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
            for entry in [e for e in slot.shared if not e.users]:
                slot.shared.remove(entry)
                await self._close(entry.connection)
