"""The ingest service: the I/O shell around ``core.decide`` that registers data files.

Order of effects for one submission (the rule this module keeps; "store first, notify second"):

1. ``decide``; a refusal publishes ``DataFileRegistrationRefused`` and stores nothing;
2. publish ``DataFileRegistered`` (and apply it to the index at once, so a concurrent
   duplicate is refused);
3. stream the bytes into the object store, which returns only once they are durable (fsynced);
   the size limit is enforced while streaming: passing ``max_file_size`` aborts the put;
4. publish ``DataFileStored`` (size, ADLER32, MD5, location) and, once it is acknowledged,
   the ``TransferQueued`` events (one per destination and alias, sent concurrently).

If the bytes fail midway (client gone, store error, too large) the store leaves no object and
``DataFileRegistrationFailed`` closes the registration, so no transfer is queued for bytes that
are not there. ``recover`` runs at start, after the index has read the log to its end: a
registration without its ``Stored`` (a crash in between) is marked failed ("interrupted before
storage") and any object under its id is deleted; a stored file whose transfers were never
queued (a crash after ``Stored``) gets them queued. It assumes one ingest service per set of
topics (another live instance's uploads in flight would be marked failed).

With a ``publish_timeout`` (the ingest API's), no submission waits longer than that for the
broker (rule "answer, never hang"): a ``Registered`` not acknowledged in time fails the
registration at once (``NotDurable``, retriable; its ``Failed`` follows it to the log whenever
the broker takes them); once the bytes are durable, ``Stored`` and the transfers are published
in the background until the broker acknowledges them, while the caller is told "not durable
yet". The same put again is then safe (rule "same bytes, same registration"): a duplicate of
a live registration whose bytes are the same (size and MD5) is answered with that registration
(``Receipt.repeated``), not refused, and a second file is never made; if the first is still
open, the repeat waits for it up to the timeout, then is told to retry.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from bus.config.source import ConfigSource
from bus.errors import EcpdsError, TransientError
from bus.events.base import Envelope
from bus.events.datafiles import (
    Checksums,
    DataFileRegistered,
    DataFileRegistrationFailed,
    DataFileRegistrationRefused,
    DataFileStored,
    RefusalReason,
    SubmissionMode,
)
from bus.events.transfers import TransferQueued
from bus.logging import get_logger
from bus.publisher import Published, Publisher
from bus.topics import DATAFILES, TRANSFERS
from producers.ingest.core import (
    Accepted,
    Plan,
    PlannedTransfer,
    Refused,
    Submission,
    decide,
    plan_transfers,
    too_large,
)
from producers.ingest.index import FileEntry, FileState, IngestIndex, TransferEntry
from store.objects import ObjectId, ObjectSpec, new_object_id
from store.ports import ObjectStore

log = get_logger(__name__)
T = TypeVar("T")


def _anyone(_registered: DataFileRegistered) -> bool:
    return True


def _nobody(_topic: str, _partition: int, _offset: int) -> None:
    return None


Applied = Callable[[str, int, int], None]


# a full store or quota is space the janitor frees: the client is told to come back (503)
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def failure_is_retriable(error: BaseException, stage: str) -> bool:
    """Whether a failed registration may succeed if the client tries again: the error's own
    ``retriable``, a full disk or quota anywhere in its chain of causes, else by stage (the
    body not received, the registration not acknowledged)."""
    cause: BaseException | None = error
    for _ in range(8):  # a chain is short; a bound keeps a cyclic one from looping
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno in _SPACE_ERRNOS:
            return True
        cause = cause.__cause__ or cause.__context__
    return bool(getattr(error, "retriable", stage in ("receive", "register")))


@dataclass(frozen=True, slots=True)
class IngestTopics:
    """Where the ingest events go (tests use their own topic names)."""

    datafiles: str = DATAFILES
    transfers: str = TRANSFERS


@dataclass(frozen=True, slots=True)
class Receipt:
    """A registered and stored data file, and the transfers queued for it; ``repeated`` when
    it was registered before, by an earlier put of the same bytes."""

    data_file_id: str
    file_instance: int
    size: int
    checksums: Checksums
    transfers: tuple[TransferQueued | TransferEntry, ...]
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    """A registration whose bytes could not be stored (nothing was queued)."""

    data_file_id: str
    stage: str
    message: str
    retriable: bool


Outcome = Receipt | Refused | Failure


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``recover`` did at start."""

    failed: tuple[str, ...]
    requeued: tuple[str, ...]


