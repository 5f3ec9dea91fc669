"""The monitor's reads: SQL over the read models only, one function per thing a page shows.

Rules kept here: nothing here writes; every list is bounded by a ``LIMIT``; times shown are the
events' times (the read models hold no wall clock), so "recent" means relative to the newest
row, not to now. Rows are returned as read-only mappings of column name to value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, LiteralString

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from projections.db import checked_schema
from projections.monitor.search import DESTINATION_FIELDS, TRANSFER_FIELDS, parse, where
from projections.monitor.view import CRITICAL, FAILING, HELD, HELD_SQL, UNHEALTHY_SQL, WARNING

Row = Mapping[str, Any]

QUEUED = ("WAIT", "RETR", "HOLD", "INIT", "SCHE", "FETC", "INTR")
"""Transfer statuses that are still waiting in a destination's queue."""

_UNHEALTHY = sorted(CRITICAL | WARNING)  # the statuses of ``view.health`` that are not OK

OVERVIEW_COLUMNS: LiteralString = (
    "name, status, status_reason, status_actor, standby,"
    " coalesce(current_host, last_host) AS current_host, type, country, transfer_group, active,"
    " queued::bigint, running::bigint, failed::bigint, held::bigint, done::bigint,"
    " outstanding::bigint, last_success_at, last_error_at, last_error, last_error_transfer"
)


@dataclass(frozen=True, slots=True)
class Filter:
    """The overview's filter: a name/country/comment search and a status code, or
    ``failing`` for every destination whose ``view.health`` is not OK."""

    search: str = ""
    status: str = ""
    limit: int = 2000


def pool(dsn: str, schema: str, *, size: int = 6) -> AsyncConnectionPool:
    """A pool of autocommit read connections whose ``search_path`` is the read-model schema."""
    options = f"-c search_path={checked_schema(schema)},public"
    return AsyncConnectionPool(
        dsn,
        min_size=2,
        max_size=size,
        open=False,
        kwargs={"options": options, "autocommit": True, "application_name": "ecpds-monitor"},
    )


