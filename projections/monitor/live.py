"""Live updates: one poller per process, fanned out to every server-sent-events subscriber.

Rule kept here: the read models are polled, not the clients' browsers. Every ``interval`` the
hub asks one cheap question (has the projector committed since? — the sum of stored offsets),
and only when the answer changes does it read the overview and push the destination rows that
differ from the last push. The poll runs only while someone listens. A subscriber too slow to
keep up is told to reload instead of being sent a growing backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bus.logging import get_logger
from projections.monitor.queries import Filter, Queries
from projections.monitor.view import explain, health, jsonable, status_badge

log = get_logger(__name__)

QUEUE_SIZE = 16
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Change:
    """One push: the new version and the destination rows that changed (``reload``: resync)."""

    version: int
    destinations: tuple[Mapping[str, Any], ...] = ()
    reload: bool = False

    def frame(self) -> str:
        """The server-sent-events frame of this change."""
        body = {
            "version": self.version,
            "reload": self.reload,
            "destinations": [jsonable(d) for d in self.destinations],
        }
        return f"event: change\ndata: {json.dumps(body)}\n\n"


def _with_badge(row: Mapping[str, Any]) -> dict[str, Any]:
    badge, h = status_badge(row), health(row)
    said = explain(row.get("last_error"), row.get("current_host"))
    return {
        **row,
        "status_note": row.get("status_reason") if h.level == "held" else "",
        "error_sentence": said.sentence,
        "status_name": badge.name,
        "colour": badge.colour,
        "health": h.level,
        "health_name": h.name,
        "health_colour": h.colour,
        "health_reason": h.reason,
    }


@dataclass
class Hub:
    """Polls the read models and hands changes to subscribers."""

    queries: Queries
    interval: float = 1.0
    _subscribers: set[asyncio.Queue[Change | None]] = field(default_factory=set)
    _version: int = -1
    _rows: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="monitor-live")

    async def stop(self) -> None:
        for queue in list(self._subscribers):
            self._offer(queue, None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Change | None]]:
        queue: asyncio.Queue[Change | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        self._wake.set()
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _offer(self, queue: asyncio.Queue[Change | None], change: Change | None) -> None:
        try:
            queue.put_nowait(change)
        except asyncio.QueueFull:
            # a slow reader resyncs once instead of receiving an ever-growing backlog
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(Change(self._version, reload=True) if change else None)

    async def poll(self) -> Change | None:
        """One round: the change since the last round, or None when nothing moved."""
        version = await self.queries.version()
        if version == self._version:
            return None
        rows = await self.queries.overview(Filter())
        current: dict[str, Mapping[str, Any]] = {r["name"]: _with_badge(r) for r in rows}
        changed = tuple(r for name, r in current.items() if self._rows.get(name) != r)
        self._version, self._rows = version, current
        return Change(version, changed)

    async def _run(self) -> None:
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
            try:
                change = await self.poll()
            except Exception as error:  # the database may be restarting: keep polling
                log.warning("live poll failed", error=repr(error))
                change = None
            if change is not None:
                for queue in list(self._subscribers):
                    self._offer(queue, change)
            await asyncio.sleep(self.interval)


async def frames(hub: Hub) -> AsyncIterator[str]:
    """The text of one subscriber's event stream until the hub stops."""
    async with hub.subscribe() as queue:
        yield "retry: 3000\n\n"
        while True:
            try:
                change = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if change is None:
                return
            yield change.frame()
