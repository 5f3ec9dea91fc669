"""One poll of one acquisition host for one destination: list, decide, retrieve, report.

Order of effects (the rule this module keeps; "store first, notify second"):

1. list every line of the Directory field within ``acquisition.maximumDuration`` (connecting
   included): a hung provider is cut off there, the poll reports ``timed_out`` and the host is
   polled again at its next turn; a failing line is reported and the others still listed;
2. where the listing rounds times down (FTP ``LIST``), ask the exact time (``MDTM``) of the
   acquired files whose listed minute covers their recorded time (at most ``EXACT_PER_POLL``
   a poll, the newest first; one whose minute is over is not asked again while it lists the
   same), and of every file about to be taken, so the recorded time is exact;
3. take a new file only once it is known whole (``core.vouched``, else stable): a file first
   seen, or seen changed, waits ``stableInterval`` — within this poll (listed again after the
   wait) when the host's polling period is longer than that, else until a later poll;
4. publish one ``ListingCompleted`` (counts, duration, errors), then, per file taken only,
   ``FileDiscovered`` — a poll that takes nothing publishes nothing else;
5. ask the file's size just before retrieving it: another size than listed fails the
   retrieval (retriable, ``SizeMismatch``) before anything is registered; then stream the file
   into the ingest service, which registers it, stores it durably and queues its transfers
   (destination + aliases, or ``HOLD`` on standby); the listed size is checked against the
   bytes received *inside* the stream, so a short or long download makes the ingest fail the
   registration and nothing is stored or queued;
6. publish ``RetrievalSucceeded`` with the rule that vouched the file whole (after deleting the
   remote original when ``acquisition.deleteoriginal`` is set) or ``RetrievalFailed`` with the
   reason; a failed retriable one is tried again at a later poll, stable again first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from bus.events.acquisition import (
    Completeness,
    DiscoveryReason,
    FileDiscovered,
    ListingCompleted,
    RetrievalFailed,
    RetrievalSucceeded,
)
from bus.events.base import Envelope, Event
from bus.events.config import Host
from bus.events.datafiles import SubmissionMode
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.templates.listing import ListingDefaults, ListingSpec, ResolvedListing, parse_directory
from producers.acquisition.core import (
    DEFAULT_MAXIMUM_DURATION_MS,
    DEFAULT_POLLING_MS,
    Candidate,
    Known,
    Options,
    Sightings,
    candidate,
    discover,
    parse_options,
    reason_for,
    settled,
    vouched,
)
from producers.acquisition.state import AcquisitionState, Key, requester
from producers.acquisition.streams import SizeMismatch, Tally, close_quietly, remote_body
from producers.ingest.core import Refused, Submission
from producers.ingest.service import Failure, IngestService, Receipt
from protocols.base import Connection, Entry, Location, TransferError
from protocols.registry import connect

log = get_logger(__name__)

# Exact times asked of ambiguous acquired files per poll: a restart forgets which were settled,
# and a directory of many files is then checked over several polls, not in one
EXACT_PER_POLL = 200
# How far behind ours the provider's clock may be when a minute counts as over (``settled``)
CLOCK_MARGIN = timedelta(seconds=60)


class _Skip(Exception):
    """The host's options are malformed: nothing is listed (the error is reported)."""


@runtime_checkable
class ExactTimes(Protocol):
    """A connection that tells a file's exact modification time (FTP ``MDTM``)."""

    async def mtime(self, path: str) -> datetime | None: ...


