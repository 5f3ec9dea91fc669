"""Keeps the ingest index current: a ``bus.feeds.Feed`` of ``ecpds.datafiles`` and
``ecpds.transfers`` (read from the beginning up to the end offsets seen at start, then
``ready``, then followed live) whose events are folded by the index's ``apply``.

The index is rebuilt from the log at every start, never from a local file, so it cannot drift
from the events. Events the caller has already applied (the service applies its own at once)
can be named with ``applied(topic, partition, offset)``: read back, they are skipped without
being decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bus.events import Event
from bus.feeds import Feed, Fetch

Apply = Callable[[Event], None]

# the service applies its own events at once; waiting for a fuller fetch costs the index
# ~0.1 s of lag on others' events and saves most of the fetch overhead
BULK = Fetch(max_records=5000, min_bytes=64 * 1024, max_wait_ms=100, partition_bytes=4 << 20)


class LogFollower(Feed):
    """Applies every event of ``topics`` to ``apply``, from offset 0, then live."""

    def __init__(self, bootstrap: str, topics: Sequence[str], apply: Apply) -> None:
        def fold(events: Sequence[Event]) -> None:
            for event in events:
                apply(event)

        super().__init__(bootstrap, topics, fold, fetch=BULK, name="ingest-index")

    async def ready(self, timeout: float = 120) -> None:
        """Wait until everything the topics held at start has been applied."""
        await super().ready(timeout)
