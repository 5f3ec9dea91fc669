"""Connections to the read-model database: a DSN plus the schema the read models live in.

Rule kept here: every connection sets ``search_path`` to the read-model schema and SQL never
names a schema, so names resolve when a statement runs. That is what lets a rebuild build
``<schema>_rebuild`` with the same SQL and then swap it in by renaming schemas, while the live
projector keeps its connection.
"""

from __future__ import annotations

import re

import psycopg

DEFAULT_SCHEMA = "ecpds_rm"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


def checked_schema(schema: str) -> str:
    """The schema name, if it is a plain lower-case identifier (it is spliced into options)."""
    if not _IDENTIFIER.match(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


async def connect(dsn: str, schema: str, *, autocommit: bool = False) -> psycopg.AsyncConnection:
    """A connection whose ``search_path`` is ``schema`` (then ``public``).

    ``synchronous_commit`` is off: a server crash may then lose the last transactions, but each
    loses its rows together with its stored position, so the projector re-projects them and
    exactly-once still holds; in return a commit does not wait for the disk.
    """
    options = f"-c search_path={checked_schema(schema)},public -c synchronous_commit=off"
    return await psycopg.AsyncConnection.connect(
        dsn, options=options, autocommit=autocommit, application_name="ecpds-projections"
    )
