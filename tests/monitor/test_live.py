"""Live updates: an event projected after a page was opened reaches the browser as a
server-sent event carrying the changed destination row."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bus.events import envelope
from bus.events.base import TransferStatus
from bus.events.transfers import TransferQueued
from bus.publisher import Publisher
from tests.monitor.conftest import Monitor

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def frames_until(
    stream: httpx.Response, wanted: Any, seconds: float = 30.0
) -> dict[str, Any]:
    """The first ``change`` frame for which ``wanted(frame)`` holds."""

    async def read() -> dict[str, Any]:
        event = None
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "change":
                frame: dict[str, Any] = json.loads(line.removeprefix("data: "))
                if wanted(frame):
                    return frame
        raise AssertionError("the event stream ended")

    return await asyncio.wait_for(read(), seconds)


async def test_a_projected_event_is_pushed_to_open_pages(
    operator: httpx.AsyncClient, monitor: Monitor
) -> None:
    """A transfer queued after the stream opened arrives as a change of its destination's row,
    with the new queued count and the OpenECPDS badge."""
    models = monitor.models
    before = (await operator.get("/api/v1/destinations/dest-4")).json()["destination"]["queued"]
    async with operator.stream("GET", "/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        queued = TransferQueued(
            envelope=envelope("tests/monitor", "transfer-live"),
            transfer_id="transfer-live",
            destination="dest-4",
            data_file_id="file-live",
            target="data/live.grib",
            status=TransferStatus.WAIT,
            priority=10,
            queue_time=datetime.now(UTC),
            expiry_time=datetime.now(UTC) + timedelta(days=1),
            size=1234,
        )
        async with Publisher(models.bootstrap, client_id="test-monitor-live") as publisher:
            at = await publisher.publish(models.transfers_topic, "dest-4", queued)
        catching_up = asyncio.create_task(
            models.catch_up({f"{at.topic}/{at.partition}": at.offset})
        )

        def moved(frame: dict[str, Any]) -> bool:
            rows = [d for d in frame["destinations"] if d["name"] == "dest-4"]
            return bool(rows) and rows[0]["queued"] == before + 1

        frame = await frames_until(stream, moved)
        await catching_up
    row = next(d for d in frame["destinations"] if d["name"] == "dest-4")
    assert row["colour"] in {"green", "yellow", "lightblue", "grey", "red"}
    assert frame["version"] > 0
    page = await operator.get("/destinations/dest-4")
    assert "transfer-live" in page.text  # now in the destination's queue
