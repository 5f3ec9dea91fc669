"""The Data Portal's reads of the read models: what a destination has available for pickup.

The portal (``producers.portal``) imports this module and nothing else of ``projections``
(DESIGN.md §2: the one allowed cross-stage import). Rules kept here: nothing here writes;
"available" is OpenECPDS's rule for what a portal lists (ECPDS-REFERENCE.md "Data Portal"): a
transfer of the destination whose status is known and not ``INIT``, ``SCHE`` or ``FETC``
(arriving or fetching), whose queue time has passed (embargo) and whose expiry time has not,
and whose data file's bytes are stored and neither expired nor deleted. Of several file
instances under one target, the newest is the one listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, LiteralString

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from projections.db import DEFAULT_SCHEMA, checked_schema

_AVAILABLE: LiteralString = (
    "SELECT DISTINCT ON (t.target) t.transfer_id, t.target, t.status, t.queue_time,"
    " t.expiry_time, t.priority, d.data_file_id, d.size, d.guid, d.store, d.adler32, d.md5,"
    " d.stored_at"
    " FROM transfers t JOIN data_files d ON d.data_file_id = t.data_file_id"
    " WHERE t.destination = %(destination)s AND t.status IS NOT NULL"
    " AND t.status NOT IN ('INIT', 'SCHE', 'FETC')"
    " AND t.queue_time <= %(now)s AND t.expiry_time > %(now)s"
    " AND d.guid IS NOT NULL AND d.size IS NOT NULL"
    " AND d.expired_at IS NULL AND d.deleted_at IS NULL"
)


@dataclass(frozen=True, slots=True)
class Available:
    """A file a destination holds for pickup: its transfer and its stored bytes."""

    transfer_id: str
    target: str
    status: str
    data_file_id: str
    size: int
    guid: str
    store: str
    adler32: str | None
    md5: str | None
    stored_at: datetime | None
    queue_time: datetime | None
    priority: int | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a folder: how many entries in all, its sub-folders shown, its files shown."""

    total: int
    folders: tuple[str, ...]
    files: tuple[Available, ...]


_ORDERS: dict[str, LiteralString] = {"name": "target", "size": "size", "mtime": "stored_at"}


def _available(row: dict[str, Any]) -> Available:
    return Available(
        transfer_id=row["transfer_id"],
        target=row["target"],
        status=row["status"],
        data_file_id=row["data_file_id"],
        size=int(row["size"]),
        guid=row["guid"],
        store=row["store"] or "",
        adler32=row["adler32"],
        md5=row["md5"],
        stored_at=row["stored_at"],
        queue_time=row["queue_time"],
        priority=row["priority"],
    )


def pool(dsn: str, schema: str, *, size: int = 4) -> AsyncConnectionPool:
    """A pool of autocommit read connections whose ``search_path`` is the read-model schema."""
    options = f"-c search_path={checked_schema(schema)},public"
    return AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        open=False,
        kwargs={"options": options, "autocommit": True, "application_name": "ecpds-portal"},
    )


