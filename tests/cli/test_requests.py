"""Operator requests from the CLI (`ecpds destination hold`, `ecpds transfer priority` ...):
the request event on the transfers topic keyed by destination, and the refusals."""

from __future__ import annotations

import asyncio
import getpass
from dataclasses import replace

import pytest

from bus.config.apply import events_for, plan
from bus.config.view import ConfigView, config_spec
from bus.events import Event
from bus.events import requests as r
from bus.events.config import Destination, DestinationType
from bus.publisher import Publisher
from bus.topics import TRANSFERS, apply_topics, catalogue
from tests.acquisition.conftest import read_topic
from tests.cli.test_commands import ecpds

pytestmark = pytest.mark.kafka


@pytest.fixture
async def topics(kafka: str, unique: str) -> tuple[str, str]:
    """A transfers topic and a configuration topic with destinations "b" and "site-b"."""
    transfers = replace(
        next(s for s in catalogue() if s.name == TRANSFERS), name=f"test.{unique}.transfers"
    )
    config = config_spec(f"test.{unique}.config")
    await apply_topics(kafka, [transfers, config])
    destinations = [
        Destination(name=n, type=DestinationType.DISSEMINATION, transfer_group="default")
        for n in ("b", "site-b")
    ]
    async with Publisher(kafka) as publisher:
        for key, event in events_for(plan(ConfigView(), destinations), source="test"):
            await publisher.publish(config.name, key, event)
    return transfers.name, config.name


async def requests_on(kafka: str, topic: str) -> list[Event]:
    return [e for e in await read_topic(kafka, topic) if type(e) in r.EVENTS]


async def test_destination_hold_publishes_an_immediate_hold_request(
    kafka: str, topics: tuple[str, str]
) -> None:
    """`destination hold --immediate` publishes HoldRequested for the destination, with the
    operator and the reason, keyed so the scheduler of that destination reads it."""
    transfers, config = topics
    result = await asyncio.to_thread(
        ecpds, "destination", "hold", "site-b", "--immediate", "--reason", "maintenance",
        "--wait", "0", "--transfers-topic", transfers, "--config-topic", config,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "requested: HoldRequested" in result.stdout
    (hold,) = await requests_on(kafka, transfers)
    assert isinstance(hold, r.HoldRequested)
    assert (hold.destination, hold.transfer_id, hold.immediate) == ("site-b", None, True)
    assert (hold.requested_by, hold.reason) == (getpass.getuser(), "maintenance")


async def test_transfer_priority_finds_the_destination_from_the_transfer_id(
    kafka: str, topics: tuple[str, str]
) -> None:
    """A transfer id "<file>-site-b" belongs to "site-b", not "b": the longest configured
    destination it ends with; the request carries the new priority."""
    transfers, config = topics
    result = await asyncio.to_thread(
        ecpds, "transfer", "priority", "df1-site-b", "5", "--wait", "0",
        "--transfers-topic", transfers, "--config-topic", config,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (change,) = await requests_on(kafka, transfers)
    assert isinstance(change, r.PriorityChangeRequested)
    assert (change.destination, change.transfer_id, change.priority) == ("site-b", "df1-site-b", 5)


async def test_a_transfer_of_no_known_destination_is_refused(
    kafka: str, topics: tuple[str, str]
) -> None:
    """Without --destination, a transfer id that ends with no configured destination is
    refused (exit 2) and nothing is published."""
    transfers, config = topics
    result = await asyncio.to_thread(
        ecpds, "transfer", "requeue", "df1-elsewhere", "--wait", "0",
        "--transfers-topic", transfers, "--config-topic", config,
    )  # fmt: skip
    assert result.returncode == 2
    assert "give --destination" in result.stdout
    assert await requests_on(kafka, transfers) == []


async def test_an_unanswered_request_says_so(kafka: str, topics: tuple[str, str]) -> None:
    """With no scheduler reading the topic, the command waits --wait seconds, says that
    nothing answered and exits 3 (the request itself is published)."""
    transfers, config = topics
    result = await asyncio.to_thread(
        ecpds, "destination", "restart", "b", "--wait", "1", "--transfers-topic", transfers,
        "--config-topic", config,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no answer within 1s" in result.stdout
    (restart,) = await requests_on(kafka, transfers)
    assert isinstance(restart, r.RestartRequested)
    assert not restart.immediate


async def test_destination_requeue_failed_and_transfer_stop(
    kafka: str, topics: tuple[str, str]
) -> None:
    """`destination requeue-failed` and `transfer stop --destination` publish their requests."""
    transfers, config = topics
    for args in (
        ("destination", "requeue-failed", "b", "--config-topic", config),
        ("transfer", "stop", "df9-x", "--destination", "site-b"),
    ):
        result = await asyncio.to_thread(
            ecpds, *args, "--wait", "0", "--transfers-topic", transfers
        )
        assert result.returncode == 0, result.stdout + result.stderr
    found = await requests_on(kafka, transfers)
    assert sorted(type(e).__name__ for e in found) == ["RequeueFailedRequested", "StopRequested"]
    stop = next(e for e in found if isinstance(e, r.StopRequested))
    assert (stop.destination, stop.transfer_id) == ("site-b", "df9-x")


async def test_a_request_for_an_unknown_destination_is_refused(
    kafka: str, topics: tuple[str, str]
) -> None:
    """A destination request for a destination not configured is refused at once (exit 2),
    naming it, and nothing is published (no scheduler would ever answer it)."""
    transfers, config = topics
    result = await asyncio.to_thread(
        ecpds, "destination", "requeue-failed", "nowhere", "--wait", "10",
        "--transfers-topic", transfers, "--config-topic", config,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no destination named 'nowhere'" in result.stdout
    assert await requests_on(kafka, transfers) == []
