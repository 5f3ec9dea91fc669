"""Renderings cached by read-model version: the overview of 2,000 destinations is rendered once
per projector commit, not once per viewer.

Rules kept here: a cached value is served only while the version it was made at is still the
current one (``Queries.version``, which moves at every projector commit), so a page never
shows older data than a fresh query would. A cache given ``refresh_after`` is for values that
also depend on the time passed (the timeliness grid: what has not arrived is late by the
clock): a value older than that is made again in the background while it is still served, so
it is at most ``refresh_after`` plus one making old. One making at a time per key and
version (no stampede). Bounded: the least recently used entries go first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from bus.logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)


class VersionCache(Generic[T]):
    """At most ``size`` values, each valid for the version it was made at (module docstring)."""

    def __init__(self, size: int = 64, refresh_after: float | None = None) -> None:
        self._size = size
        self._refresh_after = refresh_after
        # key -> (version, time.monotonic() its making started, value)
        self._entries: OrderedDict[Hashable, tuple[int, float, T]] = OrderedDict()
        self._making: dict[tuple[Hashable, int], asyncio.Future[T]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: Hashable, version: int, make: Callable[[], Awaitable[T]]) -> T:
        """The value of ``key`` at ``version``, made (and kept) when missing or stale; callers
        arriving while it is being made wait for that one making."""
        found = self._entries.get(key)
        if found is not None and found[0] == version:
            self._entries.move_to_end(key)
            self.hits += 1
            after = self._refresh_after
            old = after is not None and time.monotonic() - found[1] > after
            if old and (key, version) not in self._making:
                self._start(key, version, make).add_done_callback(_said)
            return found[2]
        pending = self._making.get((key, version))
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        return await asyncio.shield(self._start(key, version, make))

    def _start(
        self, key: Hashable, version: int, make: Callable[[], Awaitable[T]]
    ) -> asyncio.Future[T]:
        async def run() -> T:
            try:
                started = time.monotonic()
                value = await make()
                self._entries[key] = (version, started, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
                return value
            finally:
                del self._making[(key, version)]

        future = asyncio.ensure_future(run())
        # retrieved here: a failure whose callers went away is not logged as never retrieved
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._making[(key, version)] = future
        return future


def _said(done: asyncio.Future[T]) -> None:
    """A background making that failed is logged; the previous value stays served."""
    if not done.cancelled() and done.exception() is not None:
        log.warning("cached value not made again", error=str(done.exception()))
