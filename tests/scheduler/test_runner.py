"""The scheduler runner against a real Kafka: events in, decisions out, retries on time, a
restart that resumes from the log (no duplicate order, a pending retry still fires), and poison
records dead-lettered once for the worker's group, then passed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer

from bus import codec
from bus.events.base import DestinationStatus, Event, TransferStatus
from bus.events.datafiles import Checksums
from bus.events.deadletter import DeadLettered, DeadLetterReason
from bus.events.movers import MoverHeartbeat
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    DestinationStatusChanged,
    TransferInterrupted,
    TransferQueued,
    TransferRequeued,
    TransferScheduled,
)
from bus.feeds import decode, partitions_of
from bus.publisher import Publisher
from bus.settings import Settings
from bus.topics import DEADLETTER, TopicSpec, apply_topics, catalogue
from consumers.scheduler.adapters import Topics
from consumers.scheduler.decisions import NEVER_ORDERED, SchedulerSettings
from consumers.scheduler.runner import SchedulerRunner
from tests.scheduler.factories import configured, destination, env, failed, host, started

pytestmark = pytest.mark.kafka

GROUP = "tg"
WAIT = 60.0  # generous bound on any one expectation (a faust join takes seconds)
MOVER_TIMEOUT = timedelta(seconds=2)
E = TypeVar("E", bound=Event)


def now() -> datetime:
    return datetime.now(UTC)


class Tail:
    """Every event of one topic from the beginning, collected in the background."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self._consumer.start()
        partitions = await partitions_of(self.bootstrap, [self.topic])
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            got = [e for rs in batches.values() for r in rs if (e := decode(r)) is not None]
            if got:
                async with self._changed:
                    self.events.extend(got)
                    self._changed.notify_all()

    async def until(self, found: Callable[[list[Event]], bool], timeout: float = WAIT) -> None:
        """Wait until ``found(events)`` holds."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found(self.events)), timeout)

    def of(self, cls: type[E], dest: str) -> list[E]:
        """The events of one type about one destination."""
        return [e for e in self.events if isinstance(e, cls) and e.destination == dest]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


@dataclass
class World:
    """Unique topics, a publisher and tails on the scheduler's outputs."""

    unique: str
    topics: Topics
    publisher: Publisher
    transfers: Tail
    orders: Tail

    async def send(self, topic: str, key: str, events: Iterable[Event]) -> None:
        for event in events:
            await self.publisher.publish(topic, key, event)

    async def configure(self, name: str, retry_ms: int, group: str = GROUP) -> None:
        """Define destination ``name`` with one host retried every ``retry_ms``."""
        dest = destination(name, transfer_group=group, retry_count=5)
        h = host(f"{name}-h1", retry_frequency_ms=retry_ms, retry_count=3)
        for event in configured(dest, h):
            await self.send(self.topics.config, "config", [event])

    async def queue(self, name: str, tid: str) -> None:
        """Queue transfer ``tid`` for ``name`` now."""
        t = now()
        event = TransferQueued(
            envelope=env(t, f"df-{tid}"),
            transfer_id=tid,
            destination=name,
            data_file_id=f"df-{tid}",
            target=f"{tid}.bin",
            status=TransferStatus.WAIT,
            priority=50,
            queue_time=t,
            expiry_time=t + timedelta(days=1),
            size=10,
            guid=f"guid-{tid}",
            store="local",
            location=f"objects/{tid}",
        )
        await self.send(self.topics.transfers, name, [event])

    def orders_for(self, tid: str, attempt: int | None = None) -> list[TransferOrdered]:
        return [
            e
            for e in self.orders.events
            if isinstance(e, TransferOrdered)
            and e.transfer_id == tid
            and (attempt is None or e.attempt == attempt)
        ]

    def runner(self, settings: Settings, **kw: Any) -> SchedulerRunner:
        """A worker of this world's consumer group."""
        return SchedulerRunner(
            settings, app_id=f"scheduler-{self.unique}", topics=self.topics, **kw
        )


def _spec(name: str, partitions: int, namespace: str) -> TopicSpec:
    return TopicSpec(name, "k", partitions, "delete", 3_600_000, (namespace,), "test")


@contextlib.asynccontextmanager
async def new_world(kafka: str) -> AsyncIterator[World]:
    """Fresh topics (so no other worker decides on them), and tails on the outputs."""
    unique = uuid.uuid4().hex[:10]
    topics = Topics(
        transfers=f"test.{unique}.transfers",
        config=f"test.{unique}.config",
        movers=f"test.{unique}.movers",
        orders_prefix=f"test.{unique}.orders.",
    )
    await apply_topics(
        kafka,
        [
            _spec(topics.transfers, 2, "ecpds.transfers"),
            _spec(topics.config, 1, "ecpds.config"),
            _spec(topics.movers, 2, "ecpds.movers"),
            _spec(topics.orders(GROUP), 2, "ecpds.orders"),
        ],
    )
    transfers, orders = Tail(kafka, topics.transfers), Tail(kafka, topics.orders(GROUP))
    await transfers.start()
    await orders.start()
    try:
        async with Publisher(kafka) as publisher:
            yield World(unique, topics, publisher, transfers, orders)
    finally:
        await transfers.stop()
        await orders.stop()


