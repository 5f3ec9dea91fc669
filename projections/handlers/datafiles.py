"""Projection of ``ecpds.datafiles``: ``data_files`` (one row per file: status, location,
checksums, times, metadata), ``data_file_copies`` (one per store) and refusals.

Status moves REGISTERED -> STORED (or FAILED) -> EXPIRED / DELETED; the events of one file
share a partition (key: data file id), so they arrive in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.types.json import Jsonb

from bus.events import datafiles as f
from projections.handlers.base import FREE, Handler, Write, registrar, text

HANDLERS: dict[str, Handler] = {}
# a file's rows and its copies share one key: deletion reads the copies
on = registrar(
    HANDLERS,
    {
        "data_files": ("data_file", 1),
        "data_file_copies": ("data_file", 1),
        "data_file_refusals": FREE,
    },
)


@on(f.DataFileRegistered)
def _registered(event: f.DataFileRegistered) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO data_files AS f (data_file_id, destination, target, transfer_group,"
            " status, priority, file_instance, version, original, expected_size, content_type,"
            " acquisition_host, requested_by, submission_mode, registered_at, scheduled_time,"
            " expiry_time, metadata) VALUES (%s, %s, %s, %s, 'REGISTERED', %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (data_file_id) DO UPDATE SET"
            " destination = EXCLUDED.destination, target = EXCLUDED.target,"
            " transfer_group = EXCLUDED.transfer_group, priority = EXCLUDED.priority,"
            " file_instance = EXCLUDED.file_instance, version = EXCLUDED.version,"
            " original = EXCLUDED.original, expected_size = EXCLUDED.expected_size,"
            " content_type = EXCLUDED.content_type,"
            " acquisition_host = EXCLUDED.acquisition_host,"
            " requested_by = EXCLUDED.requested_by, submission_mode = EXCLUDED.submission_mode,"
            " registered_at = EXCLUDED.registered_at, scheduled_time = EXCLUDED.scheduled_time,"
            " expiry_time = EXCLUDED.expiry_time, metadata = EXCLUDED.metadata",
            (
                event.data_file_id,
                event.destination,
                event.target,
                event.transfer_group,
                event.priority,
                event.file_instance,
                event.version,
                event.original,
                event.expected_size,
                event.content_type,
                event.acquisition_host,
                event.requested_by,
                text(event.submission_mode),
                event.envelope.occurred_at,
                event.scheduled_time,
                event.expiry_time,
                Jsonb(dict(event.metadata)),
            ),
        ),
    )


_COPY = (
    "INSERT INTO data_file_copies AS c (data_file_id, store, guid, location, size, copied_at)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (data_file_id, store) DO UPDATE SET"
    " guid = EXCLUDED.guid, location = EXCLUDED.location, size = EXCLUDED.size,"
    " copied_at = EXCLUDED.copied_at, deleted_at = NULL, delete_reason = NULL"
)


@on(f.DataFileStored)
def _stored(event: f.DataFileStored) -> Sequence[Write]:
    at = event.envelope.occurred_at
    sums = event.checksums
    return (
        Write(
            "INSERT INTO data_files AS f (data_file_id, status, guid, store, location, size,"
            " adler32, md5, sha512, stored_at, store_duration_ms)"
            " VALUES (%s, 'STORED', %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (data_file_id) DO UPDATE SET status = 'STORED', guid = EXCLUDED.guid,"
            " store = EXCLUDED.store, location = EXCLUDED.location, size = EXCLUDED.size,"
            " adler32 = EXCLUDED.adler32, md5 = EXCLUDED.md5, sha512 = EXCLUDED.sha512,"
            " stored_at = EXCLUDED.stored_at, store_duration_ms = EXCLUDED.store_duration_ms",
            (
                event.data_file_id,
                event.guid,
                event.store,
                event.location,
                event.size,
                sums.adler32,
                sums.md5,
                sums.sha512,
                at,
                event.duration_ms,
            ),
        ),
        Write(_COPY, (event.data_file_id, event.store, event.guid, event.location, event.size, at)),
    )


@on(f.DataFileReplicated)
def _replicated(event: f.DataFileReplicated) -> Sequence[Write]:
    row = (
        event.data_file_id,
        event.to_store,
        event.guid,
        event.location,
        event.size,
        event.envelope.occurred_at,
    )
    return (Write(_COPY, row),)


@on(f.DataFileExpired)
def _expired(event: f.DataFileExpired) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO data_files AS f (data_file_id, status, expired_at)"
            " VALUES (%s, 'EXPIRED', %s) ON CONFLICT (data_file_id) DO UPDATE SET"
            " status = 'EXPIRED', expired_at = EXCLUDED.expired_at",
            (event.data_file_id, event.envelope.occurred_at),
        ),
    )


@on(f.DataFileDeleted)
def _deleted(event: f.DataFileDeleted) -> Sequence[Write]:
    at = event.envelope.occurred_at
    return (
        Write(
            "INSERT INTO data_file_copies AS c (data_file_id, store, guid, location, deleted_at,"
            " delete_reason) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (data_file_id, store) DO UPDATE SET deleted_at = EXCLUDED.deleted_at,"
            " delete_reason = EXCLUDED.delete_reason",
            (event.data_file_id, event.store, event.guid, event.location, at, event.reason),
        ),
        # the file is DELETED once no copy is left
        Write(
            "INSERT INTO data_files AS f (data_file_id, status, deleted_at, delete_reason)"
            " VALUES (%s, 'DELETED', %s, %s) ON CONFLICT (data_file_id) DO UPDATE SET"
            " status = CASE WHEN EXISTS (SELECT 1 FROM data_file_copies c"
            " WHERE c.data_file_id = f.data_file_id AND c.deleted_at IS NULL)"
            " THEN f.status ELSE 'DELETED' END,"
            " deleted_at = EXCLUDED.deleted_at, delete_reason = EXCLUDED.delete_reason",
            (event.data_file_id, at, event.reason),
        ),
    )


@on(f.DataFileRegistrationRefused)
def _refused(event: f.DataFileRegistrationRefused) -> Sequence[Write]:
    env = event.envelope
    return (
        Write(
            "INSERT INTO data_file_refusals (event_id, occurred_at, destination, target, reason,"
            " message, data_file_id, size, requested_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                env.event_id,
                env.occurred_at,
                event.destination,
                event.target,
                text(event.reason),
                event.message,
                event.data_file_id,
                event.size,
                event.requested_by,
            ),
        ),
    )


@on(f.DataFileRegistrationFailed)
def _failed(event: f.DataFileRegistrationFailed) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO data_files AS f (data_file_id, status, failed_stage, error)"
            " VALUES (%s, 'FAILED', %s, %s) ON CONFLICT (data_file_id) DO UPDATE SET"
            " status = 'FAILED', failed_stage = EXCLUDED.failed_stage, error = EXCLUDED.error",
            (event.data_file_id, event.stage, f"{event.error_class}: {event.message}"),
        ),
    )


@on(f.DataFileBackedUp)
def _backed_up(event: f.DataFileBackedUp) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO data_files AS f (data_file_id, status, backup_host, backup_path,"
            " backed_up_at) VALUES (%s, 'REGISTERED', %s, %s, %s)"
            " ON CONFLICT (data_file_id) DO UPDATE SET backup_host = EXCLUDED.backup_host,"
            " backup_path = EXCLUDED.backup_path, backed_up_at = EXCLUDED.backed_up_at,"
            " backup_error = NULL",
            (event.data_file_id, event.host, event.remote_path, event.envelope.occurred_at),
        ),
    )


@on(f.DataFileBackupFailed)
def _backup_failed(event: f.DataFileBackupFailed) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO data_files AS f (data_file_id, status, backup_host, backup_error)"
            " VALUES (%s, 'REGISTERED', %s, %s) ON CONFLICT (data_file_id) DO UPDATE SET"
            " backup_host = EXCLUDED.backup_host, backup_error = EXCLUDED.backup_error",
            (event.data_file_id, event.host, f"{event.error_class}: {event.message}"),
        ),
    )