@dataclass(slots=True)
class _Found:
    """A file to take: its candidate, why, the entry as listed and the line that listed it."""

    candidate: Candidate
    options: Options
    reason: DiscoveryReason
    entry: Entry
    line: int  # index in the poll's lines
    completeness: Completeness | None = None


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one poll did (the runner logs it; tests read it)."""

    listing: ListingCompleted
    succeeded: tuple[str, ...] = ()  # remote paths
    failed: tuple[str, ...] = ()


@dataclass(slots=True)
class Poller:
    """Polls hosts: shared by every job of a runner (holds the in-flight keys)."""

    service: IngestService
    state: AcquisitionState
    publisher: Publisher
    topic: str
    source: str = "acquisition"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    in_flight: set[Key] = field(default_factory=set)
    sightings: Sightings = field(default_factory=Sightings)
    # per (host, destination), the acquired files whose exact time was checked once their
    # minute was over: target -> (size, listed time) then; not asked again while they list
    # the same, and forgotten once a complete poll no longer lists them
    settled: dict[tuple[str, str], dict[str, tuple[int, datetime | None]]] = field(
        default_factory=dict
    )

    def _envelope(self, correlation: str, causation: str | None = None) -> Envelope:
        return Envelope(
            event_id=str(uuid.uuid4()),
            occurred_at=self.clock(),
            source=self.source,
            correlation_id=correlation,
            causation_id=causation,
        )

    async def _publish(self, host_id: str, event: Event) -> None:
        await self.publisher.publish(self.topic, host_id, event)
        self.state.apply(event)  # at once: the next poll must not rediscover it

    async def poll(
        self, host: Host, destination: str, locate: Callable[[], Location]
    ) -> PollReport:
        """List ``host`` for ``destination`` and acquire what is new (module docstring)."""
        started, t0 = self.clock(), time.monotonic()
        errors: list[str] = []
        try:
            limit_ms = _options(host.options, {}).maximum_duration_ms
        except Exception as error:  # a malformed option: reported like any listing error
            limit_ms = DEFAULT_MAXIMUM_DURATION_MS
            errors.append(f"{type(error).__name__}: {error}")
        listed, matched = 0, 0
        found: dict[str, _Found] = {}
        lines: list[tuple[ResolvedListing, Options]] = []
        unsure: list[tuple[Entry, Known, int]] = []
        taken = {target for d, target in self.in_flight if d == destination}
        timed_out = False
        conn: Connection | None = None
        location: Location | None = None
        ready: list[_Found] = []

        def known(target: str) -> Known | None:
            return self.state.get(destination, target)

        try:
            async with asyncio.timeout(limit_ms / 1000):
                if errors:
                    raise _Skip
                specs = _directory(host.directory)
                location = locate()
                conn = await connect(location)
                for spec in specs:
                    for listing in spec.expand(started, _defaults(host)):
                        options = _options(host.options, listing.options)
                        try:
                            entries = await conn.list(listing.path, recursive=options.recursive)
                        except TransferError as error:
                            errors.append(f"{listing.path}: {type(error).__name__}: {error}")
                            continue
                        listed += len(entries)
                        lines.append((listing, options))
                        d = discover(entries, listing, options, destination, started, known, taken)
                        matched += d.matched
                        for c, reason, entry in d.new:
                            found[c.target] = _Found(c, options, reason, entry, len(lines) - 1)
                            taken.add(c.target)
                        unsure.extend((e, k, len(lines) - 1) for e, k in d.unsure)
                if isinstance(conn, ExactTimes):
                    await self._exact(conn, host.id, destination, lines, unsure, found, errors)
                ready = await self._whole(conn, host, destination, lines, found, limit_ms, t0)
                if not errors:
                    offered = {(host.id, destination, t) for t in found}
                    self.sightings.keep((host.id, destination), offered)
                if isinstance(conn, ExactTimes):
                    for item in ready:
                        await self._exact_time(conn, item)
        except TimeoutError:
            timed_out = True
            ready.clear()  # a partial listing is not acted on: the next poll lists it whole
            errors.append(f"listing cut off after {limit_ms} ms")
        except _Skip:
            pass
        except Exception as error:  # a bad template, a refused connection: reported, retried
            errors.append(f"{type(error).__name__}: {error}")
        completed = ListingCompleted(
            envelope=self._envelope(host.id),
            host_id=host.id,
            destination=destination,
            started_at=started,
            duration_ms=int((time.monotonic() - t0) * 1000),
            entries_listed=listed,
            files_matched=matched,
            files_new=len(ready),
            errors=tuple(errors),
            timed_out=timed_out,
        )
        succeeded: list[str] = []
        failed: list[str] = []
        try:
            await self.publisher.publish(self.topic, host.id, completed)
            if timed_out or conn is None or location is None:
                return PollReport(completed)
            for item in ready:
                ok, conn = await self._acquire(conn, location, host, destination, item, completed)
                (succeeded if ok else failed).append(item.candidate.path)
        finally:
            if conn is not None:
                await close_quietly(conn)
        return PollReport(completed, tuple(succeeded), tuple(failed))

    async def _exact(
        self,
        conn: ExactTimes,
        host_id: str,
        destination: str,
        lines: list[tuple[ResolvedListing, Options]],
        unsure: list[tuple[Entry, Known, int]],
        found: dict[str, _Found],
        errors: list[str],
    ) -> None:
        """Ask the exact time of acquired files a rounded-down listing cannot tell rewritten
        within their minute; a rewritten one joins ``found``, one whose minute is over is
        settled (not asked again while it lists the same)."""
        now = self.clock()
        asked = 0
        settled_before = self.settled.get((host_id, destination), {})
        still: dict[str, tuple[int, datetime | None]] = {}
        unsure.sort(key=lambda u: u[1].acquired_mtime or now, reverse=True)  # newest first
        for entry, record, line in unsure:
            listing, options = lines[line]
            c = candidate(entry, listing, options, destination, now)
            target = c.target
            if settled_before.get(target) == (entry.size, entry.mtime):
                still[target] = (entry.size, entry.mtime)
                continue
            if target in found:
                continue
            if asked >= EXACT_PER_POLL:
                continue  # asked at a later poll (the settled ones after it are still kept)
            asked += 1
            try:
                exact = await conn.mtime(c.path)
            except TransferError as error:
                log.debug("no exact time", host=host_id, path=c.path, error=str(error))
                continue
            if exact is None:  # the server cannot tell better than its listing: settled
                still[target] = (entry.size, entry.mtime)
                continue
            reason = reason_for(record, entry.size, exact, options)
            if reason is not None:
                found[target] = _Found(replace(c, mtime=exact), options, reason, entry, line)
            elif record.acquired_mtime is not None and settled(
                record.acquired_mtime, self.clock(), CLOCK_MARGIN
            ):
                still[target] = (entry.size, entry.mtime)
        if errors:  # a line not listed: what it would have shown is kept
            still = settled_before | still
        if still:
            self.settled[(host_id, destination)] = still
        else:
            self.settled.pop((host_id, destination), None)

    async def _exact_time(self, conn: ExactTimes, item: _Found) -> None:
        """Record the exact time of a file taken from a rounded-down listing (kept as listed
        when the server cannot tell)."""
        c = item.candidate
        if item.entry.exact_time or c.mtime != item.entry.mtime:
            return
        with contextlib.suppress(TransferError):
            exact = await conn.mtime(c.path)
            if exact is not None:
                item.candidate = replace(c, mtime=exact)

    async def _whole(
        self,
        conn: Connection,
        host: Host,
        destination: str,
        lines: list[tuple[ResolvedListing, Options]],
        found: dict[str, _Found],
        limit_ms: int,
        t0: float,
    ) -> list[_Found]:
        """The files of ``found`` known whole now, each with the rule that says so; those
        waiting to be seen stable are listed again in this poll after the wait when the host
        is polled less often than that (and the poll's time allows), else left to later polls."""
        ready: list[_Found] = []
        waiting: dict[str, float] = {}
        now = time.monotonic()
        for target, item in found.items():
            item.completeness = vouched(item.options)
            if item.completeness is not None:
                ready.append(item)
                continue
            interval = item.options.stable_interval_ms / 1000
            wait = self.sightings.stable_in(
                (host.id, destination, target), item.entry, now, interval
            )
            if wait <= 0:
                item.completeness = Completeness.STABLE
                ready.append(item)
            else:
                waiting[target] = wait
        if not waiting:
            return ready
        pause = max(waiting.values())
        period = (host.polling_frequency_ms or DEFAULT_POLLING_MS) / 1000
        spent = time.monotonic() - t0
        if pause >= period or spent + 2 * pause >= limit_ms / 1000:
            return ready  # a later poll sees them again soon enough (or this one cannot wait)
        await asyncio.sleep(pause)
        for line in sorted({found[t].line for t in waiting}):
            listing, options = lines[line]
            try:
                entries = await conn.list(listing.path, recursive=options.recursive)
            except TransferError:
                continue  # reported by the next poll's listing
            again = {e.name: e for e in entries}
            now = time.monotonic()
            for target in [t for t in waiting if found[t].line == line]:
                item = found[target]
                entry = again.get(item.entry.name)
                if entry is None:
                    continue  # gone
                interval = options.stable_interval_ms / 1000
                key = (host.id, destination, target)
                if self.sightings.stable_in(key, entry, now, interval) <= 0:
                    item.completeness = Completeness.STABLE
                    ready.append(item)
        return ready

    async def _acquire(
        self,
        conn: Connection,
        location: Location,
        host: Host,
        destination: str,
        item: _Found,
        listing: ListingCompleted,
    ) -> tuple[bool, Connection]:
        c, options = item.candidate, item.options
        deadline = time.monotonic() + options.retrieval_maximum_duration_ms / 1000
        expected = c.size if options.size_check else None
        # taken or failed, a later version must be seen whole (and its time checked) anew
        self.sightings.forget((host.id, destination, c.target))
        self.settled.get((host.id, destination), {}).pop(c.target, None)

        async def check() -> TransferError | None:
            try:
                size = await conn.size(c.path)
            except TransferError:
                return None  # no size to ask here: the stream's own count still checks
            if size == c.size:
                return None
            return SizeMismatch(f"{c.path}: listed {c.size} bytes, {size} just before retrieval")

        async def delete() -> bool:
            try:
                await conn.delete(c.path)
                return True
            except TransferError as error:
                log.warning("cannot delete the original", path=c.path, error=str(error))
                return False

        ok, tally = await self.retrieve(
            host.id,
            destination,
            c,
            options,
            item.reason,
            lambda t: remote_body(conn, c.path, expected, deadline, t),
            after_store=delete if options.delete_original else None,
            cause=listing.envelope.event_id,
            completeness=item.completeness,
            check=check if options.size_check else None,
        )
        if not ok and tally.error is not None and getattr(tally.error, "retriable", True):
            # the session's state is unknown after a broken download: start a fresh one
            await close_quietly(conn)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(options.retrieval_maximum_duration_ms / 1000):
                    conn = await connect(location)
        return ok, conn

    async def retrieve(
        self,
        host_id: str,
        destination: str,
        c: Candidate,
        options: Options,
        reason: DiscoveryReason,
        body: Callable[[Tally], AsyncIterator[bytes]],
        *,
        after_store: Callable[[], Awaitable[bool]] | None = None,
        data_id: str | None = None,
        checksum: tuple[str, str] | None = None,
        cause: str | None = None,
        completeness: Completeness | None = None,
        check: Callable[[], Awaitable[TransferError | None]] | None = None,
    ) -> tuple[bool, Tally]:
        """Discover, stream ``body`` into the ingest service, report the outcome.

        ``after_store`` runs once the file is stored and queued (the delete of the original)
        and says whether it did its job. The key is in flight meanwhile: no poll takes it.
        Causation chain (one file's path, event to event): ``cause`` (the listing that found
        it) -> ``FileDiscovered`` -> ``DataFileRegistered`` (the ingest's chain
        follows) and -> ``RetrievalSucceeded``/``RetrievalFailed``. ``completeness`` is the rule
        that vouched the file whole; ``check`` runs before anything is registered (the size
        asked again) and fails the retrieval with the error it returns."""
        key = (destination, c.target)
        self.in_flight.add(key)
        try:
            return await self._retrieve(
                host_id, destination, c, options, reason, body, after_store, data_id, checksum,
                cause, completeness, check,
            )  # fmt: skip
        finally:
            self.in_flight.discard(key)

    async def _retrieve(
        self,
        host_id: str,
        destination: str,
        c: Candidate,
        options: Options,
        reason: DiscoveryReason,
        body: Callable[[Tally], AsyncIterator[bytes]],
        after_store: Callable[[], Awaitable[bool]] | None,
        data_id: str | None,
        checksum: tuple[str, str] | None,
        cause: str | None,
        completeness: Completeness | None,
        check: Callable[[], Awaitable[TransferError | None]] | None,
    ) -> tuple[bool, Tally]:
        discovered = FileDiscovered(
            envelope=self._envelope(f"{destination}/{c.target}", cause),
            host_id=host_id,
            destination=destination,
            path=c.path,
            name=c.name,
            size=c.size,
            modified_at=c.mtime,
            reason=reason,
            target=c.target,
            data_id=data_id,
            checksum_method=checksum[0] if checksum else None,
            checksum_value=checksum[1] if checksum else None,
            metadata=dict(c.metadata),
        )
        await self._publish(host_id, discovered)
        t0 = time.monotonic()
        tally = Tally()
        changed = await check() if check is not None else None
        submission = Submission(
            destination=destination,
            target=c.target,
            priority=options.priority,
            lifetime_ms=options.lifetime_ms,
            metadata=c.metadata,
            standby=options.standby,
            notify=options.notify,
            mode=SubmissionMode.REQUEUE
            if reason is DiscoveryReason.REWRITTEN
            else SubmissionMode.NORMAL,
            size=c.size,
            requested_by=requester(host_id),
            original=c.path,
            acquisition_host=host_id,
            causation_id=discovered.envelope.event_id,
        )
        outcome = None
        if changed is None:
            outcome = await self.service.submit(submission, body(tally))
        else:
            tally.error = changed
        duration = int((time.monotonic() - t0) * 1000)
        cause = discovered.envelope.event_id
        if isinstance(outcome, Receipt):
            deleted = await after_store() if after_store is not None else False
            await self._publish(
                host_id,
                RetrievalSucceeded(
                    envelope=self._envelope(outcome.data_file_id, cause),
                    host_id=host_id,
                    destination=destination,
                    path=c.path,
                    data_file_id=outcome.data_file_id,
                    size=outcome.size,
                    duration_ms=duration,
                    deleted_original=deleted,
                    completeness=completeness,
                ),
            )
            return True, tally
        received: int | None = tally.size
        if changed is not None:  # nothing registered: the file changed since it was listed
            error_class, message, retriable = type(changed).__name__, str(changed), True
            data_file_id, received = None, None
        elif isinstance(outcome, Refused):
            error_class, message, retriable = f"Refused.{outcome.reason}", outcome.message, False
            data_file_id = None
        else:
            assert isinstance(outcome, Failure)
            broke = tally.error
            error_class = type(broke).__name__ if broke is not None else f"Failed.{outcome.stage}"
            message, retriable = outcome.message, outcome.retriable
            if broke is not None:
                retriable = bool(getattr(broke, "retriable", retriable))
            data_file_id = outcome.data_file_id
        await self._publish(
            host_id,
            RetrievalFailed(
                envelope=self._envelope(data_file_id or f"{destination}/{c.target}", cause),
                host_id=host_id,
                destination=destination,
                path=c.path,
                error_class=error_class,
                message=message,
                retriable=retriable,
                duration_ms=duration,
                data_file_id=data_file_id,
                expected_size=c.size,
                received_size=received,
            ),
        )
        log.warning("retrieval failed", host=host_id, path=c.path, error=message)
        return False, tally


@functools.lru_cache(maxsize=4096)
def _directory(text: str) -> list[ListingSpec]:
    # compiled once per Directory field, not at every poll of every host
    return parse_directory(text)


@functools.lru_cache(maxsize=4096)
def _cached_options(
    host: tuple[tuple[str, str], ...], line: tuple[tuple[str, str], ...]
) -> Options:
    return parse_options(dict(host), dict(line))


def _options(host: Mapping[str, str], line: Mapping[str, str]) -> Options:
    return _cached_options(tuple(sorted(host.items())), tuple(sorted(line.items())))


def _defaults(host: Host) -> ListingDefaults:
    o = host.options
    return ListingDefaults(
        dateformat=o.get("acquisition.dateformat", "yyyyMMdd"),
        datedelta=o.get("acquisition.datedelta", "0"),
        values={
            "host[name]": host.id,
            "host[nickname]": host.nickname,
            "host[host]": host.address,
            "host[login]": host.login or "",
            "host[comment]": host.comment,
            "host[networkCode]": host.network_code or "",
            "transferMethod[name]": host.protocol,
            "ectransModule[name]": host.protocol,
        },
    )


__all__ = ["PollReport", "Poller"]
