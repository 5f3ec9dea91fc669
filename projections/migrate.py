"""Schema migrations of the read models: numbered SQL files applied in order, each once.

Rules kept here: files are ``migrations/NNNN_name.sql``; each is applied in its own transaction
together with its row in ``schema_migrations``; the whole run holds a transaction-level advisory
lock derived from the schema name, so two projectors starting at once apply each file once.
Running ``migrate`` again changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from projections.db import checked_schema, connect

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


def migrations() -> tuple[Migration, ...]:
    """Every migration shipped in ``projections/migrations``, by version."""
    found = []
    for entry in resources.files("projections").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number: {versions}")
    return tuple(found)


async def migrate(dsn: str, schema: str) -> list[int]:
    """Create ``schema`` if needed and apply the missing migrations; the versions applied."""
    checked_schema(schema)
    conn = await connect(dsn, schema)
    try:
        return await migrate_connection(conn, schema)
    finally:
        await conn.close()


async def migrate_connection(conn: psycopg.AsyncConnection, schema: str) -> list[int]:
    """``migrate`` on an open connection (left idle, not in a transaction)."""
    applied: list[int] = []
    for migration in migrations():
        async with conn.transaction():
            # xact lock: released by each commit, so a second starter waits, then sees the row
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ecpds:{schema}",))
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            await conn.execute(
                sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
            )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            )
            if await cur.fetchone() is not None:
                continue
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    return applied