@pytest.fixture(scope="module")
async def world(kafka: str) -> AsyncIterator[World]:
    """The topics of the tests that share one running worker."""
    async with new_world(kafka) as w:
        yield w


@pytest.fixture(scope="module")
async def running(world: World, settings: Settings) -> AsyncIterator[SchedulerRunner]:
    """One scheduler worker for the module's tests that need no restart."""
    runner = world.runner(settings, scheduler=SchedulerSettings(mover_timeout=MOVER_TIMEOUT))
    await runner.start()
    await runner.ready()
    yield runner
    await runner.stop()


async def test_queued_transfer_is_ordered(world: World, running: SchedulerRunner) -> None:
    """A transfer queued for a destination with a host is ordered on its group's orders topic,
    with its TransferScheduled twin and the destination announced EXEC on the transfers log."""
    await world.configure("d-order", retry_ms=200)
    await world.queue("d-order", "t-order")
    await world.orders.until(lambda _: bool(world.orders_for("t-order")))
    (order,) = world.orders_for("t-order")
    assert order.attempt == 1
    assert order.host.id == "d-order-h1"
    assert order.guid == "guid-t-order"
    assert order.location == "objects/t-order"
    await world.transfers.until(
        lambda _: any(
            e.new_status is DestinationStatus.EXEC
            for e in world.transfers.of(DestinationStatusChanged, "d-order")
        )
    )
    scheduled = world.transfers.of(TransferScheduled, "d-order")
    assert [(e.transfer_id, e.attempt) for e in scheduled] == [("t-order", 1)]


async def test_retriable_failure_is_retried_after_the_host_frequency(
    world: World, running: SchedulerRunner
) -> None:
    """A retriable TransferFailed is requeued, and the next attempt is ordered only once the
    host's retry frequency (200 ms) has passed."""
    await world.configure("d-retry", retry_ms=200)
    await world.queue("d-retry", "t-retry")
    await world.orders.until(lambda _: bool(world.orders_for("t-retry")))
    (first,) = world.orders_for("t-retry")
    failure = failed(first, now())
    await world.send(world.topics.transfers, "d-retry", [failure])
    await world.orders.until(lambda _: bool(world.orders_for("t-retry", 2)))
    (second,) = world.orders_for("t-retry", 2)
    requeued = world.transfers.of(TransferRequeued, "d-retry")
    assert len(requeued) == 1
    assert second.envelope.occurred_at >= failure.envelope.occurred_at + timedelta(milliseconds=200)
    assert len(world.orders_for("t-retry", 1)) == 1


async def test_orders_topic_of_a_new_group_is_created(
    world: World, running: SchedulerRunner, kafka: str
) -> None:
    """The first order for a transfer group without an orders topic creates the topic and
    lands on it."""
    await world.configure("d-newgroup", retry_ms=200, group="fresh")
    await world.queue("d-newgroup", "t-newgroup")
    tail = Tail(kafka, world.topics.orders("fresh"))
    await tail.start()
    try:
        await tail.until(lambda events: any(isinstance(e, TransferOrdered) for e in events))
        (order,) = tail.of(TransferOrdered, "d-newgroup")
        assert order.transfer_group == "fresh"
    finally:
        await tail.stop()
    assert world.orders_for("t-newgroup") == []