class PortalReads:
    """The portal's queries, on one pool."""

    def __init__(self, connections: AsyncConnectionPool) -> None:
        self._pool = connections

    async def available(
        self,
        destination: str,
        now: datetime,
        *,
        under: str = "",
        limit: int = 200_000,
        day: date | None = None,
    ) -> list[Available]:
        """The files ``destination`` has available now, by target; with ``under``, only
        targets below that folder (``a/b`` lists ``a/b/...``)."""
        sql: LiteralString = _AVAILABLE
        params: dict[str, Any] = {"destination": destination, "now": now, "limit": limit}
        sql += _on_day(day, params)
        if under:
            sql += " AND t.target LIKE %(prefix)s"
            params["prefix"] = _like_prefix(under.rstrip("/") + "/")
        sql += " ORDER BY t.target, t.file_instance DESC LIMIT %(limit)s"
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return [_available(row) for row in await cur.fetchall()]

    async def find(
        self, destination: str, target: str, now: datetime, *, day: date | None = None
    ) -> Available | None:
        """The file available as ``target`` in ``destination`` now (queued on ``day``, when
        given), or None."""
        params: dict[str, Any] = {"destination": destination, "now": now, "target": target}
        sql: LiteralString = _AVAILABLE + " AND t.target = %(target)s" + _on_day(day, params)
        sql += " ORDER BY t.target, t.file_instance DESC LIMIT 1"
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            row = await cur.fetchone()
        return _available(row) if row is not None else None

    async def page(
        self,
        destination: str,
        now: datetime,
        *,
        under: str = "",
        order: str = "name",
        descending: bool = False,
        limit: int = 1000,
        offset: int = 0,
        day: date | None = None,
    ) -> Page:
        """One page of the folder ``under`` of ``destination``: its sub-folders first (by
        name), then its files by ``order`` (``name``, ``size`` or ``mtime``), paged in SQL so
        a destination of 100,000 files answers its first page without reading them all."""
        lead = under.rstrip("/") + "/" if under else ""
        base: LiteralString = _AVAILABLE
        params: dict[str, Any] = {"destination": destination, "now": now, "cut": len(lead) + 1}
        base += _on_day(day, params)
        if lead:
            base += " AND t.target LIKE %(prefix)s"
            params["prefix"] = _like_prefix(lead)
        base += " ORDER BY t.target, t.file_instance DESC"
        rel: LiteralString = (
            "WITH avail AS (" + base + "),"  # noqa: S608 (constant SQL: values are parameters)
            " rel AS (SELECT a.*, substr(a.target, %(cut)s) AS rest FROM avail a) "
        )
        folders_sql = (
            rel + "SELECT DISTINCT split_part(rest, '/', 1) AS name FROM rel"  # noqa: S608
            " WHERE strpos(rest, '/') > 0 ORDER BY 1"
        )
        key = _ORDERS.get(order, "target")
        files_sql = (
            rel + "SELECT *, count(*) OVER () AS total FROM rel WHERE strpos(rest, '/') = 0"  # noqa: S608
            " ORDER BY " + key + (" DESC" if descending else "") + ", target"
            " LIMIT %(limit)s OFFSET %(offset)s"
        )
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(folders_sql, params)
            folders = [str(row["name"]) for row in await cur.fetchall()]
            skip = max(0, offset - len(folders))
            await cur.execute(files_sql, {**params, "limit": limit, "offset": skip})
            rows = await cur.fetchall()
        total_files = int(rows[0]["total"]) if rows else 0
        if not rows and skip > 0:  # past the end: count the files alone
            total_files = await self._count_files(rel, params)
        shown = folders[offset : offset + limit]
        files = [_available(row) for row in rows][: max(0, limit - len(shown))]
        return Page(len(folders) + total_files, tuple(shown), tuple(files))

    async def _count_files(self, rel: LiteralString, params: dict[str, Any]) -> int:
        sql = rel + "SELECT count(*) AS n FROM rel WHERE strpos(rest, '/') = 0"  # noqa: S608
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            row = await cur.fetchone()
        return int(row["n"]) if row is not None else 0

    async def days(self, destination: str, now: datetime) -> list[date]:
        """The days (UTC) on which what ``destination`` has available now was queued: its
        date folders, when it groups by date."""
        sql: LiteralString = (
            "SELECT DISTINCT (queue_time AT TIME ZONE 'UTC')::date AS day"  # noqa: S608
            " FROM (" + _AVAILABLE + ") a ORDER BY 1"
        )
        params = {"destination": destination, "now": now}
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return [row["day"] for row in await cur.fetchall()]

    async def has_folder(self, destination: str, folder: str, now: datetime) -> bool:
        """Whether some available target of ``destination`` lies below ``folder``."""
        return bool(await self.available(destination, now, under=folder, limit=1))


def _on_day(day: date | None, params: dict[str, Any]) -> LiteralString:
    """The condition that keeps transfers queued on ``day`` (UTC), its bounds put in
    ``params``; nothing without a day."""
    if day is None:
        return ""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    params["day_start"], params["day_end"] = start, start + timedelta(days=1)
    return " AND t.queue_time >= %(day_start)s AND t.queue_time < %(day_end)s"


def _like_prefix(text: str) -> str:
    """``text`` as a LIKE prefix pattern (its own ``%``, ``_`` and ``\\`` escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


__all__ = ["DEFAULT_SCHEMA", "Available", "Page", "PortalReads", "pool"]
