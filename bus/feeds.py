"""Reading Kafka outside a consumer group: the one group-less reader, and what it is for.

``Feed`` follows whole topics that a worker needs in full, whatever it owns: every partition is
assigned (no consumer group, nothing committed, no other reader disturbed), read from the
beginning (or, for a topic given a ``since`` time, from the first record written at or after
it), and each decoded batch handed to a callback (only events of the types given in ``only``,
when given: the others are not even decoded). ``ready()`` says the topics were read up to the
end offsets seen at start; ``reached(positions)`` waits until given offsets have been read.

Everything that keeps state from a topic is a ``Feed`` plus a pure fold of its events: the live
configuration (``ConfigView.evolve``), the ingest index (``IngestIndex.apply``), the janitor
(``janitor.core.evolve``), the scheduler's configuration and heartbeats, a mover's aborts.

``replay`` reads given partitions from the beginning up to their end offsets at the time of the
call and hands each event to a callback: this is how a worker rebuilds the state of the
``ecpds.transfers`` partitions it was assigned. It returns those end offsets, the positions at
which live consumption takes over. It skips what ``bus.deadletter.decode_record`` calls poison
(undecodable, or a type not allowed on its topic) with one line per replay, not one warning per
record: live consumption dead-letters each once, and a replay reads it again at every
rebalance.

Rules kept here: an undecodable record is skipped with a warning, never fatal (these readers
rebuild a projection; dead-lettering a bad record is the job of the consumer that owns it). A
broker away is waited for; a callback that raises stops the feed, and ``ready``/``reached``
then raise with its error, so a fold that broke is never mistaken for one that is up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bus import codec
from bus.deadletter import Poison, decode_record
from bus.errors import DecodeError, TransientError
from bus.events.base import Event
from bus.kafka_access import kafka_options
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


# counted in time, not tries: under load each metadata request alone can take a second
TOPICS_WAIT = 30.0


async def partitions_of(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (waits up to ``TOPICS_WAIT`` s for topics created a
    moment ago: a loaded broker can take seconds to show a new topic in its metadata)."""
    names = list(topics)
    deadline = asyncio.get_running_loop().time() + TOPICS_WAIT
    while True:
        counts = await partition_counts(bootstrap, names)
        if all(counts.get(t) for t in names):
            return [TopicPartition(t, p) for t in names for p in range(counts[t])]
        if asyncio.get_running_loop().time() > deadline:
            missing = [t for t in names if not counts.get(t)]
            raise TransientError(f"topics not found: {', '.join(missing)}")
        await asyncio.sleep(0.1)


@dataclass(frozen=True, slots=True)
class Fetch:
    """How much one read of a feed asks for (aiokafka's defaults, unless a reader needs more)."""

    max_records: int = 1000
    min_bytes: int = 1
    max_wait_ms: int = 500
    partition_bytes: int = 1024 * 1024


def _consumer(bootstrap: str, fetch: Fetch = Fetch()) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **kafka_options(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_min_bytes=fetch.min_bytes,
        fetch_max_wait_ms=fetch.max_wait_ms,
        max_partition_fetch_bytes=fetch.partition_bytes,
    )


async def replay(
    bootstrap: str,
    partitions: Sequence[TopicPartition],
    on_event: Callable[[Event], None],
    specs: Sequence[TopicSpec] | None = None,
    since: datetime | None = None,
) -> dict[TopicPartition, int]:
    """Hand every event of ``partitions`` (from the beginning, or from the first record
    stamped at or after ``since``, to their current end) to ``on_event``, in partition order,
    poison skipped (``specs`` say what each topic allows, as for ``decode_record``); returns
    the end offsets read up to."""
    if not partitions:
        return {}
    consumer = _consumer(bootstrap)
    try:
        await consumer.start()
        consumer.assign(list(partitions))
        if since is None:
            # before end_offsets: after it, aiokafka can leave the position at the end (a
            # seek_to_beginning then has no effect and nothing would be replayed)
            await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
        if since is None:
            left = {tp for tp, end in ends.items() if end > 0}
        else:
            stamp = int(since.timestamp() * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, stamp))
            left = set()
            for tp in partitions:
                at = found.get(tp)
                consumer.seek(tp, ends[tp] if at is None else at.offset)
                if at is not None and at.offset < ends[tp]:
                    left.add(tp)
        await _read_to_ends(consumer, left, ends, on_event, specs)
        return ends
    except KafkaError as error:
        raise TransientError(
            f"replaying {sorted({tp.topic for tp in partitions})}: {error}"
        ) from error
    finally:
        await consumer.stop()


async def replay_from(
    bootstrap: str,
    starts: Mapping[TopicPartition, int],
    on_event: Callable[[Event], None],
    specs: Sequence[TopicSpec] | None = None,
) -> tuple[dict[TopicPartition, int], int]:
    """``replay`` from a given offset of each partition (a start before the log's first offset
    reads from it); returns the end offsets read up to and how many records were read."""
    if not starts:
        return {}, 0
    consumer = _consumer(bootstrap)
    try:
        await consumer.start()
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(starts))
        left = {tp for tp in starts if starts[tp] < ends[tp]}
        return ends, await _read_to_ends(consumer, left, ends, on_event, specs)
    except KafkaError as error:
        raise TransientError(f"replaying {sorted({tp.topic for tp in starts})}: {error}") from error
    finally:
        await consumer.stop()


