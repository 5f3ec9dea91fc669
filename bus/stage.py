"""The stage kit: the one consume loop of ecpds (consume -> decode -> handle -> publish -> commit).

A stage supplies its topics, a ``Handler`` whose ``handle`` turns one decoded record into its
effects (done through the stage's adapters) and the outcome events to publish, and the adapters
to start and stop. ``Stage`` does the rest: the consumer (``bus.consumer.stage_consumer``),
decoding and dead-lettering (``bus.deadletter``), order, retry, outcomes, commits and signals.

Every record ends in exactly one of three ways, or is read again:

* **done**: ``handle`` returned and every event it returned (a success, or a failure event
  such as ``NotificationFailed`` or ``MailFailed``) was acknowledged by the broker;
* **dead-lettered**: the record cannot be decoded, its type is not allowed on its topic
  (``bus.deadletter.decode_record``), or ``handle`` raised a permanent error (``Rejected``
  says why in its own words) -- a ``DeadLettered`` naming the reason, the origin and the
  consumer group was acknowledged on the dead-letter topic; one warning line, no traceback;
* **not ended**: ``handle`` raised a retriable error (``bus.consumer.is_retriable``), or the
  outcome or the dead letter could not be published. The record is read again after a delay
  that doubles from attempt to attempt up to the ``RetryPolicy``'s cap, for as long as it takes:
  giving up is the handler's decision (``Received.attempt`` against the policy's
  ``max_attempts``), ended by a failure event or ``Rejected``.

Commit rule (the one thing this module exists to keep): after each batch, each partition is
committed up to its first record that has not ended, and the consumer is rewound to that record
(``bus.consumer.commit_ended``); that partition is paused until the retry delay has passed, the
others go on and the consumer keeps polling, so the group keeps this member. An offset is
therefore committed only after what it covers ended durably; a crash redelivers, never loses,
and handlers are written to be idempotent (at-least-once). Stopping finishes the record in hand,
starts no other and abandons a pending retry uncommitted: it is read again at the next start.

A stage whose handler must know of records ahead of the one it handles (a registration before
its storage, copies already recorded) gives a ``fold``: it sees every decoded event of a batch,
in offset order, before any of them is handled.

Order: with ``concurrency`` 1, records are handled one at a time in offset order, and the
records of a partition after one that has not ended wait for it. With ``concurrency`` N > 1
(stages whose records are independent: backup, replicator), a batch's records start in offset
order and up to N run at once; a later record may end first: read again behind an earlier
one's retry, it counts as ended and is not handled again (unless the stage restarted meanwhile:
at-least-once). ``handle`` runs at most once per record and attempt:
when its events could not be published, the same events (same ids) are published at the retry
and ``handle`` is not called again, so no effect is redone for a lost acknowledgement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeAlias, TypeVar

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError

from bus import codec
from bus.consumer import STOP_SIGNALS, commit_ended, is_retriable, stage_consumer, stop_on_signals
from bus.deadletter import Poison, dead_letter, decode_record
from bus.errors import EcpdsError, PermanentError
from bus.events.base import Event
from bus.events.deadletter import DeadLetterReason
from bus.logging import bind_event, clear_event, configure, get_logger
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.topics import DEADLETTER, TopicSpec

log = get_logger(__name__)
Record: TypeAlias = ConsumerRecord[Any, Any]
RecordKey: TypeAlias = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class Received:
    """A decoded record, where it came from, and which attempt at handling it this is."""

    event: Event
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    attempt: int = 1


@dataclass(frozen=True)
class Publish:
    """An outcome event to publish before the record counts as done."""

    topic: str
    key: str
    event: Event


class Rejected(PermanentError):
    """Raised by ``handle``: this record can never be handled; it is dead-lettered
    (``PERMANENT_FAILURE``) with ``message`` and ``error_class`` as its reason, after the
    ``outcome`` events of what was done before giving up are published."""

    def __init__(
        self, message: str, *, error_class: str | None = None, outcome: Sequence[Publish] = ()
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.outcome = tuple(outcome)


@dataclass(frozen=True)
class _Ending:
    """How a handled record ends: its outcome events, then its dead letter if it has one."""

    outcome: tuple[Publish, ...]
    poison: Poison | None = None


def _class(error: BaseException) -> str:
    return type(error).__name__


class Handler(Protocol):
    """What a stage supplies: the effects and outcome events of one record.

    Raise a retriable error to have the record tried again, ``Rejected`` (or any permanent
    error) to dead-letter it; return the events that record its outcome (none: done)."""

    async def handle(self, received: Received) -> Sequence[Publish]: ...


class Service(Protocol):
    """An adapter the stage starts before consuming and stops after (an MQTT client...)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


