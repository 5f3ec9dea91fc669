"""The backup stage: queued transfers -> plan -> copy to the backup host -> ``DataFileBackedUp``
or ``DataFileBackupFailed``; a stage of the kit (``bus.stage``: its docstring has the commit
rule).

A record of ``ecpds.transfers`` ends when it is not a backup case (skipped, with the reason
logged), or when its outcome event is acknowledged by the broker. A batch's copies run
concurrently (at most ``max_concurrent`` at once, the kit's ``concurrency``). A crash
redelivers, never loses; a copy made twice is harmless because the transfer module writes under
a temporary name and renames, so the backup host holds one complete file.

Copies go through the transfer modules (``protocols.registry.connect``) with a ``Location``
built from the backup host (credentials decrypted with the operator key, in memory only). A
retriable failure (or an ``OSError``) is tried again by the kit with a doubling backoff up to
the ``RetryPolicy``'s ``max_attempts``; then, or at once for a permanent failure,
``DataFileBackupFailed`` records it.

The consumer's poll interval allows long copies (``max_poll_interval_ms``): while a batch is
copied the group keeps this member, heartbeats run in the background.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bus.config.secrets import host_password
from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import is_retriable
from bus.errors import TransientError
from bus.events.datafiles import DataFileBackedUp, DataFileBackupFailed
from bus.events.transfers import TransferQueued
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.stage import Publish, Received, Stage, main, until_signalled
from bus.topics import DATAFILES, DEADLETTER, TRANSFERS, TopicSpec
from consumers.backup import core
from protocols.registry import connect
from store.local import LocalStore
from store.objects import object_id
from store.ports import ObjectStore

log = get_logger(__name__)
RETRY = RetryPolicy(initial=1.0, maximum=60.0, max_attempts=5)


class Backup:
    """The backup's handler: copies data of backup destinations to their group's backup host."""

    def __init__(
        self,
        store: ObjectStore,
        config: ConfigSource,
        *,
        key_file: Path | None,
        datafiles_topic: str,
        retry: RetryPolicy,
        source: str,
    ) -> None:
        self._store = store
        self._config = config
        self._key_file = key_file
        self._datafiles = datafiles_topic
        self._retry = retry
        self._source = source
        self.copied = 0
        self.failed = 0
        self.active = 0
        self.peak_active = 0

    async def handle(self, received: Received) -> Sequence[Publish]:
        event = received.event
        if not isinstance(event, TransferQueued):
            return ()
        job = core.plan(event, self._config.view)
        if isinstance(job, core.Skip):
            log.debug("not backed up", transfer_id=event.transfer_id, reason=job.reason)
            return ()
        started = time.monotonic()
        outcome: DataFileBackedUp | DataFileBackupFailed
        try:
            size = await self._copy(job)
        except Exception as error:  # every failure ends as a retry or a BackupFailed event
            retriable = is_retriable(error) or isinstance(error, OSError)
            log.warning(
                "backup copy failed",
                data_file_id=job.data_file_id,
                host=job.host.id,
                attempt=received.attempt,
                retriable=retriable,
                error=str(error),
            )
            if self._retry.retry(received.attempt, retriable):
                raise TransientError(f"backup copy failed: {error}") from error
            now = datetime.now(UTC)
            outcome = core.backup_failed(job, error, retriable, received.attempt, now, self._source)
            self.failed += 1
        else:
            duration = int((time.monotonic() - started) * 1000)
            outcome = core.backed_up(job, size, duration, datetime.now(UTC), self._source)
            self.copied += 1
        return (Publish(self._datafiles, job.data_file_id, outcome),)

    async def _copy(self, job: core.BackupJob) -> int:
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            host = job.host
            password = host_password(host, self._key_file)
            connection = await connect(core.location_for(host, job.base, password))
            try:
                return await connection.put(job.remote_path, self._store.get(object_id(job.guid)))
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()
        finally:
            self.active -= 1


def backup_stage(
    bootstrap: str,
    store: ObjectStore,
    config: ConfigSource,
    *,
    key_file: Path | None = None,
    publisher: Publisher | None = None,
    transfers_topic: str = TRANSFERS,
    datafiles_topic: str = DATAFILES,
    deadletter_topic: str = DEADLETTER,
    group_id: str = "ecpds-backup",
    specs: Sequence[TopicSpec] | None = None,
    max_concurrent: int = 15,
    retry: RetryPolicy = RETRY,
    source: str = "backup",
) -> Stage[Backup]:
    """The backup stage on ``transfers_topic``, copying from ``store``."""
    backup = Backup(
        store,
        config,
        key_file=key_file,
        datafiles_topic=datafiles_topic,
        retry=retry,
        source=source,
    )
    return Stage(
        backup,
        bootstrap=bootstrap,
        topics=[transfers_topic],
        group_id=group_id,
        source=source,
        publisher=publisher,
        specs=specs,
        concurrency=max_concurrent,
        retry=retry,
        deadletter_topic=deadletter_topic,
    )


async def serve(settings: Settings, args: argparse.Namespace) -> None:
    """Run the backup stage on the local store with the live configuration until a signal."""
    store = LocalStore(settings.store_root)
    try:
        async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
            stage = backup_stage(
                settings.kafka_bootstrap,
                store,
                live,
                key_file=settings.key_file,
                max_concurrent=args.max_concurrent,
                source=f"backup/{settings.instance}",
            )
            log.info("backup running", max_concurrent=args.max_concurrent)
            await until_signalled(stage)
    finally:
        await store.close()


def options(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=settings.backup_threads,
        help="copies at once (ECPDS_BACKUP_THREADS, default 15 like maxBackupThreads)",
    )


if __name__ == "__main__":
    main("ecpds-backup", "Backup copies.", serve, options=options)
