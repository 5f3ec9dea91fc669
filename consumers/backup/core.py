"""The backup stage's pure core: which transfers are backed up, where, and the outcome events.

Rules kept (ECPDS-REFERENCE.md §6.5, §7.2):

- A queued transfer (``TransferQueued``, status ``WAIT`` or ``HOLD``) is backed up when its
  destination has ``backup`` set and the destination's transfer group has ``backup`` set and a
  ``backup_host`` that exists; anything else is skipped with the reason.
- The remote path is ``<base>/<destination>/<target>``, where the base is the backup host's
  Directory field taken as a *base path*: its first line that does not start with ``(``,
  truncated at the first ``$``, stripped. No base means the login directory.
- The ``Location`` comes from the host through ``protocols.location`` (the one Host ->
  Location): its protocol, address (``host[:port][/base]``, IPv6 literals included), login,
  decrypted password, the base path, and its options without the module prefix
  (``sftp.fingerPrint`` -> ``fingerPrint``; ``ectrans.*`` too).
- Retries: a failure whose error is ``retriable`` is tried again under ``bus.retry.RetryPolicy``
  (doubling, capped) until its ``max_attempts``; then ``DataFileBackupFailed``. A permanent
  failure ends at once. Either way the order ends with an event: none is dropped.
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass
from datetime import datetime

from bus.config.view import ConfigView
from bus.events.base import Envelope, TransferStatus
from bus.events.config import Host
from bus.events.datafiles import DataFileBackedUp, DataFileBackupFailed
from bus.events.transfers import TransferQueued
from protocols import location
from protocols.base import Location

BACKED_UP_STATUSES = frozenset({TransferStatus.WAIT, TransferStatus.HOLD})
_NAMESPACE = uuid.UUID("7d1d4b0a-0a3e-4f5e-8a8e-2f6b4c9d3e10")


@dataclass(frozen=True, slots=True)
class BackupJob:
    """Copy one data file's stored object to a backup host."""

    data_file_id: str
    guid: str  # object id in the store (the data file id when the event predates guid)
    transfer_id: str
    destination: str
    host: Host
    base: str  # base path from the host's Directory field ("" = login directory)
    remote_path: str  # relative to the base: <destination>/<target>
    causation_id: str

    @property
    def full_path(self) -> str:
        """Where the file lands on the backup host."""
        return posixpath.join(self.base, self.remote_path) if self.base else self.remote_path


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a transfer is not backed up."""

    reason: str


def plan(queued: TransferQueued, view: ConfigView) -> BackupJob | Skip:
    """The backup job for a queued transfer, or why there is none."""
    if queued.status not in BACKED_UP_STATUSES:
        return Skip(f"status {queued.status} is not backed up")
    destination = view.destinations.get(queued.destination)
    if destination is None:
        return Skip(f"unknown destination {queued.destination}")
    if not destination.backup:
        return Skip(f"destination {destination.name} is not marked for backup")
    group = view.transfer_groups.get(destination.transfer_group)
    if group is None or not group.backup or not group.backup_host:
        return Skip(f"transfer group {destination.transfer_group} has no backup")
    host = view.hosts.get(group.backup_host)
    if host is None:
        return Skip(f"backup host {group.backup_host} is not defined")
    if not host.active:
        return Skip(f"backup host {host.id} is not active")
    return BackupJob(
        data_file_id=queued.data_file_id,
        guid=queued.guid or queued.data_file_id,
        transfer_id=queued.transfer_id,
        destination=queued.destination,
        host=host,
        base=location.directory_base(host.directory),
        remote_path=posixpath.join(queued.destination, queued.target.lstrip("/")),
        causation_id=queued.envelope.event_id,
    )


def location_for(host: Host, base: str, password: str | None) -> Location:
    """Where the transfer module connects for ``host`` (``password`` already decrypted): the one
    Host -> Location, under ``base`` (the login directory when there is none)."""
    return location.location_for(host, password, base=base)


def backed_up(
    job: BackupJob, size: int, duration_ms: int, now: datetime, source: str
) -> DataFileBackedUp:
    """The event recording a finished copy."""
    return DataFileBackedUp(
        envelope=_envelope(f"backed-up/{job.transfer_id}/{job.host.id}", job, now, source),
        data_file_id=job.data_file_id,
        host=job.host.id,
        remote_path=job.full_path,
        size=size,
        duration_ms=duration_ms,
        transfer_id=job.transfer_id,
    )


def backup_failed(
    job: BackupJob,
    error: BaseException,
    retriable: bool,
    attempts: int,
    now: datetime,
    source: str,
) -> DataFileBackupFailed:
    """The event recording a copy that failed for good (after ``attempts`` tries)."""
    return DataFileBackupFailed(
        envelope=_envelope(f"backup-failed/{job.transfer_id}/{job.host.id}", job, now, source),
        data_file_id=job.data_file_id,
        host=job.host.id,
        error_class=type(error).__name__,
        message=f"{error} (after {attempts} attempt{'s' if attempts > 1 else ''})",
        retriable=retriable,
        transfer_id=job.transfer_id,
    )


def _envelope(name: str, job: BackupJob, now: datetime, source: str) -> Envelope:
    # a redelivered order decided again gets the same id: consumers can tell a duplicate
    return Envelope(
        event_id=str(uuid.uuid5(_NAMESPACE, name)),
        occurred_at=now,
        source=source,
        correlation_id=job.data_file_id,
        causation_id=job.causation_id,
    )
