"""Destinations that share a host are decided by one scheduler worker: the groups of
partitions, their spreading over workers, and two real workers holding a host's limit."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bus.events.config import Association
from bus.events.config_changes import AssociationDefined
from bus.events.orders import TransferOrdered
from bus.settings import Settings
from consumers.scheduler.placement import groups, partition_of, spread, whole
from consumers.scheduler.runner import SchedulerRunner
from tests.scheduler.factories import configured, destination, env, host
from tests.scheduler.test_runner import GROUP, World, new_world


def named(partition: int, partitions: int, prefix: str, count: int) -> list[str]:
    """``count`` destination names whose events go to ``partition``."""
    names = (f"{prefix}-{i}" for i in itertools.count())
    return list(
        itertools.islice((n for n in names if partition_of(n, partitions) == partition), count)
    )


def test_a_shared_host_links_the_partitions_of_its_destinations() -> None:
    """Partitions whose destinations share a host form one group; the others stay alone."""
    a, b = named(0, 8, "a", 1)[0], named(5, 8, "b", 1)[0]
    c = named(6, 8, "c", 1)[0]
    found = groups({"shared": [a, b], "own": [c]}, 8)
    assert frozenset({0, 5}) in found
    assert sorted(p for g in found for p in g) == list(range(8)), "each partition once"
    assert len(found) == 7


def test_groups_are_spread_whole_and_balanced() -> None:
    """Every group goes whole to one member; members end with near-equal partition counts."""
    found = [frozenset({0, 5}), frozenset({1}), frozenset({2}), frozenset({3}), frozenset({4})]
    owned = spread(found, ["w2", "w1"])
    assert owned == spread(found, ["w1", "w2"]), "the member order does not matter"
    assert all(whole(found, mine) for mine in owned.values())
    assert sorted(len(mine) for mine in owned.values()) == [3, 3]
    assert not whole(found, {0, 1}), "half of {0, 5} is not whole"


async def _configure(w: World, name: str, host_id: str, limit: int) -> None:
    for event in configured(
        destination(name, transfer_group=GROUP, max_connections=5),
        host(host_id, max_connections=limit),
    ):
        await w.send(w.topics.config, "config", [event])


async def _settled(workers: list[SchedulerRunner]) -> None:
    """Wait until both partitions are owned and no rebalance is pending (both ready)."""
    deadline = asyncio.get_running_loop().time() + 40
    while True:
        owned = [{tp.partition for tp in wk._owned} for wk in workers]
        ready = all(wk._ready.is_set() for wk in workers)
        if ready and set().union(*owned) == {0, 1}:
            return
        assert asyncio.get_running_loop().time() < deadline, owned
        await asyncio.sleep(0.2)


def _running_orders(w: World) -> list[TransferOrdered]:
    return [e for e in w.orders.events if isinstance(e, TransferOrdered)]


@pytest.mark.kafka
async def test_a_host_limit_holds_with_two_workers(kafka: str, settings: Settings) -> None:
    """Four destinations in both partitions share a host limited to 2 connections: with two
    workers, 2 orders go out in all (not 2 per worker), all from the worker owning both
    partitions; an association added later that links two workers' destinations moves them to
    one worker (a rebalance) before anything more is ordered on the linking host."""
    async with new_world(kafka) as w:
        workers = [w.runner(settings), w.runner(settings)]
        for worker in workers:
            await worker.start()
        try:
            names = named(0, 2, "shared", 2) + named(1, 2, "shared", 2)
            for name in names:
                await _configure(w, name, "h-shared", limit=2)
            await _settled(workers)  # both decide before any file is queued
            for name in names:
                for n in range(2):
                    await w.queue(name, f"t-{name}-{n}")
            await w.orders.until(lambda _: len(_running_orders(w)) >= 2)
            await asyncio.sleep(3)  # time for an order over the limit to show up
            assert len(_running_orders(w)) == 2, "the host's limit is 2 across the workers"
            owners = [wk for wk in workers if wk.state.transfers]
            assert len(owners) == 1, "one worker decides for every destination of the host"
            assert {tp.partition for tp in owners[0]._owned} == {0, 1}
        finally:
            for worker in workers:
                await worker.stop()


@pytest.mark.kafka
async def test_an_association_joining_two_workers_groups_moves_them_together(
    kafka: str, settings: Settings
) -> None:
    """Two destinations with hosts of their own sit with two workers; once one's host is also
    associated with the other, a rebalance puts both partitions with one worker."""
    async with new_world(kafka) as w:
        workers = [w.runner(settings), w.runner(settings)]
        for worker in workers:
            await worker.start()
        try:
            left, right = named(0, 2, "left", 1)[0], named(1, 2, "right", 1)[0]
            await _configure(w, left, "h-left", limit=1)
            await _configure(w, right, "h-right", limit=1)
            for worker in workers:
                await worker.ready()

            def split() -> list[set[int]]:
                return [{tp.partition for tp in wk._owned} for wk in workers]

            deadline = asyncio.get_running_loop().time() + 30
            while sorted(map(sorted, split())) != [[0], [1]]:
                assert asyncio.get_running_loop().time() < deadline, split()
                await asyncio.sleep(0.2)
            link = AssociationDefined(
                envelope=env(),
                association=Association(destination=right, host="h-left", priority=1),
            )
            await w.send(w.topics.config, "config", [link])
            deadline = asyncio.get_running_loop().time() + 40
            while {0, 1} not in split():
                assert asyncio.get_running_loop().time() < deadline, split()
                await asyncio.sleep(0.2)
            owner = next(wk for wk in workers if {tp.partition for tp in wk._owned} == {0, 1})
            await owner.ready(timeout=30)
            await w.queue(right, "t-after-link")
            await w.orders.until(lambda _: bool(w.orders_for("t-after-link")))
            assert owner.state.transfers.get("t-after-link") is not None
        finally:
            for worker in workers:
                await worker.stop()
