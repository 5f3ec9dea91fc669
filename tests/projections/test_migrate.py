"""Read-model migrations against the real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from projections.db import connect
from projections.migrate import migrate, migrations
from tests.projections.support import drop

pytestmark = pytest.mark.postgres


def test_migrations_are_numbered_in_order() -> None:
    """Migration files are found, numbered from 1 without gaps."""
    versions = [m.version for m in migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_migrating_twice_changes_nothing(postgres: str, schema: str) -> None:
    """A second run applies nothing and leaves one row per migration."""
    assert await migrate(postgres, schema) == []
    conn = await connect(postgres, schema, autocommit=True)
    try:
        cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY 1")
        assert [v for (v,) in await cur.fetchall()] == [m.version for m in migrations()]
    finally:
        await conn.close()


async def test_two_starters_at_once_apply_each_migration_once(postgres: str, unique: str) -> None:
    """Two concurrent migrations of a new schema apply every file exactly once between them."""
    name = f"rm_{unique}_race"
    try:
        first, second = await asyncio.gather(migrate(postgres, name), migrate(postgres, name))
        assert sorted(first + second) == [m.version for m in migrations()]
    finally:
        await drop(postgres, name)


def test_schema_names_are_checked() -> None:
    """A schema name that is not a plain identifier is refused before any SQL runs."""
    with pytest.raises(ValueError, match="schema"):
        asyncio.run(migrate("postgresql://unused", "bad; DROP"))