async def test_vanished_mover_transfer_is_interrupted_and_reordered(
    world: World, running: SchedulerRunner
) -> None:
    """A transfer started by a mover whose heartbeats stop is interrupted once the mover timeout
    has passed and requeued; with no other mover of its group alive, the destination says "No
    Transfer Server available" and orders nothing; once a mover of the group is heard of, the
    transfer is ordered again: never forgotten."""
    await world.configure("d-mover", retry_ms=200)
    await world.queue("d-mover", "t-mover")
    await world.orders.until(lambda _: bool(world.orders_for("t-mover")))
    (first,) = world.orders_for("t-mover")
    beat = MoverHeartbeat(
        envelope=env(now(), "m-gone"),
        mover_id="m-gone",
        transfer_group=GROUP,
        capacity=4,
        running=1,
        started_at=now(),
    )
    await world.send(world.topics.movers, "m-gone", [beat])
    await world.send(world.topics.transfers, "d-mover", [started(first, now(), mover="m-gone")])

    def no_server(events: list[Event]) -> bool:
        return any(
            isinstance(e, DestinationStatusChanged) and e.reason == "No Transfer Server available"
            for e in events
        )

    await world.transfers.until(no_server)
    (interrupted,) = world.transfers.of(TransferInterrupted, "d-mover")
    assert "m-gone" in interrupted.reason
    assert interrupted.envelope.occurred_at >= beat.envelope.occurred_at + MOVER_TIMEOUT
    assert len(world.transfers.of(TransferRequeued, "d-mover")) == 1
    await asyncio.sleep(0.5)
    assert not world.orders_for("t-mover", 2)  # nobody to take it: not ordered
    back = replace(beat, envelope=env(now(), "m-back"), mover_id="m-back", running=0)
    await world.send(world.topics.movers, "m-back", [back])
    await world.orders.until(lambda _: bool(world.orders_for("t-mover", 2)))


async def test_two_workers_share_the_destinations(kafka: str, settings: Settings) -> None:
    """Two workers of one group split the partitions: each transfer is ordered exactly once."""
    async with new_world(kafka) as w:
        workers = [w.runner(settings), w.runner(settings)]
        for worker in workers:
            await worker.start()
        try:
            names = [f"d-pair-{n}" for n in range(6)]
            for name in names:
                await w.configure(name, retry_ms=200)
                await w.queue(name, f"t-{name}")
            await w.orders.until(lambda _: all(w.orders_for(f"t-{n}") for n in names))
            await asyncio.sleep(1)  # time for a wrong duplicate to show up
            assert all(len(w.orders_for(f"t-{n}")) == 1 for n in names)
        finally:
            for worker in workers:
                await worker.stop()


async def test_restart_resumes_from_the_log(kafka: str, settings: Settings) -> None:
    """A worker stopped after ordering and requeueing is replaced by a new one that rebuilds its
    state from the log: no second order of the ordered attempt, and the pending retry fires."""
    async with new_world(kafka) as w:
        await _restart(w, settings)


async def _restart(world: World, settings: Settings) -> None:
    retry = timedelta(seconds=6)
    first_runner = world.runner(settings)
    await first_runner.start()
    try:
        await world.configure("d-restart", retry_ms=int(retry.total_seconds() * 1000))
        await world.queue("d-restart", "t-restart")
        await world.orders.until(lambda _: bool(world.orders_for("t-restart")))
        (first,) = world.orders_for("t-restart")
        failure = failed(first, now())
        await world.send(world.topics.transfers, "d-restart", [failure])
        await world.transfers.until(
            lambda _: bool(world.transfers.of(TransferRequeued, "d-restart"))
        )
    finally:
        await first_runner.stop()
    stopped_at = now()
    assert stopped_at < failure.envelope.occurred_at + retry, "the test machine was too slow"
    assert world.orders_for("t-restart", 2) == [], "the retry must still be pending"

    second_runner = world.runner(settings)
    await second_runner.start()
    try:
        await second_runner.ready()
        await world.orders.until(lambda _: bool(world.orders_for("t-restart", 2)))
        (second,) = world.orders_for("t-restart", 2)
        assert second.envelope.occurred_at >= failure.envelope.occurred_at + retry
        await asyncio.sleep(1)  # time for a wrong duplicate to show up
        assert len(world.orders_for("t-restart", 1)) == 1
        assert len(world.orders_for("t-restart", 2)) == 1
        assert len(world.transfers.of(TransferRequeued, "d-restart")) == 1
        assert second_runner.state.transfers["t-restart"].attempt == 2
    finally:
        await second_runner.stop()


async def test_poison_is_dead_lettered_once_and_the_worker_goes_on(
    kafka: str, settings: Settings
) -> None:
    """Undecodable bytes and an event of a type not allowed on the transfers topic are each
    dead-lettered once for the worker's group, with reason and origin; the transfer queued
    after them is ordered, and a worker of the same group that takes over replays past them
    (no second dead letter) and orders the next one."""
    await apply_topics(kafka, [s for s in catalogue() if s.name == DEADLETTER])
    async with new_world(kafka) as w:
        letters = Tail(kafka, DEADLETTER)
        await letters.start()

        def mine() -> list[DeadLettered]:
            return [
                e
                for e in letters.events
                if isinstance(e, DeadLettered) and e.origin_topic == w.topics.transfers
            ]

        try:
            await _poison_then_takeover(w, settings, letters, mine)
        finally:
            await letters.stop()


