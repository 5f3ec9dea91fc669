"""The timeliness watcher: ``ecpds.transfers`` + ``ecpds.products`` -> ``core.Watcher`` ->
``TransferLate`` / ``ProductLate`` on ``ecpds.products``; a stage of the kit (``bus.stage``: its
docstring has the commit rule), plus a ticker for what is late by absence.

Why a consumer of its own and not the scheduler's timers: predictions need every product's
history (weeks of cycles, from several topics), which is no part of the scheduler's decision
state and must not slow it; and lateness is an observation, not a scheduling decision.

State rule: the history is rebuilt from the log at every start. The watcher joins a consumer
group of its own instance (``ecpds-timeliness-<instance>``) from the earliest retained offset,
so it reads the whole retention (14 days by default: the window of predictions) before it
follows the present. Lateness found while catching up is not published when its event is
older than ``CATCH_UP`` at start (it was reported, or is stale, by now); event ids are
derived from what they report, so a repeat has the same id (the projection keeps one row).
One watcher runs: two would report everything twice (same ids).

The ticker (every ``TICK`` seconds) publishes what ``Watcher.due(now)`` finds: a cycle whose
prediction passed with nothing of it seen. Destinations' targets (``monitor.target``) come from
the live configuration (``bus.config.view.LiveConfig``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.events import Event
from bus.events.products import ProductLate, TransferLate
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.settings import Settings
from bus.stage import Publish, Received, Stage, main, until_signalled
from bus.timeliness import ProductKey, target_seconds
from bus.topics import DEADLETTER, PRODUCTS, TRANSFERS
from consumers.timeliness.core import Watcher

log = get_logger(__name__)
GROUP = "ecpds-timeliness"
CATCH_UP = timedelta(minutes=10)
TICK = 30.0


def _key(event: ProductLate | TransferLate) -> str:
    return ProductKey(event.stream, event.time, event.step, event.type).text()


class Timeliness:
    """The handler: folds each event into the watcher and publishes what it reports."""

    def __init__(self, config: ConfigSource, *, products_topic: str, started: datetime) -> None:
        self.watcher = Watcher()
        self._config = config
        self._topic = products_topic
        self._since = started - CATCH_UP
        self.reported = 0

    def targets(self) -> dict[str, float | None]:
        """Each destination's target in seconds after the base time."""
        view = self._config.view
        return {name: target_seconds(d.properties) for name, d in view.destinations.items()}

    def publishes(self, events: Sequence[Event]) -> list[Publish]:
        """The lateness events to publish (not those older than the catch-up horizon)."""
        fresh = [
            e
            for e in events
            if isinstance(e, ProductLate | TransferLate) and e.envelope.occurred_at >= self._since
        ]
        self.reported += len(fresh)
        for e in fresh:
            log.warning("late", event_type=type(e).__name__, key=_key(e), lateness=e.lateness)
        return [Publish(self._topic, _key(e), e) for e in fresh]

    async def handle(self, received: Received) -> Sequence[Publish]:
        return self.publishes(self.watcher.evolve(received.event, self.targets()))


class Ticker:
    """Publishes, every ``period`` seconds, what is late by absence (a stage service)."""

    def __init__(self, handler: Timeliness, publisher: Publisher, period: float = TICK) -> None:
        self._handler = handler
        self._publisher = publisher
        self._period = period
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def tick(self, now: datetime) -> int:
        """Publish what is due at ``now``; how many."""
        due = self._handler.watcher.due(now, self._handler.targets())
        found = self._handler.publishes(due)
        for p in found:
            await self._publisher.publish(p.topic, p.key, p.event)
        return len(found)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            try:
                await self.tick(datetime.now(UTC))
            except Exception as error:  # the next tick tries again: the ticker never dies
                log.warning("timeliness tick failed", error=str(error))


def timeliness_stage(
    bootstrap: str,
    config: ConfigSource,
    *,
    instance: str,
    transfers_topic: str = TRANSFERS,
    products_topic: str = PRODUCTS,
    deadletter_topic: str = DEADLETTER,
    tick: float = TICK,
    started: datetime | None = None,
) -> Stage[Timeliness]:
    """The watcher over ``transfers_topic`` and ``products_topic``."""
    handler = Timeliness(
        config, products_topic=products_topic, started=started or datetime.now(UTC)
    )
    source = f"timeliness/{instance}"
    publisher = Publisher(bootstrap, client_id=source)
    return Stage(
        handler,
        bootstrap=bootstrap,
        topics=[transfers_topic, products_topic],
        group_id=f"{GROUP}-{instance}",
        source=source,
        publisher=publisher,
        services=[_Started(publisher), Ticker(handler, publisher, tick)],
        start_at="earliest",
        deadletter_topic=deadletter_topic,
    )


class _Started:
    """The stage's publisher, shared with the ticker: started first, stopped last."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def start(self) -> None:
        await self._publisher.start()

    async def stop(self) -> None:
        await self._publisher.stop()


async def serve(settings: Settings, _: argparse.Namespace) -> None:
    """Run the watcher with the live configuration until a signal."""
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        stage = timeliness_stage(settings.kafka_bootstrap, live, instance=settings.instance)
        log.info("timeliness watcher running")
        await until_signalled(stage)


if __name__ == "__main__":
    main("ecpds-timeliness", __doc__.splitlines()[0], serve)
