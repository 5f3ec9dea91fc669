"""The backup runner: consume queued transfers -> plan -> copy to the backup host -> publish ->
commit.

Offset rule: an offset of ``ecpds.transfers`` is committed only once the record it covers has
ended durably: not a backup case (skipped, with the reason logged), or its outcome event
(``DataFileBackedUp`` or ``DataFileBackupFailed``) acknowledged by the broker. Records are
taken in batches; a batch's copies run concurrently (at most ``max_concurrent`` at once) and
each partition is committed up to its first record whose outcome could not be published,
which is then read again after a pause. A crash therefore redelivers, never loses; a copy made
twice is harmless because the transfer module writes under a temporary name and renames, so the
backup host holds one complete file.

Copies go through the transfer modules (``protocols.registry.connect``) with a ``Location``
built from the backup host (credentials decrypted with the operator key, in memory only). A
retriable failure is tried again with a doubling backoff up to ``RetryPolicy.max_attempts``;
then, or at once for a permanent failure, ``DataFileBackupFailed`` records it.

The consumer's poll interval allows long copies (``max_poll_interval_ms``): while a batch is
copied the group keeps this member, heartbeats run in the background.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord, TopicPartition

from bus import codec
from bus.config.secrets import decrypt
from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import commit_ended, is_retriable, sleep_unless, stage_consumer, stop_on_signals
from bus.errors import ConfigurationError, DecodeError, EcpdsError
from bus.events.datafiles import DataFileBackedUp, DataFileBackupFailed
from bus.events.transfers import TransferQueued
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.topics import DATAFILES, TRANSFERS, TopicSpec
from consumers.backup import core
from protocols.registry import connect
from store.local import LocalStore
from store.objects import object_id
from store.ports import ObjectStore

log = get_logger(__name__)
Record: TypeAlias = ConsumerRecord[Any, Any]


class BackupRunner:
    """Copies data of backup destinations to their transfer group's backup host."""

    def __init__(
        self,
        bootstrap: str,
        store: ObjectStore,
        config: ConfigSource,
        *,
        key_file: Path | None = None,
        publisher: Publisher | None = None,
        transfers_topic: str = TRANSFERS,
        datafiles_topic: str = DATAFILES,
        group_id: str = "ecpds-backup",
        specs: Sequence[TopicSpec] | None = None,
        max_concurrent: int = 15,
        retry: RetryPolicy | None = None,
        source: str = "backup",
        max_records: int = 100,
    ) -> None:
        self._store = store
        self._config = config
        self._key_file = key_file
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(bootstrap, client_id=source, specs=specs)
        self._datafiles = datafiles_topic
        self._slots = asyncio.Semaphore(max_concurrent)
        self._retry = retry or RetryPolicy(initial=1.0, maximum=60.0, max_attempts=5)
        self._source = source
        self._max_records = max_records
        self._stopping = asyncio.Event()
        self._consumer = stage_consumer(
            transfers_topic,
            bootstrap=bootstrap,
            group_id=group_id,
        )
        self.copied = 0
        self.failed = 0
        self.active = 0
        self.peak_active = 0

    def stop(self) -> None:
        """Finish the batch in hand (abandoning pending retries, uncommitted), then return."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume and back up until ``stop`` is called."""
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
        ended = await asyncio.gather(*(self._handle(r) for _, r in order))
        return await commit_ended(self._consumer, order, ended)

    async def _handle(self, record: Record) -> bool:
        """Whether the record has ended durably (skipped, or its outcome published)."""
        try:
            event = codec.decode_with_type(record.value, codec.type_header(record.headers))
        except DecodeError:
            return True  # not this stage's input; the topic's owners dead-letter it
        if not isinstance(event, TransferQueued):
            return True
        decision = core.plan(event, self._config.view)
        if isinstance(decision, core.Skip):
            log.debug("not backed up", transfer_id=event.transfer_id, reason=decision.reason)
            return True
        return await self._back_up(decision)

    async def _back_up(self, job: core.BackupJob) -> bool:
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                async with self._slots:
                    size = await self._copy(job)
            except Exception as error:  # every failure ends as retry or a BackupFailed event
                retriable = is_retriable(error) or isinstance(error, OSError)
                log.warning(
                    "backup copy failed",
                    data_file_id=job.data_file_id,
                    host=job.host.id,
                    attempt=attempt,
                    retriable=retriable,
                    error=str(error),
                )
                if self._retry.retry(attempt, retriable):
                    if await sleep_unless(self._stopping, self._retry.delay(attempt)):
                        return False  # stopping: leave it uncommitted for the next run
                    continue
                event: DataFileBackedUp | DataFileBackupFailed = core.backup_failed(
                    job, error, retriable, attempt, _now(), self._source
                )
                self.failed += 1
                break
            duration = int((time.monotonic() - started) * 1000)
            event = core.backed_up(job, size, duration, _now(), self._source)
            self.copied += 1
            break
        try:
            await self._publisher.publish(self._datafiles, job.data_file_id, event)
        except EcpdsError as error:
            log.warning("backup outcome not published", error=str(error))
            return False
        return True

    async def _copy(self, job: core.BackupJob) -> int:
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            host = job.host
            password = None
            if host.credentials is not None:
                if self._key_file is None:
                    raise ConfigurationError("credentials", f"{host.id}: no operator key file")
                password = decrypt(host.credentials, self._key_file)
            location = core.location_for(host, job.base, password)
            connection = await connect(location)
            try:
                stream = self._store.get(object_id(job.guid))
                return await connection.put(job.remote_path, stream)
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()
        finally:
            self.active -= 1


def _now() -> datetime:
    return datetime.now(UTC)


async def serve(settings: Settings, max_concurrent: int) -> None:
    """Run the backup stage on the local store with the live configuration until a signal."""
    store = LocalStore(settings.store_root)
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        runner = BackupRunner(
            settings.kafka_bootstrap,
            store,
            live,
            key_file=settings.key_file,
            max_concurrent=max_concurrent,
            source=f"backup/{settings.instance}",
        )
        stop_on_signals(runner.stop)
        log.info("backup running", max_concurrent=max_concurrent)
        try:
            await runner.run()
        finally:
            await store.close()


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()  # first: the defaults below are its values
    parser = argparse.ArgumentParser(prog="ecpds-backup", description="Backup copies.")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=settings.backup_threads,
        help="copies at once (ECPDS_BACKUP_THREADS, default 15 like maxBackupThreads)",
    )
    args = parser.parse_args(argv)
    configure(settings)
    asyncio.run(serve(settings, args.max_concurrent))


if __name__ == "__main__":
    main()
