"""A mover abandons the attempts the scheduler asks it to (``TransferAbortRequested`` on the
movers topic, after an immediate hold or restart, or a stop): the running delivery is cancelled
and leaves nothing at the destination, no outcome is published, the order is committed; an
order named before it arrives is skipped. Real Kafka, the mover in the test's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from bus.events import envelope
from bus.events.movers import TransferAbortRequested
from bus.events.orders import TransferOrdered
from bus.events.transfers import TransferInterrupted, TransferStarted, TransferSucceeded
from bus.publisher import Publisher
from consumers.movers.runner import Mover
from store.local import LocalStore
from tests.conftest import eventually
from tests.movers.support import host, order, publish_orders, running_mover, stored
from tests.movers.test_runner import MIB, assert_all_committed, committed, end_offsets, fresh

pytestmark = pytest.mark.kafka


async def ask_abort(kafka: str, topic: str, sent: TransferOrdered, mover: str | None) -> None:
    """Publish the scheduler's request to abandon ``sent``'s attempt."""
    request = TransferAbortRequested(
        envelope=envelope("scheduler/test", sent.data_file_id),
        transfer_id=sent.transfer_id,
        destination=sent.destination,
        attempt=sent.attempt,
        reason="Put on hold by admin",
        mover_id=mover,
    )
    async with Publisher(kafka) as publisher:
        await publisher.publish(topic, mover or sent.destination, request)


async def _idle(mover: Mover) -> bool:
    return not mover.running


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_a_running_transfer_is_abandoned_on_request(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """Given a slow delivery running on a mover, when the scheduler asks to abort it, then the
    delivery stops, nothing is left at the destination (final or temporary name), no outcome
    is published for it and its order is committed."""
    topics, transfers, movers = await fresh(kafka)
    remote = tmp_path / "remote"
    try:
        obj = await stored(store, size=8 * MIB)
        target = host("file", "", directory=f"{remote}/", options={"upload.rateThrottling": "1MB"})
        sent = order(obj, target, attempt=3)
        config = topics.config(kafka, key_file)
        async with running_mover(config, store.root) as mover:
            await publish_orders(kafka, topics.orders, sent)
            started = await transfers.wait(sent.transfer_id, (TransferStarted,))
            assert isinstance(started, TransferStarted)
            await asyncio.sleep(0.5)
            assert leftovers(remote), "the delivery should be writing its temporary file"
            await ask_abort(kafka, topics.movers, sent, started.mover_id)
            await eventually(lambda: _idle(mover))
            assert mover.abandoned == 1
            done = await committed(kafka, f"ecpds-movers-{topics.group}", topics.orders, 2)
            assert_all_committed(done, await end_offsets(kafka, topics.orders, 2))
        assert leftovers(remote) == []
        assert not transfers.of(sent.transfer_id, TransferSucceeded)
        assert not transfers.of(sent.transfer_id, TransferInterrupted)  # stopped after it
    finally:
        await transfers.stop()
        await movers.stop()


async def test_an_order_aborted_before_it_arrives_is_skipped(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """Given an abort request for an attempt no mover has received yet (the scheduler knows no
    mover: keyed by destination), when a mover starting later receives that order, then it
    skips it: no delivery, no event, the order committed; another attempt of the same transfer
    is delivered."""
    topics, transfers, movers = await fresh(kafka)
    remote = tmp_path / "remote"
    try:
        obj = await stored(store, size=64 * 1024)
        target = host("file", "", directory=f"{remote}/")
        stale = order(obj, target, attempt=1)
        await ask_abort(kafka, topics.movers, stale, None)
        fresh_attempt = dataclasses.replace(
            stale, attempt=2, envelope=envelope("scheduler/test", stale.data_file_id)
        )
        async with running_mover(topics.config(kafka, key_file), store.root) as mover:
            await publish_orders(kafka, topics.orders, stale, fresh_attempt)
            done = await transfers.wait(stale.transfer_id, (TransferSucceeded,))
            assert isinstance(done, TransferSucceeded)
            assert done.attempt == 2
            assert mover.abandoned == 1
            assert [e.attempt for e in transfers.of(stale.transfer_id, TransferStarted)] == [2]
            ends = await end_offsets(kafka, topics.orders, 2)
            group = f"ecpds-movers-{topics.group}"

            async def all_committed() -> bool:
                done = await committed(kafka, group, topics.orders, 2)
                return all(done[p] == end for p, end in ends.items() if end)

            await eventually(all_committed)
        assert [p.name for p in leftovers(remote)] == ["product.grib"]
    finally:
        await transfers.stop()
        await movers.stop()


async def test_an_order_aborted_while_waiting_for_a_slot_never_starts(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """Given a host allowing one connection, a slow delivery running and a second order of the
    same destination waiting for the slot, when the second is aborted, then it never starts
    (no TransferStarted, no file) once the slot frees, and its order is committed."""
    topics, transfers, movers = await fresh(kafka)
    remote = tmp_path / "remote"
    try:
        slow = await stored(store, size=2 * MIB)
        small = await stored(store, size=64 * 1024)
        one = host(
            "file", "", directory=f"{remote}/", max_connections=1,
            options={"upload.rateThrottling": "1MB"},
        )  # fmt: skip
        first = order(slow, one, target="data/slow.bin")
        second = order(small, one, target="data/waiting.bin")
        async with running_mover(topics.config(kafka, key_file), store.root) as mover:
            await publish_orders(kafka, topics.orders, first)
            await transfers.wait(first.transfer_id, (TransferStarted,))
            await publish_orders(kafka, topics.orders, second)
            await eventually(lambda: _running(mover, 2))
            await ask_abort(kafka, topics.movers, second, None)
            await transfers.wait(first.transfer_id, (TransferSucceeded,))
            await eventually(lambda: _idle(mover))
            assert mover.abandoned == 1
        assert not transfers.of(second.transfer_id, TransferStarted)
        assert [p.name for p in leftovers(remote)] == ["slow.bin"]
    finally:
        await transfers.stop()
        await movers.stop()


async def _running(mover: Mover, count: int) -> bool:
    return len(mover.running) == count
