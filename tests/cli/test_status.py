"""`ecpds destination list|show` read each destination's status and transfer counts from the
read models the monitor reads, filled by the real projector from events on real Kafka into a
real PostgreSQL schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest

from bus.config.apply import events_for, plan
from bus.config.view import ConfigView
from bus.events import envelope
from bus.events.base import DestinationStatus, TransferStatus
from bus.events.transfers import DestinationStatusChanged, TransferQueued
from bus.publisher import Publisher
from projections.migrate import migrate
from tests.cli.test_commands import ecpds
from tests.config import factories as f
from tests.projections.support import create_topics, drop, project
from tests.scheduler.factories import queued

pytestmark = pytest.mark.kafka


def fresh(event: TransferQueued) -> TransferQueued:
    """``event`` with a real envelope (a uuid event id, stamped now)."""
    return replace(event, envelope=envelope("test", event.data_file_id))


@pytest.fixture(scope="module")
async def filled(kafka: str, postgres: str) -> AsyncIterator[tuple[str, str]]:
    """(config topic, schema): "d-held" put on hold by an operator with two transfers, one
    held; "d-idle" with nothing queued."""
    prefix = f"test.{uuid.uuid4().hex[:10]}"
    schema = f"cli_{uuid.uuid4().hex[:10]}"
    topics = await create_topics(kafka, prefix)
    await migrate(postgres, schema)
    entities = [f.host("h1"), f.destination("d-held"), f.destination("d-idle")]
    now = datetime.now(UTC)
    hold = DestinationStatusChanged(
        envelope=envelope("test", "d-held"),
        destination="d-held",
        new_status=DestinationStatus.HOLD,
        reason="Put on hold by ops: maintenance",
        actor="ops",
    )
    ends: dict[str, int] = {}
    async with Publisher(kafka) as publisher:
        items = [
            (f"{prefix}.config", key, event)
            for key, event in events_for(plan(ConfigView(), entities), source="test")  # type: ignore[arg-type]
        ]
        items += [
            (f"{prefix}.transfers", "d-held", fresh(queued("t1", "d-held", queue_time=now))),
            (
                f"{prefix}.transfers",
                "d-held",
                fresh(queued("t2", "d-held", queue_time=now, status=TransferStatus.HOLD)),
            ),
            (f"{prefix}.transfers", "d-held", hold),
        ]
        for p in await publisher.publish_many(items):
            ends[f"{p.topic}/{p.partition}"] = max(
                ends.get(f"{p.topic}/{p.partition}", -1), p.offset
            )
    await project(postgres, kafka, schema, "cli-test", topics, ends)
    yield f"{prefix}.config", schema
    await drop(postgres, schema)


async def test_destination_list_shows_status_and_counts(filled: tuple[str, str]) -> None:
    """`destination list --json` carries each destination's status, reason and counts; the
    table shows the operator's hold as "on hold", never as a failure."""
    topic, schema = filled
    listed = await asyncio.to_thread(
        ecpds, "destination", "--topic", topic, "list", "--json", "--schema", schema
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = {r["name"]: r for r in orjson.loads(listed.stdout)}
    held = rows["d-held"]
    assert (held["status"], held["status_name"]) == ("HOLD", "on hold (HOLD)")
    assert held["status_reason"] == "Put on hold by ops: maintenance"
    assert (held["queued"], held["held"], held["failed"], held["done"]) == (1, 1, 0, 0)
    assert rows["d-idle"]["queued"] == 0
    table = await asyncio.to_thread(
        ecpds, "destination", "--topic", topic, "list", "--schema", schema
    )
    assert "on hold (HOLD)" in table.stdout
    assert "failed (HOLD)" not in table.stdout


async def test_destination_show_has_the_status(filled: tuple[str, str]) -> None:
    """`destination show` prints the status with its reason and the counts."""
    topic, schema = filled
    shown = await asyncio.to_thread(
        ecpds, "destination", "--topic", topic, "show", "d-held", "--schema", schema
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "on hold (HOLD) - Put on hold by ops: maintenance" in shown.stdout
    assert "queued 1  running 0  failed 0  held 1  done 0" in shown.stdout
