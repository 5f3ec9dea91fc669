"""Keeps the ingest index current: reads ``ecpds.datafiles`` and ``ecpds.transfers`` from the
beginning up to the end offsets seen at start (then ``ready``), and follows them live.

No consumer group: every partition is assigned, nothing is committed, nobody else is disturbed
(the same reading as ``bus.config.view.LiveConfig``). The index is rebuilt from the log at every
start, never from a local file, so it cannot drift from the events. An undecodable record is
skipped with a warning: the index is a projection, and the dead-letter topic is the consumer
runner's business.

Events the caller has already applied (the service applies its own at once) can be named with
``applied(topic, partition, offset)``: read back, they are skipped without being decoded. An
offset the follower has already passed is not remembered, so the set only holds events still
ahead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bus import codec
from bus.errors import DecodeError, TransientError
from bus.events import Event
from bus.logging import get_logger
from bus.topics import partition_counts

log = get_logger(__name__)

Apply = Callable[[Event], None]


class LogFollower:
    """Applies every event of ``topics`` to ``apply``, from offset 0, then live."""

    def __init__(self, bootstrap: str, topics: Sequence[str], apply: Apply) -> None:
        self._bootstrap = bootstrap
        self._topics = tuple(topics)
        self._apply = apply
        self._ready = asyncio.Event()
        self._ends: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._skip: dict[tuple[str, int], set[int]] = {}  # already applied, not yet read back
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # the service applies its own events at once; waiting for a fuller fetch costs
            # the index ~0.1 s of lag on others' events and saves most of the fetch overhead
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=100,
        )
        try:
            await consumer.start()
            assigned = await self._assignment()
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            self._ends = dict(await consumer.end_offsets(assigned))
        except KafkaError as error:
            await consumer.stop()
            raise TransientError(f"cannot read {', '.join(self._topics)}: {error}") from error
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._check_ready()
        self._task = asyncio.create_task(self._follow(), name="ingest-index")

    def applied(self, topic: str, partition: int, offset: int) -> None:
        """The event at this position is already applied: skip it when it is read back."""
        # a TopicPartition is a named tuple: (topic, partition) finds its position
        if offset >= self._positions.get((topic, partition), 0):
            self._skip.setdefault((topic, partition), set()).add(offset)

    async def _assignment(self) -> list[TopicPartition]:
        for _ in range(50):  # a topic created a moment ago may not be described yet
            counts = await partition_counts(self._bootstrap, self._topics)
            if all(counts.get(t) for t in self._topics):
                return [TopicPartition(t, p) for t in self._topics for p in range(counts[t])]
            await asyncio.sleep(0.1)
        raise TransientError(f"topics {', '.join(self._topics)} do not exist")

    async def ready(self, timeout: float = 120) -> None:
        """Wait until everything the topics held at start has been applied."""
        waiter = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait(
            [waiter, *([self._task] if self._task else [])],
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if waiter not in done:
            waiter.cancel()
            if self._failure is not None:
                raise TransientError(f"reading the ingest log failed: {self._failure}")
            raise TransientError(f"ingest log not read to its end within {timeout}s")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def _check_ready(self) -> None:
        if not self._ready.is_set() and all(
            self._positions.get(tp, 0) >= end for tp, end in self._ends.items()
        ):
            self._ready.set()

    async def _follow(self) -> None:
        assert self._consumer is not None
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batches.items():
                    skip = self._skip.get(tp)
                    for record in records:
                        if skip and record.offset in skip:
                            skip.discard(record.offset)
                        elif (event := _decode(record)) is not None:
                            self._apply(event)
                        self._positions[tp] = record.offset + 1
                if not self._ready.is_set():
                    for tp in self._consumer.assignment():
                        self._positions[tp] = await self._consumer.position(tp)
                    self._check_ready()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failure = error
            log.error("ingest index stopped following the log", error=str(error))
            raise


def _decode(record: object) -> Event | None:
    header = codec.type_header(getattr(record, "headers", None))
    try:
        return codec.decode_with_type(getattr(record, "value", b""), header)
    except DecodeError as error:
        log.warning("undecodable record skipped by the ingest index", error=str(error))
        return None
