"""The replicator: ``ecpds.datafiles`` -> plan -> copy to the secondary stores ->
``DataFileReplicated``; a stage of the kit (``bus.stage``: its docstring has the commit rule).

A record of ``ecpds.datafiles`` ends when it is not a replication case (skipped, with the
reason logged), when one ``DataFileReplicated`` per copy is acknowledged by the broker, or,
when the transfer group's policy cannot be met (a store failing for good and no other candidate
left), when the copies made are recorded and the record is dead-lettered (``Rejected``:
``PERMANENT_FAILURE``, with every store's reason): there is no replication-failure event in
``schemas/``. A batch's files are copied concurrently (at most ``max_concurrent`` records and
copies at once). A retriable failure of a copy (or an ``OSError``) is tried again by the kit
with a doubling backoff, the record's copies already made kept, until that store has failed
``RetryPolicy.max_attempts`` times; it is then replaced by the next candidate. A crash
redelivers, never loses; a redelivered copy is not made twice: a target already holding the
object with the recorded size and ADLER32 is taken as done, and its event is published again
with the same event id.

Which transfer group a file belongs to comes from its ``DataFileRegistered`` (earlier on the
same partition, remembered in memory, bounded; the kit folds a whole batch before handling it);
after a restart between the two it is read from the stored object's name
(``<destination>/<target>``) and the destination's group. Stores already known to hold a copy
(``DataFileReplicated`` seen on the topic) count as done.

Pre-staging (continental movers): a file of a regional group is copied into the group's
``replica_store`` as soon as it is stored, first of its copies; besides its
``DataFileReplicated`` the copy is published as a ``DataFileStaged`` on ``ecpds.transfers``
keyed by the destination (known from ``DataFileRegistered``, else from the object's name), in
the same outcome, so the scheduler that orders the destination's transfers learns that the
region holds the object. A staging that fails for good is dead-lettered like a replication.

Copies go through ``store.named.NamedStores``: the object is streamed from its store and
verified against the recorded ADLER32 and size (``adapters.copy``); a copy that does not match
is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import is_retriable
from bus.errors import TransientError
from bus.events.datafiles import (
    DataFileDeleted,
    DataFileRegistered,
    DataFileRegistrationFailed,
    DataFileReplicated,
    DataFileStored,
)
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.stage import Publish, Received, Rejected, Stage, main, until_signalled
from bus.topics import CONFIG, DATAFILES, DEADLETTER, TRANSFERS, TopicSpec
from consumers.replicator import adapters, core
from consumers.replicator.ports import Stores
from store.named import NamedStores
from store.objects import object_id

log = get_logger(__name__)
REMEMBERED: Final = 100_000
RETRY = RetryPolicy(initial=1.0, maximum=60.0, max_attempts=5)


@dataclass
class _Progress:
    """A stored file's replication across the attempts at its record."""

    job: core.ReplicationJob
    done: set[str]
    failed: dict[str, str] = field(default_factory=dict)  # store -> reason, failed for good
    tries: dict[str, int] = field(default_factory=dict)  # store -> failed attempts
    outcome: list[Publish] = field(default_factory=list)  # copies made, to record
    last_error: str | None = None


