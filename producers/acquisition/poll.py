"""One poll of one acquisition host for one destination: list, decide, retrieve, report.

Order of effects (the rule this module keeps; "store first, notify second"):

1. list every line of the Directory field within ``acquisition.maximumDuration`` (connecting
   included): a hung provider is cut off there, the poll reports ``timed_out`` and the host is
   polled again at its next turn; a failing line is reported and the others still listed;
2. publish one ``ListingCompleted`` (counts, duration, errors), then, per new file only,
   ``FileDiscovered`` — a poll that finds nothing new publishes nothing else;
3. stream each file from the provider into the ingest service, which registers it, stores it
   durably and queues its transfers (destination + aliases, or ``HOLD`` on standby); the
   listed size is checked against the bytes received *inside* the stream, so a short or
   broken download makes the ingest fail the registration and nothing is queued;
4. publish ``RetrievalSucceeded`` (after deleting the remote original when
   ``acquisition.deleteoriginal`` is set) or ``RetrievalFailed`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bus.events.acquisition import (
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
from bus.templates.listing import ListingDefaults, ListingSpec, parse_directory
from producers.acquisition.core import (
    DEFAULT_MAXIMUM_DURATION_MS,
    Candidate,
    Known,
    Options,
    discover,
    parse_options,
)
from producers.acquisition.state import AcquisitionState, Key, requester
from producers.acquisition.streams import Tally, close_quietly, remote_body
from producers.ingest.core import Refused, Submission
from producers.ingest.service import Failure, IngestService, Receipt
from protocols.base import Connection, Location, TransferError
from protocols.registry import connect

log = get_logger(__name__)


class _Skip(Exception):
    """The host's options are malformed: nothing is listed (the error is reported)."""


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
        found: dict[str, tuple[Candidate, Options, DiscoveryReason]] = {}
        taken = {target for d, target in self.in_flight if d == destination}
        timed_out = False
        conn: Connection | None = None
        location: Location | None = None

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
                        count, chosen = discover(
                            entries, listing, options, destination, started, known, taken
                        )
                        matched += count
                        for c, reason in chosen:
                            found[c.target] = (c, options, reason)
                            taken.add(c.target)
        except TimeoutError:
            timed_out = True
            found.clear()  # a partial listing is not acted on: the next poll lists it whole
            errors.append(f"listing cut off after {limit_ms} ms")
        except _Skip:
            pass
        except Exception as error:  # a bad template, a refused connection: reported, retried
            errors.append(f"{type(error).__name__}: {error}")
        new = list(found.values())
        completed = ListingCompleted(
            envelope=self._envelope(host.id),
            host_id=host.id,
            destination=destination,
            started_at=started,
            duration_ms=int((time.monotonic() - t0) * 1000),
            entries_listed=listed,
            files_matched=matched,
            files_new=len(new),
            errors=tuple(errors),
            timed_out=timed_out,
        )
        succeeded: list[str] = []
        failed: list[str] = []
        try:
            await self.publisher.publish(self.topic, host.id, completed)
            if timed_out or conn is None or location is None:
                return PollReport(completed)
            for c, options, reason in new:
                ok, conn = await self._acquire(
                    conn, location, host, destination, c, options, reason, completed
                )
                (succeeded if ok else failed).append(c.path)
        finally:
            if conn is not None:
                await close_quietly(conn)
        return PollReport(completed, tuple(succeeded), tuple(failed))

    async def _acquire(
        self,
        conn: Connection,
        location: Location,
        host: Host,
        destination: str,
        c: Candidate,
        options: Options,
        reason: DiscoveryReason,
        listing: ListingCompleted,
    ) -> tuple[bool, Connection]:
        deadline = time.monotonic() + options.retrieval_maximum_duration_ms / 1000
        expected = c.size if options.size_check else None

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
            reason,
            lambda t: remote_body(conn, c.path, expected, deadline, t),
            after_store=delete if options.delete_original else None,
            cause=listing.envelope.event_id,
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
    ) -> tuple[bool, Tally]:
        """Discover, stream ``body`` into the ingest service, report the outcome.

        ``after_store`` runs once the file is stored and queued (the delete of the original)
        and says whether it did its job. The key is in flight meanwhile: no poll takes it.
        Causation chain (one file's path, event to event): ``cause`` (the listing that found
        it) -> ``FileDiscovered`` -> ``DataFileRegistered`` (the ingest's chain
        follows) and -> ``RetrievalSucceeded``/``RetrievalFailed``."""
        key = (destination, c.target)
        self.in_flight.add(key)
        try:
            return await self._retrieve(
                host_id, destination, c, options, reason, body, after_store, data_id, checksum,
                cause,
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
        outcome = await self.service.submit(submission, body(tally))
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
                ),
            )
            return True, tally
        if isinstance(outcome, Refused):
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
                received_size=tally.size,
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