async def _poison_then_takeover(
    w: World, settings: Settings, letters: Tail, mine: Callable[[], list[DeadLettered]]
) -> None:
    beat = MoverHeartbeat(
        envelope=env(now(), "m-lost"),
        mover_id="m-lost",
        transfer_group=GROUP,
        capacity=1,
        running=0,
        started_at=now(),
    )
    first = w.runner(settings)
    await first.start()
    try:
        await w.configure("d-poison", retry_ms=200)
        # one key: one partition, so the poison is met before the transfer queued after it
        garbage = await w.publisher.publish_raw(
            w.topics.transfers, b"d-poison", b"not an avro event", []
        )
        stray = await w.publisher.publish_raw(
            w.topics.transfers, b"d-poison", codec.encode(beat), codec.headers(beat)
        )
        await w.queue("d-poison", "t-poison-1")
        await w.orders.until(lambda _: bool(w.orders_for("t-poison-1")))
        await letters.until(lambda _: len(mine()) >= 2)
    finally:
        await first.stop()
    assert first.dead_lettered == 2

    second = w.runner(settings)
    await second.start()
    try:
        await second.ready()
        await w.queue("d-poison", "t-poison-2")
        await w.orders.until(lambda _: bool(w.orders_for("t-poison-2")))
        await asyncio.sleep(1)  # time for a wrong second dead letter to show up
    finally:
        await second.stop()
    group = f"scheduler-{w.unique}"
    assert sorted(
        (d.reason, d.origin_partition, d.origin_offset, d.consumer_group, d.original_value)
        for d in mine()
    ) == sorted(
        [
            (DeadLetterReason.UNDECODABLE, garbage.partition, garbage.offset, group,
             b"not an avro event"),
            (DeadLetterReason.TYPE_NOT_ALLOWED, stray.partition, stray.offset, group,
             codec.encode(beat)),
        ]
    )  # fmt: skip
    assert second.dead_lettered == 0
    assert "m-lost" not in second.state.movers  # the stray heartbeat was not replayed either
    assert len(w.orders_for("t-poison-1")) == 1


async def test_an_attempt_whose_order_was_never_sent_is_ordered_again(
    kafka: str, settings: Settings
) -> None:
    """The log a worker killed between its two publications leaves (a TransferScheduled, no
    order) no longer strands the transfer: after a rebuild the attempt is looked for in the
    orders topic, interrupted when missing, and ordered again; its slot (the host's only one)
    is freed, while an attempt whose order was sent is left alone."""
    async with new_world(kafka) as w:
        for name in ("d-stranded", "d-sent"):
            dest = destination(name, transfer_group=GROUP, retry_count=5)
            for event in configured(dest, host(f"{name}-h1", max_connections=1)):
                await w.send(w.topics.config, "config", [event])
            await w.queue(name, f"t-{name}")
        # what a worker dying between the fact and the order leaves, and what one that got
        # both out leaves
        t = now()
        for name, sent in (("d-stranded", False), ("d-sent", True)):
            fact = TransferScheduled(
                envelope=env(t, f"sched-{name}"),
                transfer_id=f"t-{name}",
                destination=name,
                attempt=1,
                host_id=f"{name}-h1",
                transfer_group=GROUP,
            )
            await w.send(w.topics.transfers, name, [fact])
            if sent:
                order = TransferOrdered(
                    envelope=env(t, f"order-{name}"),
                    transfer_id=f"t-{name}",
                    destination=name,
                    data_file_id=f"df-t-{name}",
                    attempt=1,
                    transfer_group=GROUP,
                    host=host(f"{name}-h1", max_connections=1),
                    target=f"t-{name}.bin",
                    guid=f"guid-t-{name}",
                    store="local",
                    location=f"objects/t-{name}",
                    size=10,
                    checksums=Checksums(adler32=""),
                    priority=50,
                    expiry_time=t + timedelta(days=1),
                )
                await w.send(w.topics.orders(GROUP), name, [order])
        await w.queue("d-stranded", "t-next")  # waits for the slot the stranded one holds
        runner = w.runner(settings)
        await runner.start()
        try:
            await runner.ready()
            assert runner.state.transfers["t-d-stranded"].running, "the slot is taken at first"
            await w.orders.until(lambda _: bool(w.orders_for("t-d-stranded", 2)), timeout=30)
            (interrupted,) = w.transfers.of(TransferInterrupted, "d-stranded")
            assert interrupted.transfer_id == "t-d-stranded"
            assert interrupted.attempt == 1
            assert interrupted.reason == NEVER_ORDERED
            (again,) = w.orders_for("t-d-stranded", 2)
            assert again.check_since is not None, "the new attempt asks the destination first"
            assert not w.transfers.of(TransferInterrupted, "d-sent"), "its order was sent"
            assert runner.state.transfers["t-d-sent"].running
        finally:
            await runner.stop()
