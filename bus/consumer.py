"""The consumer runner: consume -> decode -> handle -> commit, and never drop a message.

Offset rule (the one thing this module exists to keep): an offset is committed only after the
message it covers has ended in one of two durable ways —

* the handler returned, which means its effects are durable (it awaited its publishes and
  database commits before returning); or
* the message was written to ``ecpds.deadletter`` and the broker acknowledged it, because it
  could not be decoded, its type is not allowed on its topic, or the handler failed permanently.

A retriable failure (an ``EcpdsError`` with ``retriable`` set, or a broker/network error) is
neither: the partition is rewound to the failing message and tried again after an exponential
backoff, while the consumer keeps polling so the group does not evict it. A crash at any point
therefore redelivers, never loses; handlers are written to be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from bus import codec
from bus.deadletter import Poison, dead_letter, decode_record
from bus.errors import EcpdsError
from bus.events.deadletter import DeadLetterReason
from bus.logging import bind_event, clear_event, get_logger
from bus.publisher import Publisher
from bus.topics import TopicSpec

log = get_logger(__name__)


@dataclass(frozen=True)
class Received:
    """A decoded event and where it came from."""

    event: Any
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int


Handler = Callable[[Received], Awaitable[None]]


@dataclass
class Backoff:
    """Exponential backoff for retriable failures, capped."""

    initial: float = 0.2
    maximum: float = 30.0
    attempts: dict[TopicPartition, int] = field(default_factory=dict)

    def delay(self, tp: TopicPartition) -> float:
        n = self.attempts.get(tp, 0)
        self.attempts[tp] = n + 1
        return float(min(self.maximum, self.initial * (2**n)))

    def reset(self, tp: TopicPartition) -> None:
        self.attempts.pop(tp, None)


def is_retriable(error: BaseException) -> bool:
    """Retry policy reads the flag, never the message."""
    if isinstance(error, EcpdsError):
        return error.retriable
    if isinstance(error, KafkaError):
        return bool(getattr(error, "retriable", True))
    return isinstance(error, (ConnectionError, TimeoutError, asyncio.TimeoutError))


def stage_consumer(
    *topics: str,
    bootstrap: str,
    group_id: str,
    auto_offset_reset: str = "earliest",
    max_poll_interval_ms: int = 1_800_000,
) -> AIOKafkaConsumer:
    """The consumer of a stage that commits by hand what it has finished: committed records
    only, group liveness seen quickly (10 s session, 1 s heartbeats), and a poll interval long
    enough (30 min unless told) that slow copies or a remote service down for a while never
    cost the stage its membership."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=max_poll_interval_ms,
        isolation_level="read_committed",
    )


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stopping`` is set meanwhile; True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    return stopping.is_set()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM, SIGINT and SIGHUP (the terminal closed) call ``stop``: a stage then finishes
    what it holds and returns."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)


class ConsumerRunner:
    """Runs ``handler`` over every event of ``topics`` in consumer group ``group_id``."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        handler: Handler,
        publisher: Publisher,
        *,
        source: str = "ecpds",
        auto_offset_reset: str = "earliest",
        max_records: int = 500,
        backoff: Backoff | None = None,
        specs: Sequence[TopicSpec] | None = None,
    ) -> None:
        self._topics = list(topics)
        self._group_id = group_id
        self._specs = specs
        self._handler = handler
        self._publisher = publisher
        self._source = source
        self._max_records = max_records
        self._backoff = backoff or Backoff()
        self._stopping = asyncio.Event()
        self._consumer = stage_consumer(
            *self._topics,
            bootstrap=bootstrap,
            group_id=group_id,
            auto_offset_reset=auto_offset_reset,
            max_poll_interval_ms=300_000,
        )
        self.handled = 0
        self.dead_lettered = 0

    def stop(self) -> None:
        """Ask the loop to finish the message in hand, commit and leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop`` is called."""
        await self._consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(
                    timeout_ms=200, max_records=self._max_records
                )
                for tp, records in batches.items():
                    await self._process(tp, records)
        finally:
            await self._consumer.stop()

    async def _process(self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]) -> None:
        done: int | None = None
        for record in records:
            outcome = await self._one(record)
            if outcome == "retry":
                # rewind so the next poll brings this message back; keep polling meanwhile
                self._consumer.seek(tp, record.offset)
                await self._commit(tp, done)
                await sleep_unless(self._stopping, self._backoff.delay(tp))
                return
            self._backoff.reset(tp)
            done = record.offset
            if self._stopping.is_set():
                break
        await self._commit(tp, done)

    async def _commit(self, tp: TopicPartition, offset: int | None) -> None:
        if offset is not None:
            await self._consumer.commit({tp: offset + 1})

    async def _one(self, record: ConsumerRecord[Any, Any]) -> str:
        event = decode_record(record, self._specs)
        if isinstance(event, Poison):
            await self._dead_letter(record, event)
            return "dead"
        name = codec.event_type(event)
        envelope = getattr(event, "envelope", None)
        if envelope is not None:
            bind_event(envelope.event_id, envelope.correlation_id, topic=record.topic)
        try:
            await self._handler(
                Received(
                    event,
                    record.topic,
                    record.partition,
                    record.offset,
                    record.key,
                    record.timestamp,
                )
            )
        except Exception as error:
            if is_retriable(error):
                log.warning(
                    "retriable failure, will retry",
                    error=str(error),
                    offset=record.offset,
                    partition=record.partition,
                )
                return "retry"
            poison = Poison(
                DeadLetterReason.PERMANENT_FAILURE,
                f"handler failed: {error}",
                name,
                type(error).__name__,
            )
            await self._dead_letter(record, poison)
            return "dead"
        finally:
            clear_event()
        self.handled += 1
        return "done"

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], poison: Poison) -> None:
        await dead_letter(
            self._publisher, record, poison, source=self._source, group=self._group_id
        )
        self.dead_lettered += 1


async def commit_ended(
    consumer: AIOKafkaConsumer,
    records: Sequence[tuple[TopicPartition, ConsumerRecord[Any, Any]]],
    ended: Sequence[bool],
) -> bool:
    """After a batch handled by a stage's own loop (``records`` in each partition's order,
    ``ended[i]`` whether record i ended durably): commit each partition up to its first record
    that did not end and rewind the consumer to that record, so it and what follows are read
    again. True if every record ended. A failed commit is left to the next one: an uncommitted
    offset is redelivered, never lost."""
    outcome: dict[TopicPartition, list[tuple[ConsumerRecord[Any, Any], bool]]] = {}
    for (tp, record), ok in zip(records, ended, strict=True):
        outcome.setdefault(tp, []).append((record, ok))
    complete = True
    for tp, items in outcome.items():
        done: int | None = None
        for record, ok in items:
            if not ok:
                consumer.seek(tp, record.offset)
                complete = False
                break
            done = record.offset
        if done is not None:
            with contextlib.suppress(KafkaError):
                await consumer.commit({tp: done + 1})
    return complete
