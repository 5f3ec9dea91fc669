"""What every consumer loop of ecpds shares: the consumer of a stage, the retry test, the
stop-aware sleep, the stop signals and the commit of what ended.

The loop itself is written once, in ``bus.stage`` (its module docstring states the commit rule);
stages with a commit rule of their own (scheduler, movers, projector) use these pieces and say
in their docstrings why they differ. ``commit_ended`` is that rule's step: commit each partition
up to its first record that has not ended, and rewind to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from bus.errors import EcpdsError
from bus.kafka_access import kafka_options


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
        **kafka_options(),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=max_poll_interval_ms,
        isolation_level="read_committed",
    )


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM, SIGINT and SIGHUP (the terminal closed) call ``stop``: a stage then finishes
    what it holds and returns."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)


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
