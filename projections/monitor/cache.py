"""Renderings cached by read-model version: the overview of 2,000 destinations is rendered once
per projector commit, not once per viewer.

Rule kept here: a cached value is served only while the version it was made at is still the
current one (``Queries.version``, which moves at every projector commit), so a page never
shows older data than a fresh query would. Bounded: the least recently used entries go first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class VersionCache(Generic[T]):
    """At most ``size`` values, each valid for the version it was made at."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, tuple[int, T]] = OrderedDict()
        self._making: dict[tuple[Hashable, int], asyncio.Future[T]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: Hashable, version: int, make: Callable[[], Awaitable[T]]) -> T:
        """The value of ``key`` at ``version``, made (and kept) when missing or stale; callers
        arriving while it is being made wait for that one making (no stampede)."""
        found = self._entries.get(key)
        if found is not None and found[0] == version:
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1]
        pending = self._making.get((key, version))
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._making[(key, version)] = future
        try:
            value = await make()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here, so an unawaited failure is not logged
            raise
        finally:
            del self._making[(key, version)]
        future.set_result(value)
        self._entries[key] = (version, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value
