"""A destination held for its host's error, as the read models show it: the events the
scheduler's core decides for a wrong password on the only host go through the real projector
into PostgreSQL, and the destination row shows HOLD (Failed) with the error as its reason and
a critical health, while its transfers are still counted as queued, none stopped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bus.events import Event
from bus.events.base import DestinationStatus
from bus.events.transfers import Fault
from projections.db import connect
from projections.monitor.view import health
from tests.projections.stream import FAMILIES, Item
from tests.projections.support import create_topics, project, publish
from tests.scheduler.factories import (
    T0,
    Scheduler,
    at,
    configured,
    destination,
    fail_running,
    host,
    queued,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

FAMILY = {namespace: family for family, namespace, _ in FAMILIES}


def held_for_a_wrong_password() -> Scheduler:
    """One host, one cycle before hold: three transfers queued, two refused a login."""
    dest = destination(max_start=0, retry_count=1)
    s = Scheduler(configured(dest, host("h1", retry_count=0)), [queued(f"t{i}") for i in "123"])
    s.settle(T0)
    fail_running(
        s,
        at(seconds=1),
        error="AuthenticationFailed",
        message="connect sftp://ops@h1:22/in: Permission denied",
        retriable=False,
        fault=Fault.HOST,
    )
    assert s.summary().status is DestinationStatus.HOLD
    return s


def _uuid(text: str | None) -> str | None:
    """A UUID for the factories' readable ids ("ev-3"), as the log holds only UUIDs."""
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, text))


def items(log: list[Event]) -> Iterator[Item]:
    """The scheduler's log as it is published: each event on its namespace's topic."""
    for event in log:
        namespace = event.AVRO_NAME.rpartition(".")[0]
        family = FAMILY[namespace]
        key = "config" if family == "config" else getattr(event, "destination", "")
        env = event.envelope
        ids = {"event_id": _uuid(env.event_id), "causation_id": _uuid(env.causation_id)}
        yield Item(family, key, replace(event, envelope=replace(env, **ids)))


async def rows(dsn: str, schema: str, sql: str) -> list[dict[str, Any]]:
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(sql.encode())
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]
    finally:
        await conn.close()


async def test_held_destination_shows_its_host_error_and_keeps_its_files_queued(
    kafka: str, postgres: str, schema: str, unique: str
) -> None:
    """The overview row of a destination held for a wrong password says HOLD with the host and
    the error as its reason, its health is critical for that reason, and its three transfers
    are queued (two requeued, one waiting), none stopped or failed."""
    s = held_for_a_wrong_password()
    prefix = f"test.{unique}"
    topics = await create_topics(kafka, prefix)
    ends = await publish(kafka, prefix, items(s.log))
    await project(postgres, kafka, schema, f"test-{unique}", topics, ends)
    (row,) = await rows(
        postgres,
        schema,
        "SELECT name, status, status_reason, queued, failed, last_error FROM destination_overview",
    )
    assert (row["name"], row["status"]) == ("dest", "HOLD")
    assert row["status_reason"] == (
        "Failed: every host failed, 1 cycle(s); last error on host h1: AuthenticationFailed:"
        " connect sftp://ops@h1:22/in: Permission denied"
    )
    assert (row["queued"], row["failed"]) == (3, 0)
    verdict = health(row)
    assert (verdict.level, verdict.reason) == ("critical", row["status_reason"])
    statuses = await rows(
        postgres, schema, "SELECT transfer_id, status FROM transfers ORDER BY transfer_id"
    )
    assert [(r["transfer_id"], r["status"]) for r in statuses] == [
        ("t1", "RETR"),
        ("t2", "RETR"),
        ("t3", "WAIT"),
    ]