class NotDurable(TransientError):
    """The broker did not acknowledge an event within the publish timeout."""


class StreamTooLarge(Exception):
    """The body passed the destination's max file size while streaming (not retriable)."""

    retriable = False

    def __init__(self, size: int) -> None:
        super().__init__(f"stream passed {size} bytes")
        self.size = size


class _BodyBroken(Exception):
    """The submitted stream failed (client gone, connection reset)."""


class IngestService:
    """Registers data files: decide, publish, store, publish (see the module docstring)."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        store: ObjectStore,
        config: ConfigSource,
        index: IngestIndex,
        topics: IngestTopics | None = None,
        source: str = "ingest",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        applied: Applied | None = None,
        publish_timeout: float | None = None,
    ) -> None:
        """``applied`` hears where each event the service applied itself landed (the runtime
        passes ``LogFollower.applied``, so the index does not decode them again);
        ``publish_timeout`` bounds each wait for the broker (None: the producer's own)."""
        self._publisher = publisher
        self._store = store
        self._config = config
        self.index = index
        self.topics = topics or IngestTopics()
        self._source = source
        self._clock = clock
        self._applied = applied or _nobody
        self._timeout = publish_timeout
        self._background: set[asyncio.Task[Any]] = set()

    def _envelope(self, correlation: str, causation: str | None = None) -> Envelope:
        return Envelope(
            event_id=str(uuid.uuid4()),
            occurred_at=self._clock(),
            source=self._source,
            correlation_id=correlation,
            causation_id=causation,
        )

    def _announced(self, plan: Plan) -> bool:
        """Whether a destination of the plan publishes WIS2 notifications (MQTT without a
        static payload)."""
        destinations = self._config.view.destinations
        for planned in plan.transfers:
            dest = destinations.get(planned.destination)
            mqtt = dest.mqtt if dest is not None else None
            if mqtt is not None and mqtt.publish and mqtt.payload is None:
                return True
        return False

    async def submit(self, submission: Submission, body: AsyncIterable[bytes]) -> Outcome:
        """Register, store and queue one data file, or refuse it (see the module docstring)."""
        decision = decide(submission, self._config.view, self.index, self._clock())
        if isinstance(decision, Refused):
            if (
                decision.reason is RefusalReason.DUPLICATE
                and submission.mode is SubmissionMode.NORMAL
            ):
                return await self._again(submission, body, decision)
            await self.refuse(submission.destination, submission.target, decision, submission)
            return decision
        assert isinstance(decision, Accepted)
        plan, s = decision.plan, submission
        dfid = new_object_id()
        registered = DataFileRegistered(
            envelope=self._envelope(dfid, s.causation_id),
            data_file_id=dfid,
            destination=s.destination,
            target=s.target,
            transfer_group=plan.transfer_group,
            priority=plan.priority,
            expiry_time=plan.expiry_time,
            scheduled_time=plan.scheduled_time,
            standby=s.standby,
            asap=s.asap,
            notify=s.notify,
            submission_mode=s.mode,
            file_instance=plan.file_instance,
            version=s.version,
            original=s.original,
            expected_size=s.size,
            requested_by=s.requested_by,
            acquisition_host=s.acquisition_host,
            metadata=dict(s.metadata),
        )
        self.index.apply(registered)  # at once: a concurrent duplicate is refused from here on
        try:
            self._note(
                await self._acked(self._publisher.publish(self.topics.datafiles, dfid, registered))
            )
        except EcpdsError as error:
            return await self._fail(registered, "register", error, delete=False)
        started = time.monotonic()
        received = _Counter()
        spec = ObjectSpec(
            name=f"{s.destination}/{s.target}",
            source=s.original or "",
            metadata={**s.metadata, "data_file_id": dfid},
            id=ObjectId(dfid),
            md5=True,
            # SHA-512 only when a destination will announce the file over WIS2 (its notification
            # message's integrity is SHA-2/3, not MD5): it costs ~1.5x MD5 per byte
            sha512=self._announced(plan),
        )
        try:
            meta = await self._store.put(_limited(body, plan.max_file_size, received), spec)
        except StreamTooLarge as error:
            refusal = too_large(s.destination, error.size, plan.max_file_size or 0)
            await self.refuse(s.destination, s.target, refusal, s, data_file_id=dfid)
            await self._fail(registered, "receive", error, delete=False, message=refusal.message)
            return refusal
        except _BodyBroken as error:
            return await self._fail(registered, "receive", error.__cause__ or error, delete=False)
        except Exception as error:
            return await self._fail(registered, "store", error, delete=False)
        stored = DataFileStored(
            envelope=self._envelope(dfid, registered.envelope.event_id),
            data_file_id=dfid,
            guid=meta.id,
            store=self._store.name,
            location=meta.id,
            size=meta.size,
            checksums=Checksums(
                adler32=meta.checksums.adler32,
                md5=meta.checksums.md5,
                sha512=meta.checksums.sha512,
            ),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        queued = self._queued(registered, stored, plan.transfers, plan.identity, plan.queue_time)
        try:
            if self._timeout is None:
                await self._complete(stored, queued, retry=False)
            else:  # the bytes are durable: finish in the background if the broker is slow
                done = self._later(self._complete(stored, queued, retry=True))
                await asyncio.wait_for(asyncio.shield(done), self._timeout)
        except TimeoutError:
            _abandoned(done)
            return Failure(
                dfid,
                "publish",
                f"stored, but Kafka did not acknowledge it within {self._timeout:.1f} s; "
                "it completes once Kafka answers: put the same file again to know",
                True,
            )
        except EcpdsError as error:
            return await self._fail(registered, "publish", error, delete=True)
        log.debug("data file registered", data_file_id=dfid, size=meta.size, transfers=len(queued))
        return Receipt(dfid, plan.file_instance, meta.size, stored.checksums, queued)

    async def _complete(
        self, stored: DataFileStored, queued: tuple[TransferQueued, ...], *, retry: bool
    ) -> None:
        """Publish ``Stored``, then the transfers, and apply them; with ``retry``, each is
        sent again after a retriable failure until the broker acknowledges it."""
        # Stored is acknowledged before any transfer is queued: a transfer never names
        # bytes the log has not recorded as durable
        landed = [await self._until_acked(lambda: self._publish_stored(stored), retry)]
        landed += await self._until_acked(lambda: self._publish_queued(queued), retry)
        for event in (stored, *queued):
            self.index.apply(event)
        for published in landed:  # only once applied: a failure above leaves them to the log
            self._note(published)

    async def _publish_stored(self, stored: DataFileStored) -> Published:
        return await self._publisher.publish(self.topics.datafiles, stored.data_file_id, stored)

    @staticmethod
    async def _until_acked(send: Callable[[], Awaitable[T]], retry: bool) -> T:
        delay = 0.5
        while True:
            try:
                return await send()
            except EcpdsError as error:
                if not (retry and error.retriable):
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _acked(self, publish: Awaitable[T]) -> T:
        """``publish``'s result, or ``NotDurable`` once the publish timeout has passed (the
        event stays with the producer, which sends it whenever the broker takes it)."""
        if self._timeout is None:
            return await publish
        task = self._later(publish)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            _abandoned(task)
            raise NotDurable(f"Kafka did not acknowledge within {self._timeout:.1f} s") from None

    def _later(self, work: Awaitable[T]) -> asyncio.Task[T]:
        """Run ``work`` as a task this service keeps (``close`` cancels what is left)."""

        async def run() -> T:
            return await work

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def close(self) -> None:
        """Cancel what still waits for the broker (``recover`` closes it at the next start)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _again(
        self, submission: Submission, body: AsyncIterable[bytes], refusal: Refused
    ) -> Outcome:
        """A put of a name already registered: the same registration when its bytes are the
        same (see the module docstring), else the duplicate refusal."""
        s = submission
        entry = self.index.latest_file(s.key)
        assert entry is not None  # decide found it live
        dfid = entry.registered.data_file_id
        try:
            size, md5 = await _digest(body)
        except Exception as error:
            return Failure(dfid, "receive", str(error) or type(error).__name__, True)
        deadline = time.monotonic() + (self._timeout or 0.0)
        # polled: the entry moves on under this service's own puts and under the log follower
        while entry.state is FileState.REGISTERED and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        stored = entry.stored
        if entry.state is FileState.STORED and stored is not None:
            if stored.size == size and stored.checksums.md5 in (md5, None):
                r = entry.registered
                transfers = tuple(self.index.transfers_of(dfid))
                return Receipt(dfid, r.file_instance, size, stored.checksums, transfers, True)
            await self.refuse(s.destination, s.target, refusal, s)
            return refusal
        return Failure(
            dfid, "register", f"an earlier put of this name is {entry.state.value}; retry", True
        )

    async def _publish_queued(self, queued: tuple[TransferQueued, ...]) -> list[Published]:
        # one acknowledged send each, concurrently: ``publish_many`` is built for bulk
        # throughput and costs a submission several times the latency of a single send
        return await asyncio.gather(
            *(self._publisher.publish(self.topics.transfers, q.destination, q) for q in queued)
        )

    def _note(self, published: Published) -> None:
        self._applied(published.topic, published.partition, published.offset)

    def _queued(
        self,
        registered: DataFileRegistered,
        stored: DataFileStored,
        planned: tuple[PlannedTransfer, ...],
        identity: str,
        queue_time: datetime,
    ) -> tuple[TransferQueued, ...]:
        r = registered
        return tuple(
            TransferQueued(
                envelope=self._envelope(r.data_file_id, stored.envelope.event_id),
                transfer_id=f"{r.data_file_id}-{p.destination}",
                destination=p.destination,
                data_file_id=r.data_file_id,
                target=r.target,
                status=p.status,
                priority=r.priority,
                queue_time=queue_time,
                expiry_time=r.expiry_time,
                size=stored.size,
                scheduled_time=r.scheduled_time,
                alias_of=p.alias_of,
                identity=identity,
                file_instance=r.file_instance,
                notify=r.notify,
                asap=r.asap,
                guid=stored.guid,
                store=stored.store,
                location=stored.location,
                checksums=stored.checksums,
                original=r.original,
                transfer_group=r.transfer_group,
                metadata=dict(r.metadata),
            )
            for p in planned
        )

    async def refuse(
        self,
        destination: str,
        target: str,
        refusal: Refused,
        submission: Submission | None = None,
        *,
        data_file_id: str | None = None,
    ) -> None:
        """Record a refusal as an event (nothing is stored for it)."""
        event = DataFileRegistrationRefused(
            envelope=self._envelope(data_file_id or f"{destination}/{target}"),
            destination=destination,
            target=target,
            reason=refusal.reason,
            message=refusal.message,
            data_file_id=data_file_id,
            size=submission.size if submission is not None else None,
            requested_by=submission.requested_by if submission is not None else None,
        )
        try:
            # a refusal before registration has no data file id: keyed by what was asked for
            await self._acked(
                self._publisher.publish(
                    self.topics.datafiles, data_file_id or f"{destination}/{target}", event
                )
            )
        except EcpdsError as error:
            # the producer still gets its answer; nothing was stored, so nothing is left open
            log.error("cannot record a refusal", error=str(error), why=refusal.reason)
        if data_file_id is not None:
            self.index.apply(event)
        log.info("submission refused", destination=destination, target=target, why=refusal.reason)

    async def _fail(
        self,
        registered: DataFileRegistered,
        stage: str,
        error: BaseException,
        *,
        delete: bool,
        message: str | None = None,
    ) -> Failure:
        dfid = registered.data_file_id
        retriable = failure_is_retriable(error, stage)
        event = DataFileRegistrationFailed(
            envelope=self._envelope(dfid, registered.envelope.event_id),
            data_file_id=dfid,
            stage=stage,
            error_class=type(error).__name__,
            message=message or str(error) or type(error).__name__,
            retriable=retriable,
        )
        self.index.apply(event)  # the key is free again whatever happens to the publish
        if delete:
            await self._delete(dfid)
        try:
            publish = self._publisher.publish(self.topics.datafiles, dfid, event)
            if isinstance(error, NotDurable):
                # the broker is not answering: the answer goes now, the event when it can
                # (after the Registered it closes, which the producer still holds)
                _abandoned(self._later(publish))
            else:
                await self._acked(publish)
        except EcpdsError as publish_error:
            # the registration stays open in the log; ``recover`` closes it at the next start
            log.error("cannot record a failed registration", error=str(publish_error))
        log.warning("registration failed", data_file_id=dfid, stage=stage, error=event.message)
        return Failure(dfid, stage, event.message, retriable)

    async def _delete(self, oid: str) -> None:
        try:
            if await self._store.exists(ObjectId(oid)):
                await self._store.delete(ObjectId(oid))
        except EcpdsError as error:
            log.error("cannot delete the object of a failed registration", error=str(error))

    async def recover(self, owned: Callable[[DataFileRegistered], bool] = _anyone) -> Recovery:
        """Close what a crash left open (run once the index has read the log to its end), of
        the registrations ``owned`` says this service made: the ingest API and acquisition
        each recover their own, so neither fails the other's uploads in flight."""
        failed: list[str] = []
        for entry in self.index.open_registrations():
            r = entry.registered
            if not owned(r):
                continue
            await self._delete(r.data_file_id)  # bytes may be durable without their event
            event = DataFileRegistrationFailed(
                envelope=self._envelope(r.data_file_id, r.envelope.event_id),
                data_file_id=r.data_file_id,
                stage="recovery",
                error_class="Interrupted",
                message="interrupted before storage",
                retriable=True,
            )
            await self._publisher.publish(self.topics.datafiles, r.data_file_id, event)
            self.index.apply(event)
            failed.append(r.data_file_id)
        requeued: list[str] = []
        for entry in self.index.stored_without_transfers():
            if not owned(entry.registered):
                continue
            await self._requeue(entry)
            requeued.append(entry.registered.data_file_id)
        if failed or requeued:
            log.warning(
                "recovered interrupted registrations",
                failed=len(failed),
                requeued=len(requeued),
                first=(failed + requeued)[:5],
            )
        return Recovery(tuple(failed), tuple(requeued))

    async def _requeue(self, entry: FileEntry) -> None:
        r, stored = entry.registered, entry.stored
        assert stored is not None
        planned = plan_transfers(r.destination, r.target, r.standby, self._config.view)
        queue_time = max(r.scheduled_time or r.envelope.occurred_at, r.envelope.occurred_at)
        queued = self._queued(r, stored, planned, r.target, queue_time)
        await self._publish_queued(queued)
        for event in queued:
            self.index.apply(event)


def _abandoned(task: asyncio.Task[Any]) -> None:
    """Nobody awaits ``task`` any more: its failure, if it fails, is logged once."""

    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("a background publish failed", error=str(error) or type(error).__name__)

    task.add_done_callback(done)


async def _digest(body: AsyncIterable[bytes]) -> tuple[int, str]:
    """The size and MD5 (hex) of a body, read to its end and not kept."""
    md5, size = hashlib.md5(usedforsecurity=False), 0
    async for chunk in body:
        md5.update(chunk)
        size += len(chunk)
    return size, md5.hexdigest()


@dataclass
class _Counter:
    size: int = 0


async def _limited(
    body: AsyncIterable[bytes], limit: int | None, counter: _Counter
) -> AsyncIterator[bytes]:
    """The body, refused as soon as it passes ``limit``; its own failures marked as such."""
    iterator = aiter(body)
    while True:
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except Exception as error:
            raise _BodyBroken(str(error) or type(error).__name__) from error
        counter.size += len(chunk)
        if limit is not None and counter.size > limit:
            raise StreamTooLarge(counter.size)
        yield chunk
