"""Operator actions: each one publishes an operator request event and writes nothing else.

Rule kept here: the monitor never changes a read-model row. An action is a request event on
``ecpds.transfers`` keyed by destination (so it is ordered with that destination's transfer
events); the scheduler answers with the resulting events, and the page shows the result once
they come back through the projection. The event is built by ``bus.requests.build`` (the
builder the CLI uses too); ``Actions.request`` publishes it.
"""

from __future__ import annotations

import asyncio

from bus.events import Event
from bus.publisher import Publisher
from bus.requests import Action, build
from bus.topics import TRANSFERS

SOURCE = "monitor"


class Actions:
    """Publishes operator requests on the transfers topic (connecting on the first one, so a
    monitor without Kafka still shows its pages)."""

    def __init__(self, bootstrap: str, topic: str = TRANSFERS) -> None:
        self._bootstrap = bootstrap
        self._publisher: Publisher | None = None
        self._lock = asyncio.Lock()
        self.topic = topic

    async def _started(self) -> Publisher:
        async with self._lock:
            if self._publisher is None:
                publisher = Publisher(self._bootstrap, client_id="ecpds-monitor")
                await publisher.start()
                self._publisher = publisher
            return self._publisher

    async def request(self, req: Action) -> Event:
        """Publish the request (acknowledged by the broker when this returns); the event."""
        event = build(req, SOURCE)
        publisher = await self._started()
        await publisher.publish(self.topic, req.destination, event)
        return event

    async def publish(self, topic: str, key: str, event: Event) -> None:
        """Publish another monitor event (the sign-in defender's) on ``topic``."""
        publisher = await self._started()
        await publisher.publish(topic, key, event)

    async def close(self) -> None:
        if self._publisher is not None:
            await self._publisher.stop()
            self._publisher = None
