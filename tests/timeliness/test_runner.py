"""The timeliness watcher as a stage with real Kafka: it rebuilds its history from the log,
publishes TransferLate for a late delivery (and a target passed) on the products topic keyed
by product, and does not re-report history older than its catch-up horizon."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bus.config.source import FixedConfig
from bus.config.view import ConfigView
from bus.events import Event
from bus.events.products import Lateness, Measure, TransferLate
from bus.publisher import Publisher
from bus.topics import DEADLETTER, PRODUCTS, TRANSFERS, apply_topics, catalogue
from consumers.timeliness.runner import timeliness_stage
from tests.acquisition.conftest import read_topic
from tests.config import factories as f
from tests.timeliness.test_end_to_end import cycle

pytestmark = pytest.mark.kafka
HOUR = timedelta(hours=1)


async def test_the_watcher_reports_a_late_delivery_once(kafka: str, unique: str) -> None:
    """Given six regular cycles (one of them late, but long ago) and today's delivered two
    hours late, the watcher publishes one TransferLate for today's cycle only, keyed by the
    product; the destination's 3 h target is named in it."""
    specs = {s.name: s for s in catalogue()}
    transfers = replace(specs[TRANSFERS], name=f"test.{unique}.transfers")
    products = replace(specs[PRODUCTS], name=f"test.{unique}.products")
    deadletter = replace(specs[DEADLETTER], name=f"test.{unique}.deadletter")
    await apply_topics(kafka, [transfers, products, deadletter])

    now = datetime.now(UTC)
    today = (now - 4 * HOUR).replace(minute=0, second=0, microsecond=0)
    stream, dest = f"s{unique}", "site-a"
    events: list[tuple[str, str, Event]] = []
    for day in range(7, 0, -1):
        late = day == 7  # an old late cycle: history, not reported again
        base = today - timedelta(days=day)
        for e in cycle(dest, stream, base, HOUR, (6 if late else 1.5) * HOUR):
            events.append((transfers.name, dest, e))
    for e in cycle(dest, stream, today, HOUR, 3.5 * HOUR):
        events.append((transfers.name, dest, e))
    async with Publisher(kafka) as publisher:
        await publisher.publish_many(events)

    config = FixedConfig(
        ConfigView(destinations={dest: f.destination(dest, properties={"monitor.target": "3h"})})
    )
    stage = timeliness_stage(
        kafka,
        config,
        instance=unique,
        transfers_topic=transfers.name,
        products_topic=products.name,
        deadletter_topic=deadletter.name,
        tick=3600,
        started=today + 3 * HOUR,  # as if it started then: earlier lateness is history
    )
    task = asyncio.create_task(stage.run())
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while stage.handler.reported < 1:
            assert asyncio.get_running_loop().time() < deadline, "nothing reported"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # anything else it would report
    finally:
        stage.stop()
        await asyncio.wait_for(task, 30)

    found = [e for e in await read_topic(kafka, products.name) if isinstance(e, TransferLate)]
    assert len(found) == 1
    (late,) = found
    assert late.destination == dest
    assert late.measure is Measure.TRANSFER
    assert late.lateness is Lateness.CRITICAL
    assert late.base_time == today
    assert late.target_at == today + 3 * HOUR
    assert late.observed_at == today + 3.5 * HOUR
