"""The private PostgreSQL cluster asks every TCP client for its SCRAM password, and the
application role ``ecpds`` the read models run as is no superuser: it creates and owns schemas
in its database, and is refused whatever needs a superuser or a role manager."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from bus.settings import Settings


def test_application_role_is_not_a_superuser(postgres: str) -> None:
    """``ecpds`` has neither SUPERUSER, CREATEROLE nor CREATEDB, and superuser actions fail."""
    with psycopg.connect(postgres, autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
        assert row == ("ecpds", False, False, False)
        for statement in (
            "CREATE ROLE intruder",
            "ALTER SYSTEM SET work_mem = '8MB'",
            "COPY (SELECT 1) TO PROGRAM 'true'",
            "CREATE DATABASE intruder",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)


def test_application_role_owns_the_schemas_it_creates(postgres: str) -> None:
    """A rebuild's shadow schema can be created, renamed and dropped by ``ecpds``, which owns it."""
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS auth_probe_x CASCADE")
        conn.execute("CREATE SCHEMA auth_probe")
        conn.execute("ALTER SCHEMA auth_probe RENAME TO auth_probe_x")
        owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'auth_probe_x'"
        ).fetchone()
        conn.execute("DROP SCHEMA auth_probe_x")
        assert owner == ("ecpds",)


def test_connection_without_password_is_refused(
    settings: Settings, postgres: str, tmp_path: Path
) -> None:
    """Over TCP, ``ecpds`` and the admin role are both asked for a password; none given, refused."""
    empty = tmp_path / "pgpass"
    empty.write_text("")
    empty.chmod(0o600)
    for role in ("ecpds", "ecpds_admin"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(
                f"postgresql://{role}@127.0.0.1:{settings.pg_port}/ecpds?passfile={empty}",
                connect_timeout=10,
            )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            f"postgresql://ecpds:wrong@127.0.0.1:{settings.pg_port}/ecpds", connect_timeout=10
        )


def test_password_file_is_private(settings: Settings, postgres: str) -> None:
    """The generated password file is 0600 in a 0700 directory, and the DSN names only its path."""
    passfile = settings.var_dir / "secrets" / "pgpass"
    assert passfile.stat().st_mode & 0o777 == 0o600
    assert passfile.parent.stat().st_mode & 0o777 == 0o700
    password = passfile.read_text().strip().rsplit(":", 1)[1]
    assert len(password) >= 20
    assert password not in postgres


def test_sslmode_in_the_dsn_reaches_the_client(postgres: str) -> None:
    """``sslmode=require`` in the DSN is obeyed: the local cluster (no TLS) is then refused."""
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(f"{postgres}&sslmode=require", connect_timeout=10)