class Replicator:
    """The replicator's handler: copies stored files to their group's secondary stores."""

    def __init__(
        self,
        stores: Stores,
        config: ConfigSource,
        *,
        datafiles_topic: str,
        max_concurrent: int,
        retry: RetryPolicy,
        source: str,
        remembered: int = REMEMBERED,
        transfers_topic: str = TRANSFERS,
    ) -> None:
        self._stores = stores
        self._config = config
        self._datafiles = datafiles_topic
        self._transfers = transfers_topic
        self._slots = asyncio.Semaphore(max_concurrent)
        self._retry = retry
        self._source = source
        self._remembered = remembered
        self._groups: OrderedDict[str, str] = OrderedDict()  # data file -> transfer group
        self._destinations: OrderedDict[str, str] = OrderedDict()  # data file -> destination
        self._copies: OrderedDict[str, set[str]] = OrderedDict()  # data file -> stores with a copy
        self._progress: dict[tuple[str, int, int], _Progress] = {}  # records being retried
        self.copied = 0
        self.reused = 0  # copies found already in place (a redelivery)
        self.active = 0
        self.peak_active = 0

    async def handle(self, received: Received) -> Sequence[Publish]:
        event = received.event
        if not isinstance(event, DataFileStored):
            return ()
        at = (received.topic, received.partition, received.offset)
        progress = self._progress.pop(at, None)
        if not core.replicating(self._config.view):
            return ()
        if progress is None:
            job = await self._plan(event, received.attempt)
            if job is None:
                return ()
            progress = _Progress(job, set(job.done))
        self._progress[at] = progress
        await self._replicate(progress)  # raises to be tried again: progress is kept
        del self._progress[at]
        self._groups.pop(event.data_file_id, None)
        self._destinations.pop(event.data_file_id, None)
        if len(progress.done) < progress.job.wanted:
            message = core.failure_message(progress.job, progress.done, progress.failed)
            raise Rejected(message, error_class=progress.last_error, outcome=progress.outcome)
        return progress.outcome

    async def _plan(self, stored: DataFileStored, attempt: int) -> core.ReplicationJob | None:
        dfid = stored.data_file_id
        group = self._groups.get(dfid)
        destination = self._destinations.get(dfid, "")
        if group is None or not destination:
            try:
                meta = await self._stores.store_for(stored.store).stat(object_id(stored.guid))
            except Exception as error:  # a retry, or no way to place the file
                retriable = is_retriable(error) or isinstance(error, OSError)
                if self._retry.retry(attempt, retriable):
                    raise TransientError(f"stat of {stored.guid}: {error}") from error
                why = f"data file {dfid}: cannot find its transfer group: {error}"
                raise Rejected(why, error_class=type(error).__name__) from error
            destination = core.destination_of(meta.name)
            group = group or core.group_of(destination, self._config.view)
        decision = core.plan(
            stored,
            group,
            self._config.view,
            lambda name: self._stores.same(name, stored.store),
            self._copies.get(dfid, ()),
            destination,
        )
        if isinstance(decision, core.Skip):
            log.debug("not replicated", data_file_id=dfid, reason=decision.reason)
            self._groups.pop(dfid, None)
            self._destinations.pop(dfid, None)
            return None
        return decision

    async def _replicate(self, progress: _Progress) -> None:
        """Copy until the policy is met or no candidate is left; raise to be tried again."""
        job = progress.job
        while targets := core.next_targets(job, progress.done, progress.failed):
            results = await asyncio.gather(
                *(self._copy(job, target) for target in targets), return_exceptions=True
            )
            again: BaseException | None = None
            for target, result in zip(targets, results, strict=True):
                if isinstance(result, DataFileReplicated):
                    progress.done.add(target)
                    progress.outcome.append(Publish(self._datafiles, job.data_file_id, result))
                    if target == job.staging:  # pre-staged: the destination's scheduler hears it
                        staged = core.staged(job, result)
                        progress.outcome.append(Publish(self._transfers, job.destination, staged))
                        log.info(
                            "pre-staged",
                            data_file_id=job.data_file_id,
                            destination=job.destination,
                            store=target,
                        )
                    self.fold(result)
                    continue
                if not isinstance(result, Exception):
                    raise result  # cancelled: not a failure of the copy
                retriable = is_retriable(result) or isinstance(result, OSError)
                tries = progress.tries[target] = progress.tries.get(target, 0) + 1
                log.warning(
                    "replication copy failed",
                    store=target,
                    attempt=tries,
                    retriable=retriable,
                    error_class=type(result).__name__,
                    error=str(result),
                )
                if self._retry.retry(tries, retriable):
                    again = result
                else:
                    progress.failed[target] = f"{type(result).__name__}: {result}"
                    progress.last_error = type(result).__name__
            if again is not None:
                raise TransientError(f"replication to be tried again: {again}") from again

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
                return core.replicated(job, target, duration, datetime.now(UTC), self._source)
            finally:
                self.active -= 1

    def fold(self, event: Any) -> None:
        """Remember groups and copies (every event of a batch, before any is handled)."""
        match event:
            case DataFileRegistered(data_file_id=dfid, transfer_group=group, destination=dest):
                _remember(self._groups, dfid, group, self._remembered)
                _remember(self._destinations, dfid, dest, self._remembered)
            case DataFileReplicated(data_file_id=dfid, to_store=store):
                copies = self._copies.get(dfid) or set()
                _remember(self._copies, dfid, copies | {store}, self._remembered)
            case DataFileDeleted(data_file_id=dfid, store=store):
                self._copies.get(dfid, set()).discard(store)
            case DataFileRegistrationFailed(data_file_id=dfid):
                self._groups.pop(dfid, None)
                self._destinations.pop(dfid, None)