async def _read_to_ends(
    consumer: AIOKafkaConsumer,
    left: set[TopicPartition],
    ends: Mapping[TopicPartition, int],
    on_event: Callable[[Event], None],
    specs: Sequence[TopicSpec] | None,
) -> int:
    """Hand the records of ``left`` from their positions up to ``ends`` to ``on_event``,
    poison skipped (said once, in a log line); the number of records read."""
    count = poison = 0
    while left:
        batches = await consumer.getmany(*left, timeout_ms=200, max_records=2000)
        for tp, records in batches.items():
            for record in records:
                if record.offset >= ends[tp]:
                    break  # live consumption takes these
                count += 1
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
    return count


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
        fetch: Fetch = Fetch(),
        name: str | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._on_events = on_events
        self._since = dict(since or {})  # topics read from a time, not from the beginning
        self._only = None if only is None else frozenset(only)
        self._fetch = fetch
        self._name = name or f"feed-{'+'.join(self._topics)}"
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ends: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._skip: dict[TopicPartition, set[int]] = {}  # applied already, not yet read back
        self._ready = asyncio.Event()
        self._moved = asyncio.Condition()  # notified after each read, for ``reached``
        self._failure: BaseException | None = None

    @property
    def caught_up(self) -> bool:
        """Whether the topics have been read up to the end offsets seen at start."""
        return self._ready.is_set()

    @property
    def failure(self) -> BaseException | None:
        """What stopped the feed (a callback that raised), or None while it follows."""
        return self._failure

    async def start(self) -> None:
        """Assign every partition from the beginning and follow them in the background."""
        consumer = _consumer(self._bootstrap, self._fetch)
        try:
            partitions = await partitions_of(self._bootstrap, self._topics)
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
        self._task = asyncio.create_task(self._follow(), name=self._name)

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

    def applied(self, topic: str, partition: int, offset: int) -> None:
        """The event at this position is applied already: skip it, undecoded, when read back.

        A position the feed has passed is not remembered, so only events still ahead are held.
        """
        tp = TopicPartition(topic, partition)
        if offset >= self._positions.get(tp, 0):
            self._skip.setdefault(tp, set()).add(offset)

    async def ready(self, timeout: float = 60) -> None:
        """Wait until the topics have been read up to the end offsets seen at start."""
        waiter = asyncio.ensure_future(self._ready.wait())
        tasks: list[asyncio.Future[Any]] = [waiter, *([self._task] if self._task else [])]
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            self._raise_failure()
            raise TransientError(f"{self._topics} not read to their end within {timeout}s")

    async def reached(self, positions: Mapping[TopicPartition, int], timeout: float = 30) -> None:
        """Wait until every partition given has been read up to (not including) its offset."""

        def there() -> bool:
            return self._failure is not None or all(
                self._positions.get(tp, 0) >= offset for tp, offset in positions.items()
            )

        try:
            async with self._moved:
                await asyncio.wait_for(self._moved.wait_for(there), timeout)
        except TimeoutError as error:
            raise TransientError(f"{self._topics} not read that far within {timeout}s") from error
        self._raise_failure()

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task  # a failure was logged when it happened
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise TransientError(f"reading {self._topics} failed: {self._failure}")

    async def _check_ready(self) -> None:
        if self._ready.is_set() or self._consumer is None:
            return
        for tp in self._ends:
            # the position, not the last record: compaction and transaction markers leave gaps
            self._positions[tp] = await self._consumer.position(tp)
        if all(self._positions[tp] >= end for tp, end in self._ends.items()):
            self._ready.set()

    async def _follow(self) -> None:
        try:
            while True:
                await self._read_once()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failure = error
            log.error("feed stopped", feed=self._name, error=str(error))
            async with self._moved:
                self._moved.notify_all()
            raise

    async def _read_once(self) -> None:
        assert self._consumer is not None
        try:
            batches = await self._consumer.getmany(
                timeout_ms=200, max_records=self._fetch.max_records
            )
        except KafkaError as error:  # the broker is away: keep trying, it comes back
            log.warning("feed read failed, retrying", feed=self._name, error=str(error))
            await asyncio.sleep(1.0)
            return
        only = self._only
        events: list[Event] = []
        for tp, records in batches.items():
            skip = self._skip.get(tp)
            for record in records:
                if skip and record.offset in skip:
                    skip.discard(record.offset)
                elif (only is None or codec.type_header(record.headers) in only) and (
                    event := decode(record)
                ) is not None:
                    events.append(event)
            if records:
                self._positions[tp] = records[-1].offset + 1
        if events:
            self._on_events(events)
        await self._check_ready()
        async with self._moved:
            self._moved.notify_all()
