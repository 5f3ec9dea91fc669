"""The mover: a plain aiokafka consumer loop that executes the transfer orders of one group.

``python -m consumers.movers.runner --group G --capacity N --share S`` (or
``ECPDS_MOVER_GROUP``, ``ECPDS_MOVER_CAPACITY``, ``ECPDS_MOVER_SHARE``) joins consumer group
``ecpds-movers-G`` on ``ecpds.orders.G``; any number of movers may join the same group. For
each order: publish ``TransferStarted``, deliver (see ``delivery``), publish
``TransferSucceeded`` or ``TransferFailed`` with the order's attempt. One SFTP connection
carries up to ``S`` transfers at once (``ConnectionPool(share=S)``).

Rules kept (DESIGN.md §4 and §8, STYLE.md habits 5, 6 and 9):

- **Outcome before commit.** An order's offset is marked done only once its outcome event is
  acknowledged by the broker; a partition is committed up to its lowest offset still running
  (``core.OffsetTracker``). A crash redelivers every order without a published outcome, and
  the module's temp-then-rename keeps a redelivered order from leaving a partial file; an
  order written before its partition came here looks at the destination first
  (``delivery.settle``: what a crashed mover delivered is not sent twice, what it left is
  removed).
  Commits run beside the poll loop (at most every ``COMMIT_EVERY_S``), never in its way.
- **Never drop an order.** Every order ends as succeeded, failed (with ``retriable`` from the
  error), interrupted (shutdown) or dead-lettered (undecodable, wrong type: read by
  ``bus.deadletter.decode_record`` and written by ``bus.deadletter.dead_letter``, once for the
  movers' group; its offset then counts as done for the commit rule).
- **Keep polling.** Up to ``capacity`` orders run at once (each destination within its host's
  max connections); at capacity every assigned partition is paused and the loop keeps calling
  ``getmany``, so the group never evicts a mover busy with long uploads.
- **Graceful shutdown** (SIGTERM, SIGINT or SIGHUP: ``bus.consumer.stop_on_signals``): stop
  taking orders, cancel running deliveries and publish ``TransferInterrupted`` for each,
  commit, publish ``MoverStopped``, leave the group.
- **Host keys pinned.** With a configuration (``live``), each SFTP location carries the host's
  learnt key (``bus.config.hostkeys``); a key seen on a host with none is recorded
  (``HostKeyLearned``), another key than the pinned one fails the attempt as
  ``HostKeyChanged`` (the host's fault) and is recorded once (``HostKeyRefused``).
- **Abort on request.** Every mover follows ``TransferAbortRequested`` on the movers topic
  (the scheduler's answer to an immediate hold or restart, or a stop, of a running attempt;
  read from ``ABORT_MEMORY_S`` ago at start): a running attempt it names is cancelled (the
  module removes its temporary file, so nothing reaches the final name) and ends without an
  outcome (the scheduler has recorded the interruption); an order named before it arrives is
  skipped. A delivery that had already renamed its file still reports its success, which
  the scheduler ignores as superseded.

A partition taken away by a rebalance is forgotten: its running orders still publish their
outcome but do not commit; the new owner redelivers them (at-least-once; the final name is
written once by rename, and the scheduler ignores a duplicate outcome).

Why this is not ``bus.consumer``'s stage loop: that loop ends each record before it takes the
next, in partition order. A delivery takes seconds to hours, so a mover runs up to ``capacity``
orders of one partition at once and they end in any order; the partition is committed up to its
lowest unfinished offset (``core.OffsetTracker``), not up to the last record handled, and the
loop pauses its partitions instead of blocking while it is full. Decoding, dead letters and
signals are the kit's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import uvloop
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from asyncssh.logging import SSHLogger

from bus import codec
from bus.config.hostkeys import HostKeyBook
from bus.config.secrets import host_password
from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import is_retriable, stop_on_signals
from bus.deadletter import Poison, dead_letter, decode_record
from bus.errors import EcpdsError
from bus.events import Event
from bus.events.deadletter import DeadLetterReason
from bus.events.movers import TransferAbortRequested
from bus.events.orders import TransferOrdered
from bus.feeds import Feed
from bus.kafka_access import kafka_options
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.retry import until_acknowledged
from bus.settings import Settings
from bus.topics import CONFIG, MOVERS, TRANSFERS, partition_counts
from consumers.movers import core, outcomes
from consumers.movers.config import MoverConfig
from consumers.movers.delivery import Meter, deliver
from consumers.movers.ports import GroupReplicas, Replicas, Stores
from protocols.location import location_for
from protocols.pool import ConnectionPool
from protocols.sftp import watch_host_keys
from store.named import NamedStores
from store.ports import ObjectStore
from store.replicated import Fallback, ReplicatedStore

log = get_logger(__name__)

Slot = tuple[TopicPartition, int]
COMMIT_EVERY_S = 0.05  # commits batch the outcomes finished meanwhile (a redelivery bound)
# a delivery that ends within this sends TransferStarted and its outcome in one request
STARTED_GRACE_S = 0.2
ABORT_MEMORY_S = 600.0  # how long an abort request is kept for an order not yet received


@dataclass
class _Running:
    order: TransferOrdered
    slots: list[Slot]
    task: asyncio.Task[bool] | None = None  # True once its outcome is published
    attempt: asyncio.Task[Event] | None = None  # the delivery, cancelled by an abort
    aborted: str | None = None  # why the scheduler asked to abandon it
    redelivered: bool = False  # written before this mover got its partition: maybe taken before
    temporary: str | None = None  # where the delivery writes before its rename


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, mover: Mover) -> None:
        self._mover = mover

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._mover.commit()
        for tp in revoked:
            self._mover.tracker.revoke(tp)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            self._mover.tracker.assign(tp)
            self._mover.assigned_ms[tp] = time.time() * 1000


class Mover:
    """One mover process's loop: consume orders, deliver, report, commit."""

    def __init__(
        self,
        config: MoverConfig,
        stores: Stores,
        *,
        publisher: Publisher | None = None,
        pool: ConnectionPool | None = None,
        replicas: Replicas | None = None,
        live: ConfigSource | None = None,
    ) -> None:
        self.config = config
        self.tracker: core.OffsetTracker[TopicPartition] = core.OffsetTracker()
        self._stores = stores
        self._replicas = replicas
        self._publisher = publisher or Publisher(config.bootstrap, client_id=config.source)
        self._pool = pool or ConnectionPool(per_key=config.capacity, share=config.share)
        self._host_keys = (
            HostKeyBook(lambda: live.view, self._publish_config, config.source) if live else None
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap,
            **kafka_options(),
            group_id=config.group,
            client_id=config.source,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=max(300, config.session_timeout_ms // 6),
            max_poll_interval_ms=config.max_poll_interval_ms,
            max_partition_fetch_bytes=1024 * 1024,
            isolation_level="read_committed",
            # aiokafka fetches one request per broker at a time and leaves out a partition
            # with records not yet taken: a new order there waits for the long poll on the
            # others (the default 500 ms showed as 0.5 s gaps before TransferStarted)
            fetch_max_wait_ms=50,
        )
        self._running: dict[tuple[str, int], _Running] = {}
        self.assigned_ms: dict[TopicPartition, float] = {}  # when a partition came here
        self._aborted: dict[tuple[str, int], float] = {}  # -> when it is forgotten (monotonic)
        self._per_destination: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._outcomes = asyncio.Event()  # an order finished: something may be committable
        self._started_at = datetime.now(UTC)
        self._bytes = 0
        self.succeeded = self.failed = self.interrupted = self.abandoned = 0

    # -- control --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop: running transfers are interrupted and reported."""
        self._stopping.set()

    @property
    def paused(self) -> bool:
        """Whether the loop holds its partitions paused (at capacity)."""
        return bool(self._consumer.paused())

    @property
    def running(self) -> list[str]:
        return [r.order.transfer_id for r in self._running.values()]

    async def run(self) -> None:
        """Consume until ``stop``; then shut down gracefully."""
        await self._publisher.start()
        self._consumer.subscribe([self.config.topic], listener=_Rebalance(self))
        await self._consumer.start()
        topic = self.config.movers_topic
        aborts = Feed(
            self.config.bootstrap,
            [topic],
            self._on_aborts,
            since={topic: datetime.now(UTC) - timedelta(seconds=ABORT_MEMORY_S)},
            only=[TransferAbortRequested.AVRO_NAME],
        )
        await aborts.start()
        beats = asyncio.create_task(self._heartbeats())
        commits = asyncio.create_task(self._commits())
        unwatch = watch_host_keys(self._host_keys) if self._host_keys else None
        log.info("mover started", mover=self.config.mover_id, topic=self.config.topic)
        try:
            while not self._stopping.is_set():
                await self._poll_once()
        finally:
            if unwatch is not None:
                unwatch()
            for task in (beats, commits):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await aborts.stop()
            await self._shutdown()

    async def _poll_once(self) -> None:
        free = self.config.capacity - len(self._running)
        assigned = self._consumer.assignment()
        if free <= 0:
            # At capacity: pause everything (newly assigned partitions too) but keep polling.
            self._consumer.pause(*assigned)
            await self._consumer.getmany(timeout_ms=0)
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.5)
            return
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)
        batches = await self._consumer.getmany(timeout_ms=200, max_records=free)
        for tp, records in batches.items():
            for record in records:
                await self._accept(tp, record)

    # -- orders ---------------------------------------------------------------------------

    async def _accept(self, tp: TopicPartition, record: ConsumerRecord[Any, Any]) -> None:
        self.tracker.begin(tp, record.offset)
        event = decode_record(record)
        if not isinstance(event, Poison) and not isinstance(event, TransferOrdered):
            name = codec.event_type(event)
            event = Poison(DeadLetterReason.TYPE_NOT_ALLOWED, f"{name} is not an order", name)
        if isinstance(event, Poison):
            await self._dead_letter(record, event)
            self.tracker.finish(tp, record.offset)  # ended: the commit may pass it
            self._outcomes.set()
            return
        key = (event.transfer_id, event.attempt)
        if key in self._aborted:
            log.info("aborted order skipped", transfer_id=key[0], attempt=key[1])
            self.abandoned += 1
            self.tracker.finish(tp, record.offset)
            self._outcomes.set()
            return
        running = self._running.get(key)
        if running is not None:
            # Redelivered after a rebalance while still running here: one delivery, two offsets.
            running.slots.append((tp, record.offset))
            return
        # an order written before its partition came here may have been taken by a mover that
        # crashed: it looks at the destination first (effectively once, see delivery.settle)
        redelivered = record.timestamp < self.assigned_ms.get(tp, 0)
        running = _Running(event, [(tp, record.offset)], redelivered=redelivered)
        self._running[key] = running
        running.task = asyncio.create_task(self._execute(running), name=f"order-{key}")
        running.task.add_done_callback(functools.partial(self._finished, key))

    def _on_aborts(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, TransferAbortRequested):
                self._abort(event)

    def _abort(self, request: TransferAbortRequested) -> None:
        """Abandon the attempt ``request`` names if it runs here; remember it in case its order
        is still to come."""
        now = time.monotonic()
        while self._aborted:  # oldest first: forget the expired
            oldest = next(iter(self._aborted))
            if self._aborted[oldest] > now:
                break
            del self._aborted[oldest]
        key = (request.transfer_id, request.attempt)
        self._aborted[key] = now + ABORT_MEMORY_S
        running = self._running.get(key)
        if running is not None and running.attempt is not None and not running.attempt.done():
            running.aborted = request.reason
            running.attempt.cancel()

    def _abandoned(self, running: _Running) -> bool:
        """Whether a delivery ended cancelled because an abort named it (not a shutdown)."""
        current = asyncio.current_task()
        if running.aborted is None or (current is not None and current.cancelling()):
            return False
        self.abandoned += 1
        log.info(
            "transfer abandoned",
            transfer_id=running.order.transfer_id,
            attempt=running.order.attempt,
            reason=running.aborted,
        )
        return True

    def _finished(self, key: tuple[str, int], task: asyncio.Task[bool]) -> None:
        running = self._running.get(key)
        if running is None or running.task is not task:
            return
        if not task.cancelled() and task.exception() is not None:
            # only a permanent publishing error gets here (e.g. a topic refusing the type):
            # the order stays held, uncommitted, and shutdown reports it interrupted
            log.error("order left without outcome", transfer_id=key[0], error=task.exception())
        if task.cancelled() or task.exception() is not None or not task.result():
            return  # shutdown reports it interrupted, and finishes its slots then
        del self._running[key]
        for tp, offset in running.slots:
            self.tracker.finish(tp, offset)
        self._outcomes.set()
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _execute(self, running: _Running) -> bool:
        order = running.order
        limit = core.destination_limit(order, self.config.capacity)
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._per_destination.get(order.destination, 0) < limit
            )
            self._per_destination[order.destination] = (
                self._per_destination.get(order.destination, 0) + 1
            )

        # TransferStarted carries the time the delivery began. A delivery that ends within
        # STARTED_GRACE_S (most small files) sends it with its outcome, in order, in one
        # request; a longer one sends it then, while the delivery goes on, and its outcome
        # only once TransferStarted is acknowledged: the log always has started -> outcome.
        began = outcomes.started(order, self.config.source, self.config.mover_id)

        def started_event() -> Event:  # stamped when it began, named as the attempt chose
            return dataclasses.replace(began, temporary_path=running.temporary)

        started: asyncio.Future[None] | None = None
        try:
            if (order.transfer_id, order.attempt) in self._aborted:
                # aborted while it waited for a connection slot: never started
                self.abandoned += 1
                log.info("aborted order skipped", transfer_id=order.transfer_id)
                return True
            attempt = running.attempt = asyncio.ensure_future(self._attempt(running))
            try:
                done, _ = await asyncio.wait({attempt}, timeout=STARTED_GRACE_S)
                if not done:
                    started = asyncio.ensure_future(self._publish(started_event()))
                outcome = await attempt
            except BaseException as error:
                if isinstance(error, asyncio.CancelledError) and self._abandoned(running):
                    # on the scheduler's request: it has recorded the interruption already
                    if started is not None:
                        await started
                    return True
                attempt.cancel()  # its clean-up (the temporary file) ends before ours
                with contextlib.suppress(BaseException):
                    await attempt
                # cancelled (shutdown): let the started event land before the interruption
                with contextlib.suppress(BaseException):
                    await asyncio.shield(started or self._publish(started_event()))
                raise
            if started is None:
                await self._publish(started_event(), outcome)
            else:
                await started
                await self._publish(outcome)
        finally:
            self._per_destination[order.destination] -= 1
            await self._notify()
        return True

    def _store_of(self, order: TransferOrdered) -> ObjectStore:
        """The order's store, falling back to the group's replicas when it replicates; for a
        regional (continental) group, its store replica only (``store.staged``)."""
        staged = self._replicas.staged(order) if self._replicas is not None else None
        if staged is not None:
            return staged
        store = self._stores.store_for(order.store)
        replicas = self._replicas.replicas(order) if self._replicas is not None else []
        if not replicas:
            return store
        return ReplicatedStore(store, replicas, on_fallback=self._fell_back)

    def _fell_back(self, fallback: Fallback) -> None:
        log.warning(
            "read from a replica",
            object_id=fallback.object_id,
            skipped=fallback.failed,
            reason=fallback.reason,
        )

    async def _attempt(self, running: _Running) -> Event:
        order = running.order
        started = time.monotonic()
        try:
            now = datetime.now(UTC)
            path = core.target_path(order, self.config.mover_id, now)
            location = location_for(order.host, host_password(order.host, self.config.key_file))
            if self._host_keys is not None:
                pins = self._host_keys.options(order.host)
                location = dataclasses.replace(location, options={**location.options, **pins})
            meter = Meter(core.parse_rate(order.host.options.get(core.RATE_OPTION)), self._count)
            store = self._store_of(order)
            redelivered = running.redelivered
            running.temporary = core.temporary_path(
                order, location, path, self.config.mover_id if redelivered else None
            )
            delivered = await deliver(
                order,
                location,
                path,
                store,
                self._pool,
                meter,
                temporary=running.temporary,
                check_since=core.check_since(order, redelivered),
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # every failure ends as a TransferFailed, never vanishes
            self.failed += 1
            retriable = is_retriable(error) or (
                not isinstance(error, EcpdsError) and isinstance(error, OSError)
            )
            log.warning(
                "transfer failed",
                transfer_id=order.transfer_id,
                host=order.host.id,
                error=str(error),
                error_class=type(error).__name__,
                retriable=retriable,
                trace=None if isinstance(error, EcpdsError) else traceback.format_exc(limit=4),
            )
            return outcomes.failed(
                order, self.config.source, self.config.mover_id, error, retriable,
                time.monotonic() - started, running.temporary,
            )  # fmt: skip
        self.succeeded += 1
        return outcomes.succeeded(order, self.config.source, self.config.mover_id, delivered)

    def _count(self, count: int) -> None:
        self._bytes += count

    # -- events ---------------------------------------------------------------------------

    async def _publish(self, *events: Any) -> None:
        """Publish outcomes on the transfers topic (keyed by destination), durably and in
        order, joining the batch other orders are filling."""
        items = [(self.config.transfers_topic, e.destination, e) for e in events]
        await self._durably(lambda: self._publisher.publish_few(items))

    async def _publish_config(self, key: str, event: Event) -> None:
        """Record a host key event on the configuration topic (``bus.config.hostkeys``)."""
        await self._durably(lambda: self._publisher.publish(self.config.config_topic, key, event))

    async def _durably(self, send: Callable[[], Awaitable[object]]) -> None:
        """Publish, retrying retriable failures until the broker acknowledges it."""
        await until_acknowledged(send, "publishing an outcome")

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], poison: Poison) -> None:
        """Dead-letter an order that cannot be read, retrying until the broker acknowledges."""
        await self._durably(
            lambda: dead_letter(
                self._publisher,
                record,
                poison,
                source=self.config.source,
                group=self.config.group,
                topic=self.config.deadletter_topic,
            )
        )

    async def _heartbeats(self) -> None:
        """One heartbeat at once (the scheduler orders for a group only while one of its
        movers is alive), then one every ``heartbeat_s``."""
        last, sent = time.monotonic(), self._bytes
        while True:
            now = time.monotonic()
            rate = (self._bytes - sent) / (now - last) if now > last else 0.0
            last, sent = now, self._bytes
            beat = outcomes.heartbeat(self.config, self._started_at, self.running, rate)
            try:
                await self._publisher.publish(self.config.movers_topic, self.config.mover_id, beat)
            except (EcpdsError, KafkaError) as error:
                log.warning("heartbeat not published", error=str(error))
            await asyncio.sleep(self.config.heartbeat_s)

    # -- commits and shutdown -------------------------------------------------------------

    async def _commits(self) -> None:
        """Commit in the background, at most every ``COMMIT_EVERY_S``: the poll loop never
        waits for a commit's round trip, and one commit covers the outcomes of a burst."""
        while True:
            await self._outcomes.wait()
            self._outcomes.clear()
            await self.commit()
            assigned = self._consumer.assignment()
            if any(tp in assigned for tp in self.tracker.to_commit()):
                self._outcomes.set()  # the commit failed: try again after the pause
            await asyncio.sleep(COMMIT_EVERY_S)

    async def commit(self) -> None:
        """Commit every partition up to its lowest offset still running."""
        positions = {
            tp: offset
            for tp, offset in self.tracker.to_commit().items()
            if tp in self._consumer.assignment()
        }
        if not positions:
            return
        try:
            await self._consumer.commit(positions)
        except KafkaError as error:  # uncommitted = redelivered, never lost
            log.warning("commit failed", error=str(error))
            return
        self.tracker.committed(positions)

    async def _shutdown(self) -> None:
        running = list(self._running.values())
        for item in running:
            if item.task is not None:
                item.task.cancel()
        for item in running:
            if item.task is not None:
                with contextlib.suppress(BaseException):
                    await item.task
        try:
            for item in running:
                task = item.task
                if task is not None and not task.cancelled() and task.exception() is None:
                    continue  # finished with its outcome published before the cancel landed
                await self._publish(
                    outcomes.interrupted(
                        item.order, self.config.source, self.config.mover_id, "mover shutting down"
                    )
                )
                self.interrupted += 1
                for tp, offset in item.slots:
                    self.tracker.finish(tp, offset)
            self._running.clear()
            await self.commit()
            stopped = outcomes.stopped(self.config, len(running))
            await self._publisher.publish(self.config.movers_topic, self.config.mover_id, stopped)
        finally:
            await self._consumer.stop()  # leaves the group
            await self._pool.close()
            await self._stores.close()
            if self._host_keys is not None:  # keys seen last are recorded if the broker answers
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._host_keys.drain(), 5)
            await self._publisher.stop()
            log.info("mover stopped", mover=self.config.mover_id)


