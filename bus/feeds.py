"""Reading Kafka outside a consumer group: what a worker needs whole, whatever it owns.

``Feed`` follows whole topics that every worker needs in full (the scheduler: configuration,
mover heartbeats; a mover: the abort requests): every partition is assigned (no consumer group,
nothing committed, no other reader disturbed), read from the beginning (or, for a topic given a
``since`` time, from the first record written at or after it), and each decoded batch handed to
a callback (only events of the types given in ``only``, when given: the others are not even
decoded); ``ready()`` says the topics were read up to the end offsets seen at start.

``replay`` reads given partitions from the beginning up to their end offsets at the time of the
call and hands each event to a callback: this is how a worker rebuilds the state of the
``ecpds.transfers`` partitions it was assigned. It returns those end offsets, the positions at
which live consumption takes over. It skips what ``bus.deadletter.decode_record`` calls poison
(undecodable, or a type not allowed on its topic) with one line per replay, not one warning per
record: live consumption dead-letters each once, and a replay reads it again at every
rebalance.

Rule kept here: an undecodable record is skipped with a warning, never fatal. These readers
rebuild a projection; dead-lettering a bad record is the job of the consumer that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bus import codec
from bus.deadletter import Poison, decode_record
from bus.errors import DecodeError, TransientError
from bus.events.base import Event
from bus.logging import get_logger
from bus.topics import TopicSpec, partition_counts

log = get_logger(__name__)

OnEvents = Callable[[Sequence[Event]], None]


def decode(record: Any) -> Event | None:
    """The event in a consumed record, or None (with a warning) if it cannot be decoded."""
    header = codec.type_header(record.headers)
    try:
        return codec.decode_with_type(record.value, header)
    except DecodeError as error:
        log.warning(
            "undecodable record skipped",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=str(error),
        )
        return None


async def partitions_of(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (waits a little for topics created a moment ago)."""
    names = list(topics)
    for _ in range(50):
        counts = await partition_counts(bootstrap, names)
        if all(counts.get(t) for t in names):
            return [TopicPartition(t, p) for t in names for p in range(counts[t])]
        await asyncio.sleep(0.1)
    raise TransientError(f"topics not found: {', '.join(names)}")


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


async def replay(
    bootstrap: str,
    partitions: Sequence[TopicPartition],
    on_event: Callable[[Event], None],
    specs: Sequence[TopicSpec] | None = None,
) -> dict[TopicPartition, int]:
    """Hand every event of ``partitions`` (from the beginning to their current end) to
    ``on_event``, in partition order, poison skipped (``specs`` say what each topic allows, as
    for ``decode_record``); returns the end offsets read up to."""
    if not partitions:
        return {}
    consumer = _consumer(bootstrap)
    try:
        await consumer.start()
        consumer.assign(list(partitions))
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
        left = {tp for tp, end in ends.items() if end > 0}
        poison = 0
        while left:
            batches = await consumer.getmany(*left, timeout_ms=200, max_records=2000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break  # live consumption takes these
                    event = decode_record(record, specs)
                    if isinstance(event, Poison):
                        poison += 1
                    else:
                        on_event(event)
            for tp in list(left):
                # the position, not the last record: transaction markers leave gaps
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        if poison:  # each said once, as a dead letter, by the consumer group that met it
            log.info("poison records skipped in the replay", count=poison)
        return ends
    except KafkaError as error:
        raise TransientError(
            f"replaying {sorted({tp.topic for tp in partitions})}: {error}"
        ) from error
    finally:
        await consumer.stop()


class Feed:
    """Follows every partition of some topics from the beginning (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        on_events: OnEvents,
        *,
        since: Mapping[str, datetime] | None = None,
        only: Iterable[str] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._only = None if only is None else frozenset(only)
        self._topics = list(topics)
        self._since = dict(since or {})  # topics read from a time, not from the beginning
        self._on_events = on_events
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ends: dict[TopicPartition, int] = {}
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Assign every partition from the beginning and follow them in the background."""
        partitions = await partitions_of(self._bootstrap, self._topics)
        consumer = _consumer(self._bootstrap)
        try:
            await consumer.start()
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self._ends = await consumer.end_offsets(partitions)
            await self._skip_to_times(consumer, partitions)
        except BaseException as error:
            await consumer.stop()
            if isinstance(error, KafkaError):
                raise TransientError(f"cannot read {self._topics}: {error}") from error
            raise
        self._consumer = consumer
        await self._check_ready()
        self._task = asyncio.create_task(self._follow(), name=f"feed-{'+'.join(self._topics)}")

    async def _skip_to_times(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
    ) -> None:
        timed = {
            tp: int(self._since[tp.topic].timestamp() * 1000)
            for tp in partitions
            if tp.topic in self._since
        }
        if not timed:
            return
        found = await consumer.offsets_for_times(timed)
        for tp in timed:
            at = found.get(tp)
            # nothing written since then: start at the end
            consumer.seek(tp, at.offset if at is not None else self._ends[tp])

    async def ready(self, timeout: float = 60) -> None:
        """Wait until the topics have been read up to the end offsets seen at start."""
        waiter = asyncio.ensure_future(self._ready.wait())
        tasks: list[asyncio.Future[Any]] = [waiter, *([self._task] if self._task else [])]
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            raise TransientError(f"{self._topics} not read to their end within {timeout}s")

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _check_ready(self) -> None:
        if self._ready.is_set() or self._consumer is None:
            return
        for tp, end in self._ends.items():
            if await self._consumer.position(tp) < end:
                return
        self._ready.set()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            except KafkaError as error:  # the broker is away: keep trying, it comes back
                log.warning("feed read failed, retrying", topics=self._topics, error=str(error))
                await asyncio.sleep(1.0)
                continue
            only = self._only
            events = [
                event
                for records in batches.values()
                for record in records
                if (only is None or codec.type_header(record.headers) in only)
                and (event := decode(record)) is not None
            ]
            if events:
                self._on_events(events)
            await self._check_ready()