class Queries:
    """Every read the monitor makes, on one pool."""

    def __init__(self, connections: AsyncConnectionPool) -> None:
        self._pool = connections

    async def rows(self, query: LiteralString, params: Sequence[Any] = ()) -> list[Row]:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return list(await cur.fetchall())

    async def row(self, query: LiteralString, params: Sequence[Any] = ()) -> Row | None:
        found = await self.rows(query, params)
        return found[0] if found else None

    # destinations ---------------------------------------------------------------------------

    async def overview(self, f: Filter) -> list[Row]:
        """The destinations ``f`` selects: its search (``search`` syntax: terms and free
        words) and its status (a code, ``held`` for an operator's hold, or ``failing``)."""
        query = parse(f.search)
        clauses, params = where(query, DESTINATION_FIELDS)
        sql: LiteralString = "SELECT " + OVERVIEW_COLUMNS + " FROM destination_overview"  # noqa: S608 (constant SQL)
        sql += " WHERE NOT removed"
        for clause in clauses:
            sql += " AND " + clause
        for word in query.words:
            sql += (
                " AND (name ILIKE %s OR country ILIKE %s OR comment ILIKE %s"
                " OR coalesce(current_host, last_host) ILIKE %s)"
            )
            params += [f"%{word}%"] * 4
        if f.status == FAILING:
            sql += " AND " + UNHEALTHY_SQL
            params.append(_UNHEALTHY)
        elif f.status == HELD:
            sql += " AND " + HELD_SQL
        elif f.status:
            sql += " AND status = %s"
            params.append(f.status)
        sql += " ORDER BY name LIMIT %s"
        params.append(f.limit)
        return await self.rows(sql, params)

    async def destination(self, name: str) -> Row | None:
        return await self.row("SELECT * FROM destination_overview WHERE name = %s", (name,))

    async def queue(self, name: str, limit: int = 200) -> list[Row]:
        """Waiting transfers in the order the scheduler takes them: priority, queue time, id."""
        return await self.rows(
            "SELECT transfer_id, data_file_id, target, status, priority, queue_time, size,"
            " start_count, requeue_count, last_error FROM transfers"
            " WHERE destination = %s AND status = ANY(%s)"
            " ORDER BY priority, queue_time, transfer_id LIMIT %s",
            (name, list(QUEUED), limit),
        )

    async def running(self, name: str) -> list[Row]:
        return await self.rows(
            "SELECT transfer_id, target, host_id, mover_id, attempt, started_at, size"
            " FROM transfers WHERE destination = %s AND status = 'EXEC'"
            " ORDER BY started_at LIMIT 200",
            (name,),
        )

    async def finished(self, name: str, limit: int = 50) -> list[Row]:
        return await self.rows(
            "SELECT transfer_id, target, status, host_id, finished_at, updated_at, bytes_sent,"
            " bytes_per_second, last_error FROM transfers"
            " WHERE destination = %s AND status IN ('DONE', 'FAIL', 'STOP')"
            " ORDER BY updated_at DESC NULLS LAST, transfer_id LIMIT %s",
            (name, limit),
        )

    async def destination_hosts(self, name: str) -> list[Row]:
        return await self.rows(
            "SELECT a.host, a.priority, a.active AS enabled, a.active_reason, h.nickname,"
            " h.protocol, h.address, h.active, h.last_check_at, h.last_check_ok,"
            " h.last_error, h.last_bytes_per_second"
            " FROM associations a LEFT JOIN hosts h ON h.id = a.host"
            " WHERE a.destination = %s AND NOT a.removed ORDER BY a.priority, a.host",
            (name,),
        )

    async def minutes(self, destination: str | None, count: int = 60) -> list[Row]:
        """Files, bytes and errors per minute: the last ``count`` minutes that have data (of
        one destination, or of all)."""
        if destination is not None:  # a separate statement, so the primary key is used
            return await self.rows(
                "SELECT minute, files, bytes, errors FROM destination_minutes"
                " WHERE destination = %s ORDER BY minute DESC LIMIT %s",
                (destination, count),
            )
        return await self.rows(
            "SELECT minute, sum(files)::bigint AS files, sum(bytes)::bigint AS bytes,"
            " sum(errors)::bigint AS errors FROM destination_minutes"
            " GROUP BY minute ORDER BY minute DESC LIMIT %s",
            (count,),
        )

    async def errors_by_destination(self, limit: int = 20) -> list[Row]:
        return await self.rows(
            "SELECT destination, sum(errors)::bigint AS errors, sum(files)::bigint AS files"
            " FROM destination_minutes GROUP BY destination HAVING sum(errors) > 0"
            " ORDER BY errors DESC, destination LIMIT %s",
            (limit,),
        )

    # charts (``charts``: a window's buckets; ``top`` named series, the rest as null) -------

    async def chart_destinations(
        self,
        measure: Literal["bytes", "errors"],
        since: datetime,
        until: datetime,
        step_s: int,
        destination: str | None = None,
        top: int = 8,
    ) -> list[Row]:
        """Bytes or errors per bucket (``t``, epoch seconds) and destination, from the
        per-minute counters; the ``top`` destinations by that measure by name, the rest null."""
        sql: LiteralString = (
            "WITH m AS (SELECT destination, minute, " + measure + " AS v"  # noqa: S608 (constant SQL)
            " FROM destination_minutes WHERE minute >= %s AND minute < %s"
        )
        params: list[Any] = [since, until]
        if destination is not None:  # a separate clause, so the primary key is used
            sql += " AND destination = %s"
            params.append(destination)
        sql += (
            "), top AS (SELECT destination FROM m GROUP BY destination HAVING sum(v) > 0"  # noqa: S608 (constant SQL)
            " ORDER BY sum(v) DESC, destination LIMIT %s)"
            " SELECT floor(extract(epoch FROM minute) / %s) * %s AS t,"
            " CASE WHEN destination IN (SELECT destination FROM top) THEN destination END"
            " AS series, sum(v)::float8 AS " + measure + " FROM m GROUP BY 1, 2"
        )
        return await self.rows(sql, [*params, top, step_s, step_s])

    async def chart_hosts(
        self,
        since: datetime,
        until: datetime,
        step_s: int,
        destination: str | None = None,
        top: int = 8,
    ) -> list[Row]:
        """Bytes delivered per bucket (by finish time) and host, from the transfers done."""
        sql: LiteralString = (
            "WITH d AS (SELECT host_id, finished_at, bytes_sent FROM transfers"
            " WHERE status = 'DONE' AND finished_at >= %s AND finished_at < %s"
        )
        params: list[Any] = [since, until]
        if destination is not None:
            sql += " AND destination = %s"
            params.append(destination)
        sql += (
            "), top AS (SELECT host_id FROM d WHERE host_id IS NOT NULL GROUP BY host_id"
            " ORDER BY sum(bytes_sent) DESC NULLS LAST, host_id LIMIT %s)"
            " SELECT floor(extract(epoch FROM finished_at) / %s) * %s AS t,"
            " CASE WHEN host_id IN (SELECT host_id FROM top) THEN host_id END AS series,"
            " coalesce(sum(bytes_sent), 0)::float8 AS bytes FROM d GROUP BY 1, 2"
        )
        return await self.rows(sql, [*params, top, step_s, step_s])

    async def chart_latency(
        self, since: datetime, until: datetime, step_s: int, destination: str | None = None
    ) -> list[Row]:
        """p50, p95 and p99 per bucket (by finish time) of the seconds from a transfer's queue
        time (when it may start) to its delivery."""
        sql: LiteralString = (
            "SELECT t, percentile_cont(0.5) WITHIN GROUP (ORDER BY l) AS p50,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY l) AS p95,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY l) AS p99"
            " FROM (SELECT floor(extract(epoch FROM finished_at) / %s) * %s AS t,"
            " greatest(extract(epoch FROM finished_at - queue_time), 0)::float8 AS l"
            " FROM transfers WHERE status = 'DONE' AND finished_at >= %s AND finished_at < %s"
            " AND queue_time IS NOT NULL"
        )
        params: list[Any] = [step_s, step_s, since, until]
        if destination is not None:
            sql += " AND destination = %s"
            params.append(destination)
        sql += ") d GROUP BY t"
        return await self.rows(sql, params)

    # transfers ------------------------------------------------------------------------------

    async def transfer(self, transfer_id: str) -> Row | None:
        return await self.row("SELECT * FROM transfers WHERE transfer_id = %s", (transfer_id,))

    async def timeline(self, transfer_id: str) -> list[Row]:
        """Every event of the transfer, in the order it happened."""
        return await self.rows(
            "SELECT event_id::text, occurred_at, event_type, status, attempt, host_id,"
            " mover_id, message, bytes, actor, source FROM transfer_history"
            " WHERE transfer_id = %s ORDER BY occurred_at, event_id LIMIT 1000",
            (transfer_id,),
        )

    async def transfers(self, status: str, search: str, limit: int = 200) -> list[Row]:
        """Transfers by ``status`` and ``search`` (``search`` syntax: ``target=*.grib
        size>=700kb destination=X status=FAIL,STOP``; a free word is a transfer id, a
        destination or part of a target)."""
        query = parse(search)
        clauses, params = where(query, TRANSFER_FIELDS)
        sql: LiteralString = (
            "SELECT transfer_id, destination, target, status, priority, queue_time, updated_at,"
            " host_id, size, last_error FROM transfers WHERE true"
        )
        for clause in clauses:
            sql += " AND " + clause
        for word in query.words:
            sql += " AND (transfer_id = %s OR target ILIKE %s OR destination = %s)"
            params += [word, f"%{word}%", word]
        if status:
            sql += " AND status = %s"
            params.append(status)
        sql += " ORDER BY updated_at DESC NULLS LAST, transfer_id LIMIT %s"
        params.append(limit)
        return await self.rows(sql, params)

    # data files, hosts, movers, acquisition --------------------------------------------------

    async def data_files(self, search: str, limit: int = 200) -> list[Row]:
        return await self.rows(
            "SELECT data_file_id, destination, target, status, size, adler32, store,"
            " registered_at, stored_at, expiry_time, error FROM data_files"
            " WHERE %s = '' OR data_file_id = %s OR target ILIKE %s OR destination = %s"
            " ORDER BY registered_at DESC NULLS LAST, data_file_id LIMIT %s",
            (search, search, f"%{search}%", search, limit),
        )

    async def data_file(self, data_file_id: str) -> Row | None:
        return await self.row("SELECT * FROM data_files WHERE data_file_id = %s", (data_file_id,))

    async def transfers_of_file(self, data_file_id: str) -> list[Row]:
        return await self.rows(
            "SELECT transfer_id, destination, status, updated_at FROM transfers"
            " WHERE data_file_id = %s ORDER BY transfer_id LIMIT 500",
            (data_file_id,),
        )

    async def hosts(self) -> list[Row]:
        return await self.rows(
            "SELECT id, nickname, type, protocol, address, login, active, transfer_group,"
            " network_code, last_check_at, last_check_ok, last_error, last_error_at,"
            " last_bytes_per_second, transfers_done, transfers_failed, bytes_sent"
            " FROM hosts WHERE NOT removed ORDER BY id LIMIT 5000"
        )

    async def movers(self) -> list[Row]:
        return await self.rows(
            "SELECT mover_id, transfer_group, hostname, capacity, running, bytes_per_second,"
            " started_at, last_heartbeat_at, stopped_at, stop_reason FROM movers"
            " ORDER BY mover_id LIMIT 1000"
        )

    # portal traffic ------------------------------------------------------------------------

    async def portal_traffic(self) -> list[Row]:
        """Uploads, downloads, denials and failed sign-ins per data user and destination over
        the day before the newest portal row (the read models hold no wall clock)."""
        return await self.rows(
            "SELECT coalesce(data_user, '') AS data_user, coalesce(destination, '') AS destination,"
            " count(*) FILTER (WHERE kind = 'UPLOAD') AS uploads,"
            " coalesce(sum(bytes) FILTER (WHERE kind = 'UPLOAD'), 0) AS upload_bytes,"
            " count(*) FILTER (WHERE kind = 'DOWNLOAD') AS downloads,"
            " count(*) FILTER (WHERE kind = 'DOWNLOAD' AND complete) AS complete_downloads,"
            " coalesce(sum(bytes) FILTER (WHERE kind = 'DOWNLOAD'), 0) AS download_bytes,"
            " count(*) FILTER (WHERE kind = 'DENIED') AS denied,"
            " count(*) FILTER (WHERE kind IN ('SIGN_IN_FAILED', 'BANNED')) AS sign_in_failures,"
            " max(occurred_at) AS last_seen FROM portal_access"
            " WHERE occurred_at > (SELECT max(occurred_at) FROM portal_access) - interval '1 day'"
            " GROUP BY 1, 2 ORDER BY last_seen DESC LIMIT 500"
        )

    async def portal_sessions(self) -> list[Row]:
        """The sessions in progress, from each portal instance's latest report younger than two
        of its periods (an older one is from an instance that stopped or died)."""
        return await self.rows(
            "SELECT r.portal_id, r.reported_at, s->>'user' AS data_user,"
            " s->>'protocol' AS protocol, s->>'client_address' AS client_address,"
            " (s->>'opened_at')::timestamptz AS opened_at"
            " FROM portal_session_reports r CROSS JOIN jsonb_array_elements(r.sessions) s"
            " WHERE r.reported_at > now() - r.period_ms * 2 * interval '1 millisecond'"
            " ORDER BY opened_at LIMIT 1000"
        )

    async def portal_recent(self, limit: int = 200) -> list[Row]:
        """The newest portal rows: uploads, downloads, denials, sign-in failures and bans."""
        return await self.rows(
            "SELECT occurred_at, kind, data_user, destination, path, protocol, bytes,"
            " duration_ms, complete, reason, message, operation, client_address"
            " FROM portal_access ORDER BY occurred_at DESC LIMIT %s",
            (limit,),
        )

    async def acquisition(self) -> list[Row]:
        return await self.rows(
            "SELECT host_id, destination, last_listing_at, last_duration_ms,"
            " last_entries_listed, last_files_matched, last_files_new, last_errors,"
            " last_timed_out, listings, failed_listings, discovered, retrieved,"
            " retrieval_failures, last_error_at, last_error FROM acquisition_hosts"
            " ORDER BY host_id LIMIT 2000"
        )

    async def acquisition_files(self, limit: int = 100) -> list[Row]:
        return await self.rows(
            "SELECT host_id, path, destination, status, size, data_file_id, updated_at, error"
            " FROM acquisition_files ORDER BY updated_at DESC NULLS LAST LIMIT %s",
            (limit,),
        )

    # metrics and change detection -------------------------------------------------------------

    async def status_counts(self) -> list[Row]:
        return await self.rows(
            "SELECT destination, status, count FROM destination_status_counts WHERE count > 0"
            " ORDER BY destination, status"
        )

    async def totals(self) -> Row:
        found = await self.row(
            "SELECT (SELECT coalesce(sum(errors), 0) FROM destination_minutes) AS errors,"
            " (SELECT coalesce(sum(files), 0) FROM destination_minutes) AS files,"
            " (SELECT coalesce(sum(bytes), 0) FROM destination_minutes) AS bytes,"
            " (SELECT count(*) FROM dead_letters) AS dead_letters"
        )
        assert found is not None
        return found

    async def positions(self) -> list[Row]:
        return await self.rows(
            'SELECT projection, topic, "partition", "offset" FROM projection_position'
            ' ORDER BY projection, topic, "partition"'
        )

    async def version(self) -> int:
        """A number that moves whenever the projector commits (sum of stored offsets): the
        cheap "changed since" probe of the live updates."""
        found = await self.row(
            'SELECT coalesce(sum("offset" + 1), 0)::bigint AS v FROM projection_position'
        )
        return int(found["v"]) if found else 0
