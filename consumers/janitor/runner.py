"""The janitor runner: replay -> evolve -> sweep on a timer -> publish / delete -> publish.

Wiring: an ``EventFeed`` replays ``ecpds.datafiles`` and ``ecpds.transfers`` from the beginning
into a ``JanitorState`` (``core.evolve``), keeps following them, and every ``interval`` seconds,
once caught up, ``core.sweep`` decides on the state consumed so far. Rules kept:

- **Effects are events.** Expiries are published (``TransferExpired`` to the transfers topic
  keyed by destination, ``DataFileExpired`` to the data files topic) and folded into the state
  at once; the janitor reads them back later, which changes nothing (``evolve`` is idempotent).
- **Delete, then record.** For a deletion the object is deleted from the store first, and
  ``DataFileDeleted`` is published only after the delete returned (an object already missing
  counts as deleted). A crash in between leaves no ``DataFileDeleted``: after the restart the
  replay re-derives the same decision, the store answers "not found", and the event is
  published then, once. A crash after the publish replays the event, so nothing is deleted
  twice. Nothing is committed anywhere: the log is the janitor's only memory.
- **Failures wait for the next sweep.** A failed publish is logged and the rest of the sweep
  abandoned; a failed delete (a replica store unreachable) is logged and skipped, so one store
  down does not stop collection in the others. Either decision is still derivable from the
  state, so the next sweep tries again. No decision is dropped.
- **Temporary files movers left** (``temporaries``): once a transfer is finished, the names
  its unsuccessful attempts recorded are deleted on their hosts (``HostFileRemover``); a host
  down is tried again at the next sweep, a refusal is logged and given up.
- One janitor instance per deployment: it reads every partition (data files are keyed by id,
  transfers by destination, so no partitioning of one matches the other).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import is_retriable, stop_on_signals
from bus.errors import EcpdsError
from bus.events.datafiles import DataFileExpired
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.settings import Settings
from bus.topics import DATAFILES, TRANSFERS, TopicSpec
from consumers.janitor import core, temporaries
from consumers.janitor.feed import EventFeed
from consumers.janitor.hosts import HostFiles
from consumers.janitor.ports import Clock, HostFileRemover, Stores, utc_now
from store.errors import ObjectNotFound
from store.local import LocalStore
from store.named import NamedStores
from store.objects import object_id
from store.ports import ObjectStore

log = get_logger(__name__)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    transfers_expired: int = 0
    files_expired: int = 0
    deleted: int = 0
    failed: bool = False
    temporaries_removed: int = 0


class JanitorRunner:
    """Garbage collection of expired and delivered data files (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        store: ObjectStore,
        config: ConfigSource,
        *,
        stores: Stores | None = None,
        publisher: Publisher | None = None,
        datafiles_topic: str = DATAFILES,
        transfers_topic: str = TRANSFERS,
        specs: Sequence[TopicSpec] | None = None,
        interval: float = 60.0,
        settle: timedelta = core.SETTLE,
        source: str = "janitor",
        clock: Clock = utc_now,
        hosts: HostFileRemover | None = None,
    ) -> None:
        self.state = core.JanitorState()
        self.temporaries = temporaries.Temporaries()
        self._hosts = hosts  # None: temporary files on hosts are not swept
        self._store = store
        self._stores = stores  # the other stores (replicas), by name
        self._config = config
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(bootstrap, client_id=source, specs=specs)
        self._feed = EventFeed(bootstrap, (datafiles_topic, transfers_topic))
        self._datafiles = datafiles_topic
        self._transfers = transfers_topic
        self._interval = interval
        self._settle = settle
        self._source = source
        self._clock = clock
        self._stopping = asyncio.Event()
        self.sweeps = 0
        self.last_report = SweepReport()

    def stop(self) -> None:
        """Finish the sweep or poll in hand, then return from ``run``."""
        self._stopping.set()

    async def run(self) -> None:
        """Replay, then follow and sweep every ``interval`` seconds until ``stop``."""
        await self._publisher.start()
        await self._feed.start()
        try:
            next_sweep = 0.0
            while not self._stopping.is_set():
                wait = max(0.0, next_sweep - time.monotonic()) if self._feed.caught_up else 0.2
                for event in await self._feed.poll(min(wait, 0.5)):
                    core.evolve(self.state, event)
                    temporaries.evolve(self.temporaries, event)
                if self._feed.caught_up and time.monotonic() >= next_sweep:
                    self.last_report = await self.sweep_once()
                    self.sweeps += 1
                    next_sweep = time.monotonic() + self._interval
        finally:
            await self._feed.stop()
            if self._own_publisher:
                await self._publisher.stop()

    async def sweep_once(self) -> SweepReport:
        """One sweep over the state consumed so far."""
        now = self._clock()
        destinations = self._config.view.destinations
        plan = core.sweep(self.state, now, destinations, self._source, self._settle)
        expired_files = sum(isinstance(e, DataFileExpired) for e in plan.events)
        done, failed = 0, False
        try:
            for event in plan.events:
                if isinstance(event, DataFileExpired):
                    await self._publisher.publish(self._datafiles, event.data_file_id, event)
                else:
                    await self._publisher.publish(self._transfers, event.destination, event)
                core.evolve(self.state, event)
            for deletion in plan.deletions:
                try:
                    await self._delete(deletion)
                except EcpdsError as error:
                    failed = True
                    log.warning(
                        "delete failed, retrying at the next sweep",
                        data_file_id=deletion.data_file_id,
                        store=deletion.copy.store,
                        error=str(error),
                    )
                    continue
                record = core.deleted(deletion, self._clock(), self._source)
                await self._publisher.publish(self._datafiles, deletion.data_file_id, record)
                core.evolve(self.state, record)
                done += 1
                log.info(
                    "data file deleted",
                    data_file_id=deletion.data_file_id,
                    reason=deletion.reason,
                    store=deletion.copy.store,
                )
        except EcpdsError as error:
            # the decisions stay derivable from the state: the next sweep tries again
            log.warning("sweep interrupted, retrying at the next one", error=str(error))
            return SweepReport(len(plan.events) - expired_files, expired_files, done, True)
        removed = await self._remove_temporaries(now)
        return SweepReport(len(plan.events) - expired_files, expired_files, done, failed, removed)

    async def _remove_temporaries(self, now: datetime) -> int:
        """Delete the temporary files of finished transfers on their hosts; how many."""
        if self._hosts is None:
            return 0
        for leftover in temporaries.expired(self.temporaries, now):
            log.warning("temporary file given up", host=leftover.host_id, path=leftover.path)
        count = 0
        hosts = self._config.view.hosts
        down: set[str] = set()  # one failed try per host and sweep
        for leftover in temporaries.due(self.temporaries, now, self._settle):
            host = hosts.get(leftover.host_id)
            if host is None:  # the host was removed: nothing to connect to
                temporaries.removed(self.temporaries, leftover)
                continue
            if host.id in down:
                continue
            try:
                await self._hosts.remove(host, leftover.path)
            except EcpdsError as error:
                if is_retriable(error):
                    down.add(host.id)  # the host is down: the next sweep tries again
                    continue
                log.warning(
                    "temporary file not removed",
                    transfer_id=leftover.transfer_id,
                    host=leftover.host_id,
                    path=leftover.path,
                    error=str(error),
                )
            else:
                count += 1
                log.info(
                    "temporary file removed",
                    transfer_id=leftover.transfer_id,
                    host=leftover.host_id,
                    path=leftover.path,
                )
            temporaries.removed(self.temporaries, leftover)
        return count

    async def _delete(self, deletion: core.Deletion) -> None:
        name = deletion.copy.store
        # without stores by name, every copy is taken to be in the one store given
        if self._stores is None or name == self._store.name:
            store = self._store
        else:
            store = self._stores.store_for(name)
        with contextlib.suppress(ObjectNotFound):  # already deleted (e.g. before a crash)
            await store.delete(object_id(deletion.copy.guid))


async def serve(settings: Settings, interval: float) -> None:
    """Run the janitor on the local store with the live configuration until a stop signal."""
    store = LocalStore(settings.store_root)
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        replicas = NamedStores(settings.store_root, config=live, key_file=settings.key_file)
        hosts = HostFiles(settings.key_file)
        runner = JanitorRunner(
            settings.kafka_bootstrap,
            store,
            live,
            stores=replicas,
            interval=interval,
            source=f"janitor/{settings.instance}",
            hosts=hosts,
        )
        stop_on_signals(runner.stop)
        log.info("janitor sweeping", interval=interval, store=store.name)
        try:
            await runner.run()
        finally:
            await hosts.close()
            await replicas.close()
            await store.close()


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()  # first: the defaults below are its values
    parser = argparse.ArgumentParser(prog="ecpds-janitor", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--interval",
        type=float,
        default=settings.janitor_interval,
        help="seconds between sweeps (ECPDS_JANITOR_INTERVAL, default 60)",
    )
    args = parser.parse_args(argv)
    configure(settings)
    asyncio.run(serve(settings, args.interval))


if __name__ == "__main__":
    main()
