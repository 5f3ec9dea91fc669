"""Projection of ``ecpds.acquisition``: ``acquisition_hosts`` (last listing per host, counts,
duration, errors) and ``acquisition_files`` (each discovered file and its retrieval).

The events of one host share a partition (key: host id), so per-host rows see them in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from bus.events import acquisition as a
from projections.handlers.base import FREE, Handler, Write, registrar, text
from projections.handlers.outcomes import host_outcome

HANDLERS: dict[str, Handler] = {}
on = registrar(
    HANDLERS,
    {
        "acquisition_hosts": ("acquisition_host", 1),
        "acquisition_files": ("acquisition_file", 2),
        "hosts": FREE,
    },
)


@on(a.ListingCompleted)
def _listed(event: a.ListingCompleted) -> Sequence[Write]:
    at = event.envelope.occurred_at
    failed = bool(event.errors) or event.timed_out
    error = "; ".join(event.errors) or ("listing timed out" if event.timed_out else "")
    return (
        Write(
            "INSERT INTO acquisition_hosts AS h (host_id, destination, last_listing_at,"
            " last_listing_started_at, last_duration_ms, last_entries_listed, last_files_matched,"
            " last_files_new, last_errors, last_timed_out, listings, failed_listings,"
            " last_error_at, last_error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s,"
            " %s, %s) ON CONFLICT (host_id) DO UPDATE SET destination = EXCLUDED.destination,"
            " last_listing_at = EXCLUDED.last_listing_at,"
            " last_listing_started_at = EXCLUDED.last_listing_started_at,"
            " last_duration_ms = EXCLUDED.last_duration_ms,"
            " last_entries_listed = EXCLUDED.last_entries_listed,"
            " last_files_matched = EXCLUDED.last_files_matched,"
            " last_files_new = EXCLUDED.last_files_new, last_errors = EXCLUDED.last_errors,"
            " last_timed_out = EXCLUDED.last_timed_out, listings = h.listings + 1,"
            " failed_listings = h.failed_listings + EXCLUDED.failed_listings,"
            " last_error_at = coalesce(EXCLUDED.last_error_at, h.last_error_at),"
            " last_error = coalesce(EXCLUDED.last_error, h.last_error)",
            (
                event.host_id,
                event.destination,
                at,
                event.started_at,
                event.duration_ms,
                event.entries_listed,
                event.files_matched,
                event.files_new,
                list(event.errors),
                event.timed_out,
                1 if failed else 0,
                at if failed else None,
                error if failed else None,
            ),
        ),
        host_outcome(event.host_id, at, ok=not failed, error=error, transfer=False),
    )


@on(a.FileDiscovered)
def _discovered(event: a.FileDiscovered) -> Sequence[Write]:
    at = event.envelope.occurred_at
    return (
        Write(
            "INSERT INTO acquisition_files AS f (host_id, path, destination, name, status, reason,"
            " size, modified_at, data_file_id, target, data_id, discovered_at, updated_at)"
            " VALUES (%s, %s, %s, %s, 'DISCOVERED', %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (host_id, path) DO UPDATE SET destination = EXCLUDED.destination,"
            " name = EXCLUDED.name, status = 'DISCOVERED', reason = EXCLUDED.reason,"
            " size = EXCLUDED.size, modified_at = EXCLUDED.modified_at,"
            " data_file_id = EXCLUDED.data_file_id, target = EXCLUDED.target,"
            " data_id = EXCLUDED.data_id, discovered_at = EXCLUDED.discovered_at,"
            " retrieved_at = NULL, duration_ms = NULL, error = NULL,"
            " updated_at = EXCLUDED.updated_at",
            (
                event.host_id,
                event.path,
                event.destination,
                event.name,
                text(event.reason),
                event.size,
                event.modified_at,
                event.data_file_id,
                event.target,
                event.data_id,
                at,
                at,
            ),
        ),
        Write(
            "INSERT INTO acquisition_hosts AS h (host_id, destination, discovered)"
            " VALUES (%s, %s, 1) ON CONFLICT (host_id) DO UPDATE SET"
            " discovered = h.discovered + 1",
            (event.host_id, event.destination),
        ),
    )


@on(a.RetrievalSucceeded)
def _retrieved(event: a.RetrievalSucceeded) -> Sequence[Write]:
    at = event.envelope.occurred_at
    return (
        Write(
            "INSERT INTO acquisition_files AS f (host_id, path, destination, status, size,"
            " data_file_id, retrieved_at, duration_ms, updated_at)"
            " VALUES (%s, %s, %s, 'RETRIEVED', %s, %s, %s, %s, %s)"
            " ON CONFLICT (host_id, path) DO UPDATE SET status = 'RETRIEVED',"
            " size = EXCLUDED.size, data_file_id = EXCLUDED.data_file_id,"
            " retrieved_at = EXCLUDED.retrieved_at, duration_ms = EXCLUDED.duration_ms,"
            " error = NULL, updated_at = EXCLUDED.updated_at",
            (
                event.host_id,
                event.path,
                event.destination,
                event.size,
                event.data_file_id,
                at,
                event.duration_ms,
                at,
            ),
        ),
        Write(
            "INSERT INTO acquisition_hosts AS h (host_id, destination, retrieved)"
            " VALUES (%s, %s, 1) ON CONFLICT (host_id) DO UPDATE SET retrieved = h.retrieved + 1",
            (event.host_id, event.destination),
        ),
    )


@on(a.RetrievalFailed)
def _retrieval_failed(event: a.RetrievalFailed) -> Sequence[Write]:
    at = event.envelope.occurred_at
    error = f"{event.error_class}: {event.message}"
    return (
        Write(
            "INSERT INTO acquisition_files AS f (host_id, path, destination, status,"
            " data_file_id, duration_ms, error, updated_at)"
            " VALUES (%s, %s, %s, 'FAILED', %s, %s, %s, %s)"
            " ON CONFLICT (host_id, path) DO UPDATE SET status = 'FAILED',"
            " data_file_id = coalesce(EXCLUDED.data_file_id, f.data_file_id),"
            " duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error,"
            " updated_at = EXCLUDED.updated_at",
            (
                event.host_id,
                event.path,
                event.destination,
                event.data_file_id,
                event.duration_ms,
                error,
                at,
            ),
        ),
        Write(
            "INSERT INTO acquisition_hosts AS h (host_id, destination, retrieval_failures,"
            " last_error_at, last_error) VALUES (%s, %s, 1, %s, %s) ON CONFLICT (host_id)"
            " DO UPDATE SET retrieval_failures = h.retrieval_failures + 1,"
            " last_error_at = EXCLUDED.last_error_at, last_error = EXCLUDED.last_error",
            (event.host_id, event.destination, at, error),
        ),
    )