def _remember(table: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


def replicator_stage(
    bootstrap: str,
    stores: Stores,
    config: ConfigSource,
    *,
    publisher: Publisher | None = None,
    datafiles_topic: str = DATAFILES,
    transfers_topic: str = TRANSFERS,
    deadletter_topic: str = DEADLETTER,
    group_id: str = "ecpds-replicator",
    specs: Sequence[TopicSpec] | None = None,
    max_concurrent: int = 15,
    retry: RetryPolicy = RETRY,
    source: str = "replicator",
    max_records: int = 100,
    remembered: int = REMEMBERED,
) -> Stage[Replicator]:
    """The replicator on ``datafiles_topic``, copying between ``stores``."""
    replicator = Replicator(
        stores,
        config,
        datafiles_topic=datafiles_topic,
        max_concurrent=max_concurrent,
        retry=retry,
        source=source,
        remembered=remembered,
        transfers_topic=transfers_topic,
    )
    return Stage(
        replicator,
        bootstrap=bootstrap,
        topics=[datafiles_topic],
        group_id=group_id,
        source=source,
        publisher=publisher,
        specs=specs,
        fold=replicator.fold,
        concurrency=max_concurrent,
        retry=retry,
        max_records=max_records,
        deadletter_topic=deadletter_topic,
    )


async def serve(settings: Settings, args: argparse.Namespace) -> None:
    """Run the replicator with the live configuration until a signal."""
    config = LiveConfig(settings.kafka_bootstrap, args.config_topic, create_topic=False)
    async with config as live:
        stores = NamedStores(settings.store_root, config=live, key_file=settings.key_file)
        try:
            stage = replicator_stage(
                settings.kafka_bootstrap,
                stores,
                live,
                datafiles_topic=args.datafiles_topic,
                transfers_topic=args.transfers_topic,
                deadletter_topic=args.deadletter_topic,
                group_id=args.group_id,
                max_concurrent=args.max_concurrent,
                source=f"replicator/{settings.instance}",
            )
            log.info("replicator running", max_concurrent=args.max_concurrent)
            await until_signalled(stage)
        finally:
            await stores.close()


def options(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=settings.replicate_threads,
        help="copies at once (ECPDS_REPLICATE_THREADS, default 15)",
    )
    # other topics than the defaults: a private stack (tests, benchmarks) beside ``ecpds up``
    parser.add_argument("--config-topic", default=CONFIG)
    parser.add_argument("--datafiles-topic", default=DATAFILES)
    parser.add_argument("--transfers-topic", default=TRANSFERS, help="where pre-staging is told")
    parser.add_argument("--deadletter-topic", default=DEADLETTER)
    parser.add_argument("--group-id", default="ecpds-replicator")


if __name__ == "__main__":
    main("ecpds-replicator", "Replica copies.", serve, options=options)
