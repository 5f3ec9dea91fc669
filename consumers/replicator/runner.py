"""The replicator runner: consume ``ecpds.datafiles`` -> plan -> copy to the secondary stores ->
publish -> commit.

Offset rule: an offset of ``ecpds.datafiles`` is committed only once the record it covers has
ended durably: not a replication case (skipped, with the reason logged), one
``DataFileReplicated`` per copy acknowledged by the broker, or, when the transfer group's
policy cannot be met (a store failing for good and no other candidate left), a
``DeadLettered`` (``PERMANENT_FAILURE``, with every store's reason) acknowledged on
``ecpds.deadletter``: there is no replication-failure event in ``schemas/``. Records are taken
in batches; a batch's files are copied concurrently (at most ``max_concurrent`` copies at once)
and each partition is committed up to its first record that has not ended, which is read
again after a pause. A crash therefore redelivers, never loses; a redelivered copy is not made
twice: a target already holding the object with the recorded size and ADLER32 is taken as
done, and its event is published again with the same event id.

Which transfer group a file belongs to comes from its ``DataFileRegistered`` (earlier on the
same partition, remembered in memory, bounded); after a restart between the two it is read
from the stored object's name (``<destination>/<target>``) and the destination's group.
Stores already known to hold a copy (``DataFileReplicated`` seen on the topic) count as done.

Copies go through ``store.named.NamedStores``: the object is streamed from its store and
verified against the recorded ADLER32 and size (``adapters.copy``); a copy that
does not match is deleted. A retriable failure is tried again with a doubling backoff up to
``RetryPolicy.max_attempts``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias, TypeVar

from aiokafka import ConsumerRecord, TopicPartition

from bus import codec
from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import commit_ended, is_retriable, sleep_unless, stage_consumer, stop_on_signals
from bus.deadletter import dead_letter_event
from bus.errors import DecodeError, EcpdsError
from bus.events import Event
from bus.events.datafiles import (
    DataFileDeleted,
    DataFileRegistered,
    DataFileRegistrationFailed,
    DataFileReplicated,
    DataFileStored,
)
from bus.events.deadletter import DeadLetterReason
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.topics import DATAFILES, DEADLETTER, TopicSpec
from consumers.replicator import adapters, core
from consumers.replicator.ports import Stores
from store.named import NamedStores
from store.objects import object_id

log = get_logger(__name__)
Record: TypeAlias = ConsumerRecord[Any, Any]
T = TypeVar("T")
REMEMBERED: Final = 100_000


class _Stopped:
    """A retry abandoned because the runner is stopping."""


STOPPED: Final = _Stopped()


class ReplicatorRunner:
    """Copies stored data files to the secondary stores of their transfer group."""

    def __init__(
        self,
        bootstrap: str,
        stores: Stores,
        config: ConfigSource,
        *,
        publisher: Publisher | None = None,
        datafiles_topic: str = DATAFILES,
        deadletter_topic: str = DEADLETTER,
        group_id: str = "ecpds-replicator",
        specs: Sequence[TopicSpec] | None = None,
        max_concurrent: int = 15,
        retry: RetryPolicy | None = None,
        source: str = "replicator",
        max_records: int = 100,
        remembered: int = REMEMBERED,
    ) -> None:
        self._stores = stores
        self._config = config
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(bootstrap, client_id=source, specs=specs)
        self._datafiles = datafiles_topic
        self._deadletter = deadletter_topic
        self._group_id = group_id
        self._slots = asyncio.Semaphore(max_concurrent)
        self._retry = retry or RetryPolicy(initial=1.0, maximum=60.0, max_attempts=5)
        self._source = source
        self._max_records = max_records
        self._remembered = remembered
        self._stopping = asyncio.Event()
        self._groups: OrderedDict[str, str] = OrderedDict()  # data file -> transfer group
        self._copies: OrderedDict[str, set[str]] = OrderedDict()  # data file -> stores with a copy
        self._consumer = stage_consumer(
            datafiles_topic,
            bootstrap=bootstrap,
            group_id=group_id,
        )
        self.copied = 0
        self.reused = 0  # copies found already in place (a redelivery)
        self.dead_lettered = 0
        self.active = 0
        self.peak_active = 0

    def stop(self) -> None:
        """Finish the batch in hand (abandoning pending retries, uncommitted), then return."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume and replicate until ``stop`` is called."""
        await self._publisher.start()
        await self._consumer.start()
        try:
            pause = 0.5
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(
                    timeout_ms=200, max_records=self._max_records
                )
                if not batches:
                    continue
                if await self._process(batches):
                    pause = 0.5
                else:
                    await sleep_unless(self._stopping, pause)
                    pause = min(30.0, pause * 2)
        finally:
            await self._consumer.stop()
            if self._own_publisher:
                await self._publisher.stop()

    async def _process(self, batches: dict[TopicPartition, list[Record]]) -> bool:
        """Handle a batch; commit what ended; rewind to what did not. True if all ended."""
        order = [(tp, r) for tp, records in batches.items() for r in records]
        events = [self._decode(r) for _, r in order]
        for event in events:  # the whole batch first: a Registered precedes its Stored
            if event is not None:
                self._fold(event)
        ended = await asyncio.gather(
            *(
                self._handle(r, e) if isinstance(e, DataFileStored) else _done()
                for (_, r), e in zip(order, events, strict=True)
            )
        )
        return await commit_ended(self._consumer, order, ended)

    def _decode(self, record: Record) -> Event | None:
        try:
            return codec.decode_with_type(record.value, codec.type_header(record.headers))
        except DecodeError:
            return None  # not this stage's input; the topic's owners dead-letter it

    def _fold(self, event: Event) -> None:
        match event:
            case DataFileRegistered(data_file_id=dfid, transfer_group=group):
                _remember(self._groups, dfid, group, self._remembered)
            case DataFileReplicated(data_file_id=dfid, to_store=store):
                copies = self._copies.get(dfid) or set()
                _remember(self._copies, dfid, copies | {store}, self._remembered)
            case DataFileDeleted(data_file_id=dfid, store=store):
                self._copies.get(dfid, set()).discard(store)
            case DataFileRegistrationFailed(data_file_id=dfid):
                self._groups.pop(dfid, None)

    async def _handle(self, record: Record, stored: DataFileStored) -> bool:
        """Whether the record has ended durably (skipped, copies published, dead-lettered)."""
        view = self._config.view
        dfid = stored.data_file_id
        if not core.replicating(view):
            return True
        group = self._groups.get(dfid)
        if group is None:
            found = await self._attempts(lambda: self._group_from_object(stored))
            if found is STOPPED:
                return False
            if isinstance(found, BaseException):
                message = f"data file {dfid}: cannot find its transfer group: {found}"
                return await self._dead_letter(record, message, type(found).__name__)
            assert found is None or isinstance(found, str)
            group = found
        decision = core.plan(
            stored,
            group,
            view,
            lambda name: self._stores.same(name, stored.store),
            self._copies.get(dfid, ()),
        )
        if isinstance(decision, core.Skip):
            log.debug("not replicated", data_file_id=dfid, reason=decision.reason)
            ended = True
        else:
            ended = await self._replicate(record, decision)
        if ended:
            self._groups.pop(dfid, None)
        return ended

    async def _group_from_object(self, stored: DataFileStored) -> str | None:
        meta = await self._stores.store_for(stored.store).stat(object_id(stored.guid))
        return core.group_of(core.destination_of(meta.name), self._config.view)

    async def _replicate(self, record: Record, job: core.ReplicationJob) -> bool:
        done: set[str] = set(job.done)
        failed: dict[str, str] = {}
        last_error = ""
        while targets := core.next_targets(job, done, failed):
            results = await asyncio.gather(
                *(self._attempts(functools.partial(self._copy, job, t)) for t in targets)
            )
            for target, result in zip(targets, results, strict=True):
                if result is STOPPED:
                    return False  # stopping: leave it uncommitted for the next run
                if isinstance(result, BaseException):
                    failed[target] = f"{type(result).__name__}: {result}"
                    last_error = type(result).__name__
                    continue
                assert isinstance(result, DataFileReplicated)
                try:
                    await self._publisher.publish(self._datafiles, job.data_file_id, result)
                except EcpdsError as error:
                    log.warning("replication outcome not published", error=str(error))
                    return False
                done.add(target)
                self._fold(result)
        if len(done) < job.wanted:
            message = core.failure_message(job, done, failed)
            return await self._dead_letter(record, message, last_error or None)
        return True

    async def _copy(self, job: core.ReplicationJob, target: str) -> DataFileReplicated:
        async with self._slots:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
            try:
                started = time.monotonic()
                source = self._stores.store_for(job.source)
                replica = self._stores.store_for(target)
                if await adapters.copy(source, replica, job):
                    self.copied += 1
                else:
                    self.reused += 1
                duration = int((time.monotonic() - started) * 1000)
                return core.replicated(job, target, duration, _now(), self._source)
            finally:
                self.active -= 1

    async def _attempts(self, attempt: Callable[[], Awaitable[T]]) -> T | BaseException | _Stopped:
        """``attempt``'s result, the error that ended it, or ``STOPPED`` (see RetryPolicy)."""
        number = 0
        while True:
            number += 1
            try:
                return await attempt()
            except Exception as error:  # every failure ends as a retry or a returned error
                retriable = is_retriable(error) or isinstance(error, OSError)
                log.warning(
                    "replication step failed",
                    attempt=number,
                    retriable=retriable,
                    error_class=type(error).__name__,
                    error=str(error),
                )
                if not self._retry.retry(number, retriable):
                    return error
                if await sleep_unless(self._stopping, self._retry.delay(number)):
                    return STOPPED

    async def _dead_letter(self, record: Record, message: str, error_class: str | None) -> bool:
        event = dead_letter_event(
            source=self._source,
            reason=DeadLetterReason.PERMANENT_FAILURE,
            message=message,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            headers=list(record.headers or ()),
            timestamp_ms=record.timestamp,
            event_type=codec.type_header(record.headers),
            error_class=error_class,
            consumer_group=self._group_id,
        )
        try:
            await self._publisher.publish(
                self._deadletter, f"{record.topic}/{record.partition}", event
            )
        except EcpdsError as error:
            log.warning("dead letter not published", error=str(error))
            return False
        self.dead_lettered += 1
        log.error("replication failed for good", message=message)
        return True


async def _done() -> bool:
    return True


def _remember(table: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


def _now() -> datetime:
    return datetime.now(UTC)


async def serve(settings: Settings, max_concurrent: int) -> None:
    """Run the replicator with the live configuration until a signal."""
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        stores = NamedStores(settings.store_root, config=live, key_file=settings.key_file)
        runner = ReplicatorRunner(
            settings.kafka_bootstrap,
            stores,
            live,
            max_concurrent=max_concurrent,
            source=f"replicator/{settings.instance}",
        )
        stop_on_signals(runner.stop)
        log.info("replicator running", max_concurrent=max_concurrent)
        try:
            await runner.run()
        finally:
            await stores.close()


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()  # first: the defaults below are its values
    parser = argparse.ArgumentParser(prog="ecpds-replicator", description="Replica copies.")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=settings.replicate_threads,
        help="copies at once (ECPDS_REPLICATE_THREADS, default 15)",
    )
    args = parser.parse_args(argv)
    configure(settings)
    asyncio.run(serve(settings, args.max_concurrent))


if __name__ == "__main__":
    main()