def _arguments(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", default=settings.mover_group)
    parser.add_argument("--capacity", type=int, default=settings.mover_capacity)
    parser.add_argument(
        "--share",
        type=int,
        default=settings.mover_share,
        help="transfers one SFTP connection carries at once (1: a connection each)",
    )
    parser.add_argument("--mover-id", default=settings.mover_id)
    parser.add_argument("--orders-topic", default=None)
    parser.add_argument("--transfers-topic", default=TRANSFERS)
    parser.add_argument("--movers-topic", default=MOVERS)
    parser.add_argument(
        "--config-topic",
        default=CONFIG,
        help="configuration (the transfer groups' stores, the hosts' SSH keys)",
    )
    parser.add_argument("--session-timeout-ms", type=int, default=10_000)
    parser.add_argument("--heartbeat", type=float, default=3.0)
    return parser.parse_args(argv)


async def serve(settings: Settings, args: argparse.Namespace) -> None:
    """Run one mover until SIGTERM, SIGINT or SIGHUP."""
    config = MoverConfig(
        bootstrap=settings.kafka_bootstrap,
        transfer_group=args.group,
        key_file=settings.key_file,
        capacity=args.capacity,
        share=args.share,
        mover_id=args.mover_id or settings.instance,
        heartbeat_s=args.heartbeat,
        session_timeout_ms=args.session_timeout_ms,
        orders_topic=args.orders_topic,
        transfers_topic=args.transfers_topic,
        movers_topic=args.movers_topic,
        config_topic=args.config_topic,
    )
    async with contextlib.AsyncExitStack() as stack:
        stores = NamedStores(settings.store_root, key_file=settings.key_file)
        replicas = live = None
        if (await partition_counts(settings.kafka_bootstrap, [args.config_topic])).get(
            args.config_topic
        ):
            live = LiveConfig(settings.kafka_bootstrap, args.config_topic, create_topic=False)
            await stack.enter_async_context(live)
            stores = NamedStores(settings.store_root, config=live, key_file=settings.key_file)
            replicas = GroupReplicas(stores, live)
        else:  # a mover reads stores by URL without it; replicas and host key pins need it
            log.warning(
                "no configuration topic: no fallback to replicas, no host key pinning",
                topic=args.config_topic,
            )
        mover = Mover(config, stores, replicas=replicas, live=live)
        stop_on_signals(mover.stop)
        await mover.run()


def _lazy_asyncssh_logging() -> None:
    """Make asyncssh skip a log call below its logger's level before formatting it.

    ``SSHLogger.log`` turns every argument to text before ``logging`` checks the level, and
    asyncssh logs a few debug lines per SFTP request: ~3% of a mover's CPU on small files.
    """
    original = SSHLogger.log

    def log(self: SSHLogger, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(level):
            original(self, level, msg, *args, **kwargs)

    SSHLogger.log = log  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    configure(settings)
    _lazy_asyncssh_logging()
    # uvloop: the SFTP/TLS byte pumps spend their time in the loop; it is ~2x cheaper per call
    uvloop.run(serve(settings, _arguments(argv, settings)))


if __name__ == "__main__":
    main()
