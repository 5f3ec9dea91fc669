"""``python -m consumers.scheduler.runner``: the scheduler worker, the pure core wired to Kafka.

One faust app (``bus.faust_app.make_app``) whose consumer group spreads the partitions of
``ecpds.transfers`` (keyed by destination, so one worker owns a destination) over the workers.
Configuration (``ecpds.config``) and mover liveness (``ecpds.movers``) are small and every
worker needs all of them: a ``Feed`` follows them outside the group (configuration from the
beginning, heartbeats from two mover timeouts ago: an older one says no more than the
``TransferStarted`` the core also takes as a sign of life).

How the state is kept — a fold of the log, cached in snapshots, no tables. On every partition
assignment the worker builds a fresh ``SchedulerState``: the configuration and the last word
of every mover, then, for each partition it now owns, the latest usable snapshot of that
partition (``snapshots``, read from ``ecpds.scheduler.snapshots`` by ``snapshot_store``)
and the events after the offset it covers, up to the partition's current end (all of them
when there is no usable snapshot: missing, corrupt, another schema or partition count, or an
offset outside the log; said in one line); ``gc.freeze()`` follows. The log holds the
scheduler's own past decisions too (``TransferScheduled`` is the twin of every order,
requeues, status changes, host switches), so attempts, counters, host failures and every due
time come back exactly: a retry timer is a due time derived from events, not a wall-clock
timer, and a restart fires it (late, if the restart took longer). A snapshot is the same fold
stopped at an offset (snapshot + tail == full replay, ``tests/scheduler/test_snapshots.py``).

Why snapshots: the whole-partition replay cost ~15 us an event, ~26 minutes per partition at a
week's retention (``bench/scheduler_replay.py``); with them a takeover costs the state's size
plus one snapshot interval of events. When: every ``ECPDS_SCHEDULER_SNAPSHOT_EVENTS`` events
folded or ``ECPDS_SCHEDULER_SNAPSHOT_INTERVAL`` seconds, whichever first, and on a clean
revocation or stop (bounded by ``SNAPSHOT_ON_STOP_SECONDS``, so the next owner replays only
what came after). The decider captures between decisions, when every decision evolved into
the state has been published: the state may lead the log by decisions not read back yet, which
the tail then holds and ``evolve`` ignores as applied. A state holding decisions abandoned by
a rebalance (evolved, never published) is never written. The capture copies references (entries
and summaries are frozen); sorting into partitions runs in a thread, encoding and writing in a
task, a chunk at a time. Faust tables were not chosen (DESIGN.md §8): a changelog write per
change doubles the produce traffic of the hot path, and they would be a second store to keep in
step with a log that already holds the decisions.

The loop (the core's package docstring):
- the agent takes each event past the replayed offsets and ``evolve``s it, nothing
  else (no I/O in the agent: STYLE.md habit 9), then wakes the decider;
- the decider task sleeps until ``next_due(state, now)`` or a wake-up, calls
  ``decide(state, settings, now)``, ``evolve``s every decision into the state, and only then
  publishes them keyed by destination: ``TransferOrdered`` to ``<orders prefix><transfer
  group>``, everything else to the transfers topic. Timers thus act only on the owned partitions
  (the state holds nothing else) and their effects are events.

Offset rule: the agent acknowledges an event once it is folded into the state, before the
decisions it leads to are published. This is safe because the state is not the committed
offset's to restore: a worker that dies before publishing rebuilds the state from the log and
the snapshots (which lack those decisions) and decides them again. Decisions are made only on
a complete state: never while a rebuild runs. A revocation stops them at once and waits (a few
seconds at most) for a publish in flight to land, so the next owner's replay includes it; a
publish still retrying from an older assignment is abandoned, and the next owner decides
again. Delivery stays at-least-once (a publish that outlives that wait can be decided twice);
the movers' temporary names keep the visible result exactly-once (DESIGN.md §4).

Why this is not ``bus.consumer``'s stage loop: that loop commits a record once its effects are
durable, one record at a time. Here a record's only effect is a fold into a state rebuilt from
the log (and its snapshots) on every assignment, and the decisions it leads to are made
later, for many records at once, by a task of their own (a timer can decide with no record at
all); waiting for them before acknowledging would serialise the hot path for nothing the
replay does not restore. The stage shares the rest: records are read raw (faust's
deserializer would crash the agent on a bad one) and decoded by
``bus.deadletter.decode_record``; a poison record (undecodable, or a type not allowed on the
transfers topic) is dead-lettered once for the worker's consumer group (the app id) by
``bus.deadletter.dead_letter``, before it is acknowledged, and the agent goes on; the replay
skips it (``bus.feeds.replay_from``, which reads from an offset as ``bus.feeds.replay``
reads from the beginning). Signals are ``bus.consumer.stop_on_signals``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition

from bus.consumer import stop_on_signals
from bus.deadletter import Origin, Poison, dead_letter, decode_record
from bus.errors import TransientError
from bus.events.base import Event
from bus.events.movers import MoverHeartbeat, MoverStopped, TransferAbortRequested
from bus.events.orders import TransferOrdered
from bus.events.transfers import TransferQueued, TransferScheduled
from bus.faust_app import make_app, run
from bus.feeds import Feed, replay, replay_from
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.retry import until_acknowledged
from bus.settings import Settings
from bus.topics import (
    CONFIG,
    MOVERS,
    ORDERS_PREFIX,
    SCHEDULER_SNAPSHOTS,
    TRANSFERS,
    apply_topics,
    partition_counts,
)
from consumers.scheduler import snapshots
from consumers.scheduler.adapters import OrdersTopics, Topics, place_whole_groups, stored_file
from consumers.scheduler.core import SchedulerSettings, SchedulerState, decide, evolve, next_due
from consumers.scheduler.decisions import never_ordered, unstarted
from consumers.scheduler.placement import groups, whole
from consumers.scheduler.snapshot_store import Loaded, SnapshotStore, Written, bounds

log = get_logger(__name__)

Clock = Callable[[], datetime]
QUIESCE_SECONDS = 5.0  # how long a revocation waits for a publish in flight (< session timeout)
# After an event wakes the decider it waits this long for more: the outcomes of several
# connection slots are then decided and published together. At 150 files/s this halved the
# decide passes (and the scheduler's two produce requests each) for 5-10 ms of order latency;
# a due time (retry, delay, window) is acted on at once.
COALESCE_SECONDS = 0.005
# After a rebuild, an attempt recorded as scheduled but not started is looked for in its
# orders topic once this long has passed: a previous owner's publish in flight has landed
# (or been abandoned) by then, since a revocation waits QUIESCE_SECONDS for it.
ORDER_SETTLE = QUIESCE_SECONDS + 2.0
# How long a clean revocation or stop waits for the snapshots of the partitions it gives up
# (after QUIESCE_SECONDS: both within the group's 20 s rebalance timeout), so that the next
# owner replays only what came after them. One that takes longer is abandoned: the previous
# one (the other slot) stays whole, and the next owner replays a longer tail.
SNAPSHOT_ON_STOP_SECONDS = 6.0


def utcnow() -> datetime:
    """The current UTC time (the runner's only clock)."""
    return datetime.now(UTC)


class SchedulerRunner:
    """One scheduler worker: a faust app, two feeds, a decider task (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        app_id: str = "ecpds-scheduler",
        topics: Topics = Topics(),
        scheduler: SchedulerSettings | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._settings = settings
        self._app_id = app_id  # the faust app's consumer group
        self._topics = topics
        # the declarations of the topics read, under their names: what may travel on each
        self._specs = topics.inputs(settings.topic_partitions)
        self._scheduler = scheduler or SchedulerSettings(source=f"scheduler/{settings.instance}")
        self._clock = clock
        self._bootstrap = settings.kafka_bootstrap
        self.state = SchedulerState()
        self._building: SchedulerState | None = None
        self._config_log: list[Event] = []  # configuration in log order (small)
        self._movers: dict[str, Event] = {}  # the last heartbeat or stop of each mover
        self._live_from: dict[tuple[str, int], int] = {}  # first offset not in the state yet
        self._ready = asyncio.Event()  # the state is complete: decisions may be made
        self._wake = asyncio.Event()
        self._generation = 0  # bumped by every rebalance; a decision belongs to one
        self._rebuild_task: asyncio.Task[None] | None = None
        self._orders_check: asyncio.Task[None] | None = None
        # attempts found never ordered, for the decider to interrupt (with their generation)
        self._never_ordered: tuple[int, set[tuple[str, int]]] = (0, set())
        self._decider: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # no publish in flight
        self._idle.set()
        self._orders_topics = OrdersTopics(
            self._bootstrap, topics, settings.topic_partitions, settings.kafka_replication
        )
        self.published = 0
        self.rebuilds = 0
        self.dead_lettered = 0
        # snapshots (``snapshots``): after ``_snapshot_events`` events folded or
        # ``_snapshot_interval`` seconds, whichever first, the decider captures the state of
        # each owned partition (a quick copy of references) and a task writes them
        self._store = SnapshotStore(self._bootstrap, topics.snapshots, client_id=f"{app_id}-snap")
        self._snapshot_events = settings.scheduler_snapshot_events
        self._snapshot_interval = settings.scheduler_snapshot_interval
        self._folded = 0  # events folded since the last capture
        self._captured_at = time.monotonic()
        self._slots: dict[int, int] = {}  # partition -> the slot its last snapshot went to
        self._writing: asyncio.Task[None] | None = None
        # decisions evolved into the state but abandoned unpublished (a rebalance): the state
        # holds what the log does not, so it must not be snapshot until rebuilt
        self._tainted = False
        self.snapshots_written: list[Written] = []
        self.captures: list[float] = []  # seconds the decider spent capturing, each time
        self.last_rebuild: dict[str, Any] = {}  # how the last rebuild went (tests, bench)
        # heartbeats older than two timeouts say nothing more than the transfers' own
        # TransferStarted (which the core takes as a sign of life too): skip them at start
        since = {topics.movers: clock() - 2 * self._scheduler.mover_timeout}
        self._feed = Feed(
            self._bootstrap, [topics.config, topics.movers], self._on_feed, since=since
        )
        self._publisher = Publisher(self._bootstrap, client_id=f"{app_id}-decisions")
        # the groups of partitions linked by shared hosts (``placement``); the assignor runs in
        # the consumer's thread, so it reads ``_links``, a snapshot replaced whole, never the
        # live state
        self._partitions = settings.topic_partitions  # of the transfers topic, once known
        self._links: dict[str, frozenset[str]] = {}  # host -> its destinations
        self._groups: list[frozenset[int]] = groups(self._links, self._partitions)
        self._owned: list[TopicPartition] = []
        self.app = make_app(app_id, settings)
        place_whole_groups(topics.transfers, lambda count: groups(self._links, count))
        self._wire()

    def _wire(self) -> None:
        app = self.app

        async def transfers(stream: Any) -> None:
            # one event at a time: ``take_events`` would add a timed wait (futures and a timer
            # every few milliseconds, busy or idle) that cost more CPU than the events; the
            # decider still decides once for all the events folded before it runs
            async for event in stream.events():
                message = event.message
                value = decode_record(message, self._specs)
                if isinstance(value, Poison):
                    # whatever its offset: the replay skipped it, this group has not said so
                    await self._dead_letter(message, value)
                    continue
                if not self._ready.is_set():
                    await self._ready.wait()
                # no await from here on: a rebalance cannot slip between the checks and evolve
                tp = (message.topic, message.partition)
                start = self._live_from.get(tp)
                # below ``start``: in the replayed state already (or applied: a redelivery)
                if start is not None and message.offset >= start:
                    self._apply(self.state, value)
                    self._live_from[tp] = message.offset + 1
                    self._folded += 1
                # an order's twin read back takes a slot, never frees one: nothing to decide
                if type(value) is not TransferScheduled:
                    self._wake.set()

        # raw bytes: the agent decodes, so a poison record is dead-lettered, never a crash
        topic = app.topic(self._topics.transfers, value_serializer="raw")
        app.agent(topic, name="scheduler-transfers")(transfers)
        # ignores: mode's stub wants a positional-only sender, a bound method's is not
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]

    async def _dead_letter(self, message: Any, poison: Poison) -> None:
        """Dead-letter a consumed faust message, retrying until the broker acknowledges it
        (the message is acknowledged to faust only after: a crash meanwhile redelivers it)."""
        stamp = message.timestamp  # faust's are seconds; the dead letter keeps milliseconds
        origin = Origin(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            headers=list(message.headers or ()),
            timestamp=round(stamp * 1000) if stamp is not None else None,
        )
        await until_acknowledged(
            lambda: dead_letter(
                self._publisher,
                origin,
                poison,
                source=self._scheduler.source,
                group=self._app_id,
            ),
            "dead-lettering",
        )
        self.dead_lettered += 1

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start publishing, following the feeds, consuming, and deciding."""
        await self._publisher.start()
        counts = await partition_counts(self._bootstrap, [self._topics.transfers])
        self._partitions = counts.get(self._topics.transfers, self._partitions)
        # the snapshot of transfers partition p goes to partition p: as many partitions
        spec = self._topics.snapshots_spec(max(self._partitions, self._settings.topic_partitions))
        await apply_topics(self._bootstrap, [spec], replication=self._settings.kafka_replication)
        await self._store.start()
        await self._feed.start()
        await self._feed.ready()
        self._regroup()
        self._decider = asyncio.create_task(self._decide_loop(), name="scheduler-decider")
        await self.app.start()

    async def stop(self) -> None:
        """Stop deciding first (nothing half-published), snapshot the owned partitions, then
        stop consuming, then the rest."""
        complete = self._ready.is_set()
        self._ready.clear()
        self._generation += 1
        await self._quiesce()
        await self._snapshot_on_leaving(complete)
        for task in (self._decider, self._rebuild_task, self._orders_check, self._writing):
            if task is not None:
                task.cancel()
                # a decider that died has said so through ``wait``: stopping goes on
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.app.stop()
        await self._feed.stop()
        await self._publisher.stop()
        await self._store.stop()

    async def wait(self) -> None:
        """Return (raising its error) only if the decider ended: a bug, fatal to the worker."""
        assert self._decider is not None, "start() first"
        await asyncio.shield(self._decider)

    async def ready(self, timeout: float = 60) -> None:
        """Wait until this worker owns partitions and has rebuilt their state."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # -- state ------------------------------------------------------------------------------

    def _apply(self, state: SchedulerState, event: Event) -> None:
        if isinstance(event, TransferQueued):
            file = stored_file(event)
            if file is not None and event.data_file_id not in state.files:
                state.files[event.data_file_id] = file
        evolve(state, event)

    def _on_feed(self, events: Sequence[Event]) -> None:
        configured = False
        for event in events:
            if isinstance(event, (MoverHeartbeat, MoverStopped)):
                self._movers[event.mover_id] = event
            elif isinstance(event, TransferAbortRequested):
                continue  # the scheduler's own requests to the movers
            else:
                self._config_log.append(event)
                configured = True
            for state in (self.state, self._building):
                if state is not None:
                    evolve(state, event)
        if configured:
            self._regroup()
        self._wake.set()

    def _regroup(self) -> None:
        """Recompute the groups from the configuration; a worker left owning part of a group
        (a new association joined two) stops deciding and asks for a rebalance."""
        links = self.state.host_destinations
        self._links = {host: frozenset(names) for host, names in links.items()}
        self._groups = groups(self._links, self._partitions)
        if self._ready.is_set() and not self._owns_whole_groups():
            log.warning("a host now links destinations of another worker: rebalancing")
            self._ready.clear()
            self._generation += 1
            self._request_rebalance()

    def _owns_whole_groups(self) -> bool:
        return whole(self._groups, (tp.partition for tp in self._owned))

    def _request_rebalance(self) -> None:
        """Ask the group coordinator for a new assignment (the consumer lives in faust's
        thread: the request is handed to its loop). aiokafka has no public call for it; its
        coordinator's ``request_rejoin`` is what a subscription change uses."""
        thread = self.app.consumer._thread  # type: ignore[attr-defined]

        def rejoin() -> None:
            thread._ensure_consumer()._coordinator.request_rejoin()

        thread.thread_loop.call_soon_threadsafe(rejoin)

    async def _on_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # stop deciding at once; the next owner rebuilds once this returns (an eager
        # rebalance assigns nothing before every member has handled its revocation), from the
        # snapshots written here when the state may be written
        complete = self._ready.is_set()
        self._ready.clear()
        self._generation += 1
        await self._quiesce()
        await self._snapshot_on_leaving(complete)

    async def _on_assigned(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0]  # faust sends (app, assigned: set[TP])
        self._ready.clear()
        self._generation += 1
        owned = sorted(
            (TopicPartition(tp.topic, tp.partition) for tp in assigned),
            key=lambda tp: tp.partition,
        )
        owned = [tp for tp in owned if tp.topic == self._topics.transfers]
        self._owned = owned
        if self._rebuild_task is not None:
            self._rebuild_task.cancel()
        self._rebuild_task = asyncio.create_task(self._rebuild(owned), name="scheduler-rebuild")

    async def _rebuild(self, owned: list[TopicPartition]) -> None:
        """A fresh state: configuration, movers, the latest usable snapshot of each owned
        partition, then the events after it (the whole partition when it has none); a failed
        rebuild is started again from scratch (never decide on a partial state)."""
        delay = 0.5
        while True:
            started = time.perf_counter()
            state = SchedulerState()
            for event in self._config_log:
                evolve(state, event)
            for event in self._movers.values():
                evolve(state, event)
            self._building = state
            try:
                starts, restored = await self._restore(state, owned)
                loaded = time.perf_counter()
                ends, replayed = await replay_from(
                    self._bootstrap, starts, functools.partial(self._apply, state), self._specs
                )
                break
            except TransientError as error:
                log.warning("scheduler state rebuild failed, retrying", error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                self._building = None
        state.drain_changes()  # nothing is written back: the log is the state
        self.state = state
        self._tainted = False
        self._live_from = {(tp.topic, tp.partition): end for tp, end in ends.items()}
        # the tail is not in any snapshot yet: a long one makes the first capture due at once
        self._folded, self._captured_at = replayed, time.monotonic()
        self.last_rebuild = {
            "partitions": [tp.partition for tp in owned],
            "from_snapshot": restored,
            "snapshot_s": round(loaded - started, 3),
            "tail_events": replayed,
            "tail_s": round(time.perf_counter() - loaded, 3),
        }
        # the previous state was frozen too: let the collector see it once, then freeze the new
        gc.unfreeze()
        gc.collect()
        gc.freeze()  # the entries live long: keep the cyclic collector off them
        self.rebuilds += 1
        if not self._owns_whole_groups():
            # assigned with an older configuration than this worker's: decide nothing until
            # the leader, a moment later, regroups with the one that joined the groups
            log.warning("assigned part of a group of partitions: rebalancing")
            await asyncio.sleep(1.0)
            self._request_rebalance()
            return
        log.info(
            "scheduler state rebuilt",
            transfers=len(state.transfers),
            destinations=len(state.destinations),
            **self.last_rebuild,
        )
        self._ready.set()
        self._wake.set()
        if self._orders_check is not None:
            self._orders_check.cancel()
        check = self._check_orders(self._generation, self._clock())
        self._orders_check = asyncio.create_task(check, name="scheduler-orders-check")

    async def _restore(
        self, state: SchedulerState, owned: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], list[int]]:
        """Fold into ``state`` the latest usable snapshot of each owned partition; returns
        where each partition's replay starts (its snapshot's offset, or 0) and which
        partitions came from a snapshot. A partition without a usable one is replayed whole,
        said in one line."""
        found = await self._store.read(self._topics.transfers, [tp.partition for tp in owned])
        limits = await bounds(self._bootstrap, owned)
        starts: dict[TopicPartition, int] = {}
        restored: list[int] = []
        refused: dict[int, str] = {}
        for tp in owned:
            loaded = found.get(tp.partition, Loaded(None, reason="no snapshot"))
            snap, reason = loaded.snapshot, loaded.reason
            first, end = limits[tp]
            if snap is not None:
                if snap.topic != tp.topic:
                    reason = f"taken of topic {snap.topic}"
                elif snap.partitions != self._partitions:
                    reason = f"taken with {snap.partitions} partitions, not {self._partitions}"
                elif not first <= snap.offset <= end:
                    reason = f"its offset {snap.offset} is outside the log's {first}..{end}"
                else:
                    snapshots.restore(state, snap)
                    starts[tp] = snap.offset
                    restored.append(tp.partition)
                    self._slots[tp.partition] = loaded.slot
                    continue
            starts[tp] = 0
            refused[tp.partition] = reason
        if refused:
            log.info("no usable snapshot: replaying from the beginning", partitions=refused)
        return starts, restored

    def _snapshot_wait(self) -> float | None:
        """Seconds until the state is due for a snapshot by time (None: nothing to write)."""
        if not self._folded or self._tainted:
            return None
        return max(0.0, self._captured_at + self._snapshot_interval - time.monotonic())

    def _maybe_snapshot(self) -> None:
        """Capture the owned partitions' state when due and start writing it (the decider
        calls this between decisions: every decision evolved so far is published)."""
        if self._writing is not None and not self._writing.done():
            return  # one write at a time: the next capture waits for it
        wait = self._snapshot_wait()
        if wait is None or (self._folded < self._snapshot_events and wait > 0):
            return
        taken = self._capture()
        if taken:
            self._writing = asyncio.create_task(self._write(taken), name="scheduler-snapshot")

    def _capture(self) -> tuple[snapshots.Captured, dict[int, int]]:
        """The state of every owned partition now (references: a few ms for a million
        entries), with the slot each partition's snapshot goes to."""
        started = time.perf_counter()
        offsets = {p: end for (topic, p), end in self._live_from.items()}
        captured = snapshots.capture(
            self.state, self._topics.transfers, offsets, self._partitions, self._clock()
        )
        self.captures.append(time.perf_counter() - started)
        self._folded, self._captured_at = 0, time.monotonic()
        slots = {p: 1 - self._slots.get(p, 1) for p in offsets}
        self._slots.update(slots)
        return captured, slots

    async def _write(self, taken: tuple[snapshots.Captured, dict[int, int]]) -> None:
        captured, slots = taken
        # sorting entries into partitions reads only the capture: off the loop
        split = await asyncio.to_thread(snapshots.split, captured)
        for snap in split:
            slot = slots[snap.partition]
            try:
                written = await self._store.write(snap, slot)
            except Exception as error:  # a snapshot is a cache: never fatal, tried again later
                log.warning("writing a scheduler snapshot failed", error=str(error))
                self._folded = max(self._folded, 1)  # try again at the next interval
                return
            self.snapshots_written.append(written)
            log.info(
                "scheduler snapshot written",
                partition=written.partition,
                offset=snap.offset,
                transfers=written.entries,
                chunks=written.chunks,
                bytes=written.bytes,
                seconds=round(written.seconds, 3),
            )

    async def _snapshot_on_leaving(self, complete: bool) -> None:
        """On a clean revocation or stop: snapshot the partitions given up, if the state is
        whole and holds nothing unpublished, and wait (bounded) for it to be written."""
        if not complete or self._tainted or not self._idle.is_set() or not self._live_from:
            return
        try:
            async with asyncio.timeout(SNAPSHOT_ON_STOP_SECONDS):
                if self._writing is not None and not self._writing.done():
                    await asyncio.shield(self._writing)  # one write at a time, slots alternate
                if self._folded:
                    self._writing = asyncio.create_task(self._write(self._capture()))
                    await asyncio.shield(self._writing)
        except TimeoutError:
            log.warning("the snapshot on leaving took too long: the next owner replays more")

    async def _check_orders(self, generation: int, rebuilt: datetime) -> None:
        """Find the attempts of the rebuilt state recorded as scheduled whose order is not in
        their orders topic (a worker died between publishing the two, issue 20): the decider
        interrupts them, which frees their slots and orders them again. Looked for once,
        ``ORDER_SETTLE`` after the rebuild; later attempts are this worker's own."""
        await asyncio.sleep(ORDER_SETTLE)
        delay = 0.5
        while generation == self._generation:
            pending = {(e.transfer_id, e.attempt): e for e in unstarted(self.state, rebuilt)}
            groups = {
                # the attempt's own group: a regional transfer may have fallen back
                e.transfer_group or rt.config.transfer_group
                for e in pending.values()
                if (rt := self.state.destinations.get(e.destination)) and rt.config
            }
            if not pending or not groups:
                return
            oldest = min(e.ordered_at or rebuilt for e in pending.values())
            names = [self._topics.orders(g) for g in sorted(groups)]
            try:
                # a second of slack: the order is stamped by the broker, the fact by the clock
                seen = await self._orders_in(names, oldest - timedelta(seconds=1))
            except Exception as error:  # the check is retried: nothing is decided on a guess
                log.warning("looking for unsent orders failed, retrying", error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            lost = set(pending) - seen
            if lost and generation == self._generation:
                log.warning("attempts whose order was never sent", count=len(lost))
                self._never_ordered = (generation, lost)
                self._wake.set()
            return

    async def _orders_in(self, names: list[str], since: datetime) -> set[tuple[str, int]]:
        """The (transfer, attempt) of every order in the topics ``names`` since ``since``."""
        seen: set[tuple[str, int]] = set()

        def note(event: Event) -> None:
            if isinstance(event, TransferOrdered):
                seen.add((event.transfer_id, event.attempt))

        counts = await partition_counts(self._bootstrap, names)
        partitions = [TopicPartition(t, p) for t in names for p in range(counts.get(t, 0))]
        await replay(self._bootstrap, partitions, note, since=since)
        return seen

    # -- deciding ---------------------------------------------------------------------------

    async def _decide_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._maybe_snapshot()
            now = self._clock()
            due = next_due(self.state, now, self._scheduler)
            lost_generation, lost = self._never_ordered
            if lost and lost_generation != self._generation:
                self._never_ordered, lost = (0, set()), set()  # found for another state
            if (due is None or due > now) and not lost:
                timeout = None if due is None else (due - now).total_seconds()
                snapshot = self._snapshot_wait()  # a quiet partition is snapshot on time too
                if snapshot is not None and (timeout is None or snapshot < timeout):
                    timeout = snapshot
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                    await asyncio.sleep(COALESCE_SECONDS)
                self._wake.clear()
                continue  # look again: the wake-up may have been a rebalance
            state, generation = self.state, self._generation
            decisions = never_ordered(state, self._scheduler, now, lost) if lost else []
            self._never_ordered = (0, set())
            decisions += decide(state, self._scheduler, now)
            for decision in decisions:  # evolved before published: the state leads the log
                evolve(state, decision)
            state.drain_changes()
            if decisions:
                self._idle.clear()
                try:
                    await self._publish(decisions, generation)
                finally:
                    self._idle.set()

    async def _quiesce(self) -> None:
        """Let a publish in flight land before the partitions go to another worker, so that
        its replay sees it (bounded: a publish stuck retrying is abandoned, see ``_publish``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), QUIESCE_SECONDS)

    async def _publish(self, decisions: list[Event], generation: int) -> None:
        """Publish until acknowledged; abandoned only if the partitions moved meanwhile."""
        items = [(*self._topics.route(ev), ev) for ev in decisions]
        delay = 0.1
        while True:
            if generation != self._generation:
                log.warning("decisions abandoned after a rebalance", count=len(items))
                self._tainted = True  # evolved, never published: no snapshot of this state
                return
            try:
                await self._orders_topics.ensure({topic for topic, _, _ in items})
                # one call: the facts (transfers topic) are acknowledged before the orders are
                # sent, so a mover's outcome never precedes its TransferScheduled in the log
                await self._publisher.publish_many(items)
                self.published += len(items)
                return
            except TransientError as error:
                log.warning("publishing decisions failed, retrying", error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


async def serve(settings: Settings, app_id: str, topics: Topics) -> None:
    """Run one scheduler worker until SIGTERM, SIGINT or SIGHUP (its input topics are created
    if missing)."""
    partitions = settings.topic_partitions
    await apply_topics(
        settings.kafka_bootstrap,
        [*topics.inputs(partitions), topics.snapshots_spec(partitions)],
        replication=settings.kafka_replication,
    )
    runner = SchedulerRunner(settings, app_id=app_id, topics=topics)
    stop = asyncio.Event()
    stop_on_signals(stop.set)
    await runner.start()
    log.info("scheduler running", instance=settings.instance, app_id=app_id)
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(runner.wait())
    try:
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        failed.cancel()
        await runner.stop()
    if failed.done() and not failed.cancelled() and failed.exception() is not None:
        raise RuntimeError("the scheduler's decider failed") from failed.exception()
    log.info("scheduler stopped", published=runner.published, rebuilds=runner.rebuilds)


def main(argv: Sequence[str] | None = None) -> None:
    summary = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="consumers.scheduler.runner", description=summary)
    parser.add_argument("--app-id", default="ecpds-scheduler", help="faust app / consumer group")
    parser.add_argument("--transfers", default=TRANSFERS, help="transfers topic")
    parser.add_argument("--config", default=CONFIG, help="configuration topic")
    parser.add_argument("--movers", default=MOVERS, help="mover heartbeats topic")
    parser.add_argument("--orders-prefix", default=ORDERS_PREFIX, help="orders topics prefix")
    parser.add_argument("--snapshots", default=SCHEDULER_SNAPSHOTS, help="state snapshots topic")
    args = parser.parse_args(argv)
    topics = Topics(args.transfers, args.config, args.movers, args.orders_prefix, args.snapshots)
    settings = Settings.from_env()
    configure(settings)
    run(serve(settings, args.app_id, topics))


if __name__ == "__main__":
    main()
