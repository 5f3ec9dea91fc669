"""Runs acquisition: ``python -m producers.acquisition.runner``.

Every active acquisition host is polled for each active destination it is associated with,
every ``polling_frequency_ms`` (default 10 minutes). Rules kept:

- one timer heap for all jobs and one sleeping task: an idle host costs nothing between polls
  (no task, no loop of its own); configuration changes wake the scheduler to add, change or
  drop jobs;
- a job's next poll is scheduled when its poll ends, so polls of one host never overlap;
- at most ``limit`` polls run at once; a hung provider holds one slot only until its listing's
  maximum duration cuts it off (``producers.acquisition.poll``);
- an SFTP host's key is learnt on the first connection and pinned afterwards
  (``bus.config.hostkeys``: a changed key fails the poll as ``HostKeyChanged`` until an
  operator trusts it), as in the movers;
- start order: topics exist -> live configuration read to its end -> publisher -> the ingest
  index and the acquisition dedup state read from ``ecpds.acquisition``, ``ecpds.datafiles``
  and ``ecpds.transfers`` to their end (no local state: a restart or a failover rebuilds the
  same decisions) -> polling. The ingest service's ``recover`` is not run here: the ingest API
  owns it (it would fail another instance's registrations in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from bus.config.hostkeys import HostKeyBook
from bus.config.secrets import host_password
from bus.config.view import ConfigView, LiveConfig, config_spec
from bus.consumer import stop_on_signals
from bus.events import Event
from bus.events.config import Host
from bus.logging import configure, get_logger
from bus.settings import Settings
from bus.topics import ACQUISITION, CONFIG, DATAFILES, TRANSFERS, TopicSpec, apply_topics, catalogue
from producers.acquisition.hosts import Job, jobs_of
from producers.acquisition.poll import Poller, PollReport
from producers.acquisition.state import AcquisitionState
from producers.acquisition.wis2 import Subscriber
from producers.ingest.core import requested_by_acquisition
from producers.ingest.service import IngestTopics
from producers.ingest.stack import start_ingest
from protocols.base import Location
from protocols.location import location_for
from protocols.sftp import watch_host_keys

log = get_logger(__name__)


@dataclass
class Scheduler:
    """The timer heap of every job (see the module rules)."""

    poller: Poller
    config: LiveConfig
    key_file: Path | None = None
    limit: int = 16
    reports: list[PollReport] = field(default_factory=list)  # the latest few, for tests
    polls: int = 0
    grace_s: float = 30.0
    host_keys: HostKeyBook | None = None  # pins SFTP host keys (learnt, trusted)
    _heap: list[tuple[float, int, Job]] = field(default_factory=list)
    _due: dict[Job, float] = field(default_factory=dict)
    _running: dict[Job, asyncio.Task[None]] = field(default_factory=dict)
    _subscribed: dict[Job, tuple[Host, asyncio.Task[None]]] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _jobs: tuple[ConfigView | None, dict[Job, int]] = (None, {})
    _subscribed_view: ConfigView | None = None
    _synced: dict[Job, int] | None = None

    def jobs(self) -> dict[Job, int]:
        """The jobs of the current configuration (computed once per configuration change)."""
        view = self.config.view
        if self._jobs[0] is not view:
            self._jobs = (view, jobs_of(view))
        return self._jobs[1]

    def _sync(self) -> dict[Job, int]:
        jobs = self.jobs()
        if self._synced is not jobs:
            # only when the configuration changed: a wake-up after a poll costs nothing here
            self._synced = jobs
            now = time.monotonic()
            for job in jobs:
                if job not in self._due and job not in self._running:
                    self._push(job, now)  # a new host is polled at once
            for job in list(self._due):
                if job not in jobs:
                    del self._due[job]  # its heap entry is dropped lazily when popped
        if self._subscribed_view is not self.config.view:
            self._sync_subscribers()
        return jobs

    def _sync_subscribers(self) -> None:
        view = self.config.view
        self._subscribed_view = view
        wanted = jobs_of(view, mqtt=True)
        for job, (host, task) in list(self._subscribed.items()):
            if job not in wanted or view.hosts.get(job[0]) != host or task.done():
                task.cancel()  # removed or changed (or ended): started again below
                del self._subscribed[job]
        for job in wanted:
            if job not in self._subscribed:
                host = view.hosts[job[0]]
                subscriber = Subscriber(self.poller, host, job[1])
                self._subscribed[job] = (host, asyncio.create_task(self._subscribe(subscriber)))

    async def _subscribe(self, subscriber: Subscriber) -> None:
        try:
            location = self._locate(subscriber.host)
            subscriber.password = location.password
            await subscriber.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # broker unreachable: tried again at the next wake-up
            log.error("cannot subscribe", host=subscriber.host.id, error=str(error))
            await asyncio.sleep(5)
            self._subscribed_view = None  # makes the next wake-up start it again
            self._wake.set()

    def _push(self, job: Job, due: float) -> None:
        self._due[job] = due
        heapq.heappush(self._heap, (due, next(self._seq), job))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; polls in flight are awaited before returning."""
        self.config.add_listener(lambda _view, _events: self._wake.set())
        slots = asyncio.Semaphore(self.limit)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                jobs = self._sync()
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due, _, job = heapq.heappop(self._heap)
                    if self._due.get(job) != due:
                        continue  # dropped or rescheduled
                    del self._due[job]
                    task = asyncio.create_task(self._poll(job, jobs[job], slots))
                    self._running[job] = task
                timeout = max(self._heap[0][0] - now, 0) if self._heap else None
                self._wake.clear()
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    [waker, stopping], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waker.cancel()
        finally:
            stopping.cancel()
            for _, task in self._subscribed.values():
                task.cancel()
            # polls in flight may finish (a cancelled retrieval would leave its registration
            # open); a listing is bounded by its maximum duration anyway
            running = [*self._running.values(), *(t for _, t in self._subscribed.values())]
            if running:
                await asyncio.wait(running, timeout=self.grace_s)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _poll(self, job: Job, period_ms: int, slots: asyncio.Semaphore) -> None:
        host_id, destination = job
        try:
            async with slots:
                host = self.config.view.hosts.get(host_id)
                if host is not None:
                    report = await self.poller.poll(host, destination, lambda: self._locate(host))
                    self.reports = [*self.reports[-99:], report]
                    self.polls += 1
                    listing = report.listing
                    busy = listing.files_new or listing.errors
                    # a poll that found nothing is the common case: it stays out of the log
                    (log.info if busy else log.debug)(
                        "listing completed",
                        host=host_id,
                        destination=destination,
                        listed=listing.entries_listed,
                        new=listing.files_new,
                        errors=len(listing.errors),
                        acquired=len(report.succeeded),
                        failed=len(report.failed),
                    )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a publish failure: the poll is retried at its next turn
            log.error("poll failed", host=host_id, destination=destination, error=str(error))
        finally:
            self._running.pop(job, None)
            if job in self.jobs():
                self._push(job, time.monotonic() + period_ms / 1000)
            self._wake.set()

    def _locate(self, host: Host) -> Location:
        location = self._location(host)
        if self.host_keys is None:
            return location
        pins = self.host_keys.options(host)
        return dataclasses.replace(location, options={**location.options, **pins})

    def _location(self, host: Host) -> Location:
        return location_for(host, host_password(host, self.key_file))


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Where acquisition reads and writes (defaults: the settings' topics and store)."""

    config_topic: str = CONFIG
    acquisition_topic: str = ACQUISITION
    topics: IngestTopics = field(default_factory=IngestTopics)
    store_root: Path | None = None
    durable: bool = True
    limit: int = 16


def _specs(settings: Settings, options: RuntimeOptions) -> list[TopicSpec]:
    declared = {s.name: s for s in catalogue(settings.topic_partitions)}
    specs = [config_spec(options.config_topic)]
    for name, default in (
        (options.acquisition_topic, declared[ACQUISITION]),
        (options.topics.datafiles, declared[DATAFILES]),
        (options.topics.transfers, declared[TRANSFERS]),
    ):
        specs.append(
            declared.get(name)
            or TopicSpec(
                name,
                default.key,
                default.partitions,
                default.cleanup,
                default.retention_ms,
                default.namespaces,
                default.description,
            )
        )
    return specs


@contextlib.asynccontextmanager
async def running(
    settings: Settings, options: RuntimeOptions | None = None
) -> AsyncIterator[Scheduler]:
    """The started acquisition stack (call ``run`` on it); everything stopped on exit."""
    options = options or RuntimeOptions()
    await apply_topics(
        settings.kafka_bootstrap, _specs(settings, options), replication=settings.kafka_replication
    )
    source = f"acquisition/{settings.instance}"
    async with contextlib.AsyncExitStack() as stack:
        state = AcquisitionState()
        ingest = await start_ingest(
            stack,
            settings,
            source=source,
            config_topic=options.config_topic,
            topics=options.topics,
            store_root=options.store_root,
            durable=options.durable,
            max_puts=8,
            also=state.apply,
            also_topics=(options.acquisition_topic,),
        )
        live, publisher, service = ingest.config, ingest.publisher, ingest.service
        # registrations of acquisition a crash left open are failed (their keys are free for
        # the retry); the ingest API recovers its own. One acquisition runner per set of topics.
        await service.recover(owned=requested_by_acquisition)
        poller = Poller(service, state, publisher, options.acquisition_topic, source=source)

        async def record(key: str, event: Event) -> None:
            await publisher.publish(options.config_topic, key, event)

        host_keys = HostKeyBook(lambda: live.view, record, source)
        stack.callback(watch_host_keys(host_keys))
        stack.push_async_callback(host_keys.drain)  # before the publisher stops
        log.info("acquisition state ready", keys=len(state.known), files=len(ingest.index.files))
        yield Scheduler(poller, live, settings.key_file, options.limit, host_keys=host_keys)


async def serve(settings: Settings, options: RuntimeOptions) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop.set)  # SIGINT, SIGTERM, SIGHUP
    async with running(settings, options) as scheduler:
        log.info("acquisition polling", limit=options.limit)
        await scheduler.run(stop)
    log.info("acquisition stopped")


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-topic", default=CONFIG)
    parser.add_argument("--acquisition-topic", default=ACQUISITION)
    parser.add_argument("--datafiles-topic", default=DATAFILES)
    parser.add_argument("--transfers-topic", default=TRANSFERS)
    parser.add_argument("--store-root", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=16, help="polls running at once")
    args = parser.parse_args(argv)
    configure(settings)
    options = RuntimeOptions(
        config_topic=args.config_topic,
        acquisition_topic=args.acquisition_topic,
        topics=IngestTopics(args.datafiles_topic, args.transfers_topic),
        store_root=args.store_root,
        limit=args.limit,
    )
    uvloop.run(serve(settings, options))


if __name__ == "__main__":
    main()
