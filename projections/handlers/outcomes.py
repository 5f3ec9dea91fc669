"""Writes shared by the outcome handlers: destination last success and last error,
per-minute statistics, and host counters and last check.

Rule kept here: hosts and minutes are written from every partition, so their writes only add
to counters or move "last" times forward, whatever order the partitions interleave in.
"""

from __future__ import annotations

from datetime import datetime
from typing import LiteralString

from projections.handlers.base import Write

# last_host: the host of the latest outcome (null for a portal download, which keeps the one
# there was); moved only forward in time, as the error and success times it goes with
_LAST_HOST: LiteralString = (
    " last_host = CASE WHEN EXCLUDED.last_host IS NULL THEN d.last_host"
    " WHEN greatest(d.last_success_at, d.last_error_at) IS NULL"
    " OR greatest(d.last_success_at, d.last_error_at)"
    " <= coalesce(EXCLUDED.last_success_at, EXCLUDED.last_error_at)"
    " THEN EXCLUDED.last_host ELSE d.last_host END,"
)

DESTINATION_SUCCESS: LiteralString = (
    "INSERT INTO destinations AS d (name, last_success_at, last_success_transfer, last_host)"  # noqa: S608 (constant SQL)
    " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
    + _LAST_HOST
    + " last_success_at = EXCLUDED.last_success_at,"
    " last_success_transfer = EXCLUDED.last_success_transfer"
    " WHERE d.last_success_at IS NULL OR d.last_success_at <= EXCLUDED.last_success_at"
)

DESTINATION_ERROR: LiteralString = (
    "INSERT INTO destinations AS d (name, last_error_at, last_error, last_error_transfer,"  # noqa: S608 (constant SQL)
    " last_host) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
    + _LAST_HOST
    + " last_error_at = EXCLUDED.last_error_at, last_error = EXCLUDED.last_error,"
    " last_error_transfer = EXCLUDED.last_error_transfer"
    " WHERE d.last_error_at IS NULL OR d.last_error_at <= EXCLUDED.last_error_at"
)

MINUTE: LiteralString = (
    "INSERT INTO destination_minutes AS m (destination, minute, files, bytes, errors)"
    " VALUES (%s, date_trunc('minute', %s::timestamptz), %s, %s, %s)"
    " ON CONFLICT (destination, minute) DO UPDATE SET files = m.files + EXCLUDED.files,"
    " bytes = m.bytes + EXCLUDED.bytes, errors = m.errors + EXCLUDED.errors"
)

# hosts see outcomes from every destination's partition: counters add up, "last" columns
# move forward in event time only, so the row does not depend on partition interleaving
HOST_OUTCOME: LiteralString = (
    "INSERT INTO hosts AS h (id, last_check_at, last_check_ok, last_success_at, last_error_at,"
    " last_error, last_bytes_per_second, transfers_done, transfers_failed, bytes_sent)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
    " transfers_done = h.transfers_done + EXCLUDED.transfers_done,"
    " transfers_failed = h.transfers_failed + EXCLUDED.transfers_failed,"
    " bytes_sent = h.bytes_sent + EXCLUDED.bytes_sent,"
    " last_check_ok = CASE WHEN h.last_check_at IS NULL"
    " OR h.last_check_at <= EXCLUDED.last_check_at"
    " THEN EXCLUDED.last_check_ok ELSE h.last_check_ok END,"
    " last_check_at = greatest(h.last_check_at, EXCLUDED.last_check_at),"
    " last_success_at = greatest(h.last_success_at, EXCLUDED.last_success_at),"
    " last_bytes_per_second = CASE WHEN EXCLUDED.last_success_at IS NOT NULL AND"
    " (h.last_success_at IS NULL OR h.last_success_at <= EXCLUDED.last_success_at)"
    " THEN EXCLUDED.last_bytes_per_second ELSE h.last_bytes_per_second END,"
    " last_error = CASE WHEN EXCLUDED.last_error_at IS NOT NULL AND"
    " (h.last_error_at IS NULL OR h.last_error_at <= EXCLUDED.last_error_at)"
    " THEN EXCLUDED.last_error ELSE h.last_error END,"
    " last_error_at = greatest(h.last_error_at, EXCLUDED.last_error_at)"
)


def ensure_destination(name: str) -> Write:
    return Write("INSERT INTO destinations (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))


def host_outcome(
    host: str,
    at: datetime,
    *,
    ok: bool,
    size: int = 0,
    rate: float | None = None,
    error: str = "",
    transfer: bool = True,
) -> Write:
    """Last check of a host (a transfer outcome or a listing); transfers also count."""
    return Write(
        HOST_OUTCOME,
        (
            host,
            at,
            ok,
            at if ok else None,
            None if ok else at,
            None if ok else error,
            rate,
            1 if ok and transfer else 0,
            0 if ok or not transfer else 1,
            size,
        ),
    )
