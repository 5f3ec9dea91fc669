"""The janitor's reading: a ``bus.feeds.Feed`` of its topics, drained by ``poll``.

The janitor's state is a fold of the retained log (``core.evolve``), not a stored table: at
every start it is rebuilt by replaying ``ecpds.datafiles`` and ``ecpds.transfers`` from offset
0, so there is no offset to commit and nothing to lose on a crash. The feed reads in the
background; the runner takes what arrived with ``poll`` and folds it in its own loop, so the
state never changes under a sweep between its awaits. ``caught_up`` turns true once every
partition has been read up to the end offsets seen at start, and by then every event before
those offsets has been handed out by ``poll`` or is waiting for the next one; the runner sweeps
only after that, so its first decisions are made on the whole history (including its own
earlier events).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from bus.errors import TransientError
from bus.events import Event
from bus.feeds import Feed


class EventFeed:
    """Every event of ``topics``, from the beginning, then as they arrive."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self._pending: list[Event] = []
        self._arrived = asyncio.Event()
        self._feed = Feed(bootstrap, topics, self._keep)

    @property
    def caught_up(self) -> bool:
        """Whether every partition was read up to the end offsets seen at start."""
        return self._feed.caught_up

    async def start(self) -> None:
        """Assign every partition of every topic from the beginning and start reading."""
        await self._feed.start()

    async def poll(self, timeout: float) -> list[Event]:
        """The events that arrived since the last poll, waiting up to ``timeout`` seconds for
        some (possibly none)."""
        if not self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(0.0, timeout))
        if self._feed.failure is not None:
            raise TransientError(f"reading the janitor's topics failed: {self._feed.failure}")
        self._arrived.clear()
        events, self._pending = self._pending, []
        return events

    async def stop(self) -> None:
        """Stop reading."""
        await self._feed.stop()

    def _keep(self, events: Sequence[Event]) -> None:
        self._pending.extend(events)
        self._arrived.set()
