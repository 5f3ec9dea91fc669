"""The scheduler's answers to requests from the CLI, with a real scheduler on real Kafka: a
request with nothing to do is declined at once (exit 1, the reason printed), one that acts is
answered with what it did (exit 0)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bus.events.transfers import RequestDeclined
from bus.settings import Settings
from consumers.scheduler.runner import SchedulerRunner
from tests.cli.test_commands import ecpds
from tests.scheduler.test_runner import World, new_world

pytestmark = pytest.mark.kafka
WAIT = 30  # the CLI's --wait: an answer "at once" comes well before it


@pytest.fixture(scope="module")
async def world(kafka: str, settings: Settings) -> AsyncIterator[World]:
    """Fresh topics, a destination "d-cli" with one host and a queued transfer, and one
    scheduler worker deciding on them."""
    async with new_world(kafka) as w:
        runner: SchedulerRunner = w.runner(settings)
        await runner.start()
        await runner.ready()
        await w.configure("d-cli", retry_ms=60_000)
        await w.queue("d-cli", "t-cli")
        await w.orders.until(lambda _: bool(w.orders_for("t-cli")))
        try:
            yield w
        finally:
            await runner.stop()


async def test_requeue_failed_with_nothing_failed_is_declined_at_once(world: World) -> None:
    """`destination requeue-failed` with no failed transfer prints "nothing to do" and the
    reason at once and exits 1; the answer is a RequestDeclined on the log."""
    began = time.monotonic()
    result = await asyncio.to_thread(
        ecpds, "destination", "requeue-failed", "d-cli", "--wait", str(WAIT),
        "--transfers-topic", world.topics.transfers, "--config-topic", world.topics.config,
    )  # fmt: skip
    took = time.monotonic() - began
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing to do" in result.stdout
    assert "nothing to requeue: no failed or stopped transfer at d-cli" in result.stdout
    assert took < WAIT / 2
    await world.transfers.until(lambda _: bool(world.transfers.of(RequestDeclined, "d-cli")))


async def test_release_of_a_transfer_not_held_is_declined(world: World) -> None:
    """`transfer release` of a transfer that is not on standby says why and exits 1."""
    result = await asyncio.to_thread(
        ecpds, "transfer", "release", "t-cli", "--destination", "d-cli",
        "--wait", str(WAIT), "--transfers-topic", world.topics.transfers,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing to release" in result.stdout


async def test_a_request_that_acts_is_answered_and_exits_0(world: World) -> None:
    """`transfer priority` with a new priority prints the answer and exits 0."""
    result = await asyncio.to_thread(
        ecpds, "transfer", "priority", "t-cli", "7", "--destination", "d-cli",
        "--wait", str(WAIT), "--transfers-topic", world.topics.transfers,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TransferPriorityChanged" in result.stdout