H = TypeVar("H", bound=Handler)


class Stage(Generic[H]):
    """Runs ``handler`` over every record of ``topics`` in consumer group ``group_id``."""

    def __init__(
        self,
        handler: H,
        *,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        source: str,
        publisher: Publisher | None = None,
        services: Sequence[Service] = (),
        fold: Callable[[Event], None] | None = None,
        specs: Sequence[TopicSpec] | None = None,
        start_at: Literal["earliest", "latest"] = "earliest",
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        max_records: int = 100,
        max_poll_interval_ms: int = 1_800_000,
        deadletter_topic: str = DEADLETTER,
    ) -> None:
        self.handler = handler
        self.group_id = group_id
        self._source = source
        self._specs = specs
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(bootstrap, client_id=source, specs=specs)
        self._services = tuple(services)
        self._fold = fold
        self._concurrency = max(1, concurrency)
        self._retry = retry or RetryPolicy()
        self._max_records = max_records
        self._deadletter = deadletter_topic
        self._stopping = asyncio.Event()
        self._consumer = stage_consumer(
            *topics,
            bootstrap=bootstrap,
            group_id=group_id,
            auto_offset_reset=start_at,
            max_poll_interval_ms=max_poll_interval_ms,
        )
        self._attempts: dict[RecordKey, int] = {}  # failed attempts of records not ended
        self._unpublished: dict[RecordKey, _Ending] = {}  # endings to publish again
        self._held: dict[TopicPartition, float] = {}  # paused partition -> when to read again
        self._ahead: set[RecordKey] = set()  # ended, but behind a record not ended: uncommitted
        self.handled = 0  # records done
        self.dead_lettered = 0
        self.retries = 0  # attempts that did not end their record

    def stop(self) -> None:
        """Finish the record in hand, start no other, commit what ended and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop`` is called."""
        async with contextlib.AsyncExitStack() as stack:
            if self._own_publisher:
                await self._publisher.start()
                stack.push_async_callback(self._publisher.stop)
            for service in self._services:
                await service.start()
                stack.push_async_callback(service.stop)
            await self._consumer.start()
            stack.push_async_callback(self._consumer.stop)
            while not self._stopping.is_set():
                self._release_due()
                batches = await self._consumer.getmany(
                    timeout_ms=200, max_records=self._max_records
                )
                if batches:
                    await self._batch(batches)

    async def _batch(self, batches: dict[TopicPartition, list[Record]]) -> None:
        order = [(tp, record) for tp, records in batches.items() for record in records]
        events = {_key(record): decode_record(record, self._specs) for _, record in order}
        if self._fold is not None:
            for event in events.values():
                if not isinstance(event, Poison):
                    self._fold(event)
        if self._concurrency == 1:
            ended: list[bool] = []
            for records in batches.values():
                ok = True
                for record in records:
                    ok = ok and not self._stopping.is_set()
                    ok = ok and await self._end(record, events[_key(record)])
                    ended.append(ok)
        else:
            slots = asyncio.Semaphore(self._concurrency)

            async def one(record: Record) -> bool:
                async with slots:
                    if self._stopping.is_set():
                        return False
                    return await self._end(record, events[_key(record)])

            ended = list(await asyncio.gather(*(one(record) for _, record in order)))
        if await commit_ended(self._consumer, order, ended) or self._stopping.is_set():
            self._ahead.difference_update(_key(record) for _, record in order)
            return
        first: dict[TopicPartition, Record] = {}
        for (tp, record), ok in zip(order, ended, strict=True):
            if not ok and tp not in first:
                first[tp] = record
        for (tp, record), ok in zip(order, ended, strict=True):
            waiting = first.get(tp)
            if ok and waiting is not None and record.offset > waiting.offset:
                self._ahead.add(_key(record))
            else:
                self._ahead.discard(_key(record))
        for tp, record in first.items():
            attempts = self._attempts.get(_key(record), 1)
            self._hold(tp, self._retry.delay(attempts))

    def _hold(self, tp: TopicPartition, seconds: float) -> None:
        """Read ``tp`` again (from where it was rewound) in ``seconds``; others go on."""
        self._consumer.pause(tp)
        self._held[tp] = asyncio.get_running_loop().time() + seconds

    def _release_due(self) -> None:
        now = asyncio.get_running_loop().time()
        for tp, when in list(self._held.items()):
            if when <= now:
                del self._held[tp]
                with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                    self._consumer.resume(tp)

    async def _end(self, record: Record, event: Event | Poison) -> bool:
        """Handle ``record`` (decoded: ``event``) and publish its outcome; whether it ended."""
        key = _key(record)
        if key in self._ahead:
            return True  # ended in an earlier batch, read again behind a retried record
        ending = self._unpublished.pop(key, None)
        if ending is None:
            if isinstance(event, Poison):
                return await self._dead_letter(record, event)
            ending = await self._handle(record, event)
            if ending is None:
                return False
        if ending.outcome:
            try:
                await self._publisher.publish_few(
                    [(p.topic, p.key, p.event) for p in ending.outcome]
                )
            except EcpdsError as error:
                if not is_retriable(error):
                    name = codec.event_type(ending.outcome[0].event)
                    why = f"outcome not publishable: {error}"
                    poison = Poison(DeadLetterReason.PERMANENT_FAILURE, why, name, _class(error))
                    return await self._dead_letter(record, poison)
                self._unpublished[key] = ending
                self._failed(record, "outcome not published, will retry", error)
                return False
        if ending.poison is not None:
            if await self._dead_letter(record, ending.poison):
                return True
            self._unpublished[key] = _Ending((), ending.poison)  # the outcome is out already
            return False
        self._attempts.pop(key, None)
        self.handled += 1
        return True

    async def _handle(self, record: Record, event: Event) -> _Ending | None:
        """What ``handle`` made of the record, or None when it is to be tried again."""
        key = _key(record)
        attempt = self._attempts.get(key, 0) + 1
        envelope = getattr(event, "envelope", None)
        if envelope is not None:
            bind_event(envelope.event_id, envelope.correlation_id, topic=record.topic)
        received = Received(
            event,
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.timestamp,
            attempt,
        )
        try:
            return _Ending(tuple(await self.handler.handle(received)))
        except Exception as error:  # every failure ends as a retry or a dead letter
            if is_retriable(error):
                self._failed(record, "retriable failure, will retry", error)
                return None
            name = codec.event_type(event)
            if isinstance(error, Rejected):
                why = Poison(
                    DeadLetterReason.PERMANENT_FAILURE, error.message, name, error.error_class
                )
                return _Ending(error.outcome, why)
            why = Poison(
                DeadLetterReason.PERMANENT_FAILURE, f"handler failed: {error}", name, _class(error)
            )
            return _Ending((), why)
        finally:
            clear_event()

    def _failed(self, record: Record, what: str, error: BaseException) -> None:
        key = _key(record)
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        self.retries += 1
        log.warning(
            what,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            attempt=attempt,
            retry_in=self._retry.delay(attempt),
            error_class=type(error).__name__,
            error=str(error),
        )

    async def _dead_letter(self, record: Record, poison: Poison) -> bool:
        try:
            await dead_letter(
                self._publisher,
                record,
                poison,
                source=self._source,
                group=self.group_id,
                topic=self._deadletter,
            )
        except EcpdsError as error:
            self._failed(record, "dead letter not published, will retry", error)
            return False
        self._attempts.pop(_key(record), None)
        self.dead_lettered += 1
        return True


def _key(record: Record) -> RecordKey:
    return (record.topic, record.partition, record.offset)


async def until_signalled(stage: Stage[Any]) -> None:
    """Run ``stage`` until SIGINT, SIGTERM or SIGHUP (``bus.consumer.stop_on_signals``)."""
    stop_on_signals(stage.stop)
    try:
        await stage.run()
    finally:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


Serve = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, None]]
Options = Callable[[argparse.ArgumentParser, Settings], None]


def main(
    prog: str,
    description: str,
    serve: Serve,
    argv: Sequence[str] | None = None,
    *,
    options: Options | None = None,
) -> None:
    """A stage's command: settings from the environment (a bad value names its variable),
    options (their defaults may come from the settings), logging, then ``serve`` -- which
    builds the stage and awaits ``until_signalled`` -- until a signal stops it."""
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if options is not None:
        options(parser, settings)
    args = parser.parse_args(argv)
    configure(settings)
    asyncio.run(serve(settings, args))
