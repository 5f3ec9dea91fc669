"""``ecpds user web`` and ``ecpds token``: the files the monitor and the API read, edited by
the CLI as an operator would, with no service running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bus.config.secrets import verify_password
from bus.settings import ROOT
from bus.tokens import Token, TokenFile, TokenRole
from projections.monitor.auth import Role, WebUsers


def ecpds(var: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, "ECPDS_VAR": str(var), "COLUMNS": "200"},
        timeout=60,
        check=False,
    )


def test_web_users_are_added_given_a_role_listed_and_removed(tmp_path: Path) -> None:
    """A user added with a role signs in with that role; a role change and a removal are what
    the monitor's user file says next; the list never shows a hash."""
    added = ecpds(
        tmp_path, "user", "web", "add", "ann", "viewer", "--password-stdin", stdin="pw1\n"
    )
    assert added.returncode == 0, added.stdout + added.stderr
    users = WebUsers.open(tmp_path / "secrets")
    found = users.lookup("ann")
    assert found is not None
    role, password_hash = found
    assert role is Role.VIEWER
    assert verify_password(password_hash, "pw1")
    assert ecpds(tmp_path, "user", "web", "role", "ann", "operator").returncode == 0
    assert users.role_of("ann") is Role.OPERATOR
    listed = ecpds(tmp_path, "user", "web", "list")
    assert "ann" in listed.stdout
    assert "admin" in listed.stdout
    assert "$argon2" not in listed.stdout
    twice = ecpds(tmp_path, "user", "web", "add", "ann", "--password-stdin", stdin="pw2\n")
    assert twice.returncode == 2
    assert "exists already" in twice.stdout
    bad = ecpds(tmp_path, "user", "web", "role", "ann", "king")
    assert bad.returncode == 2
    assert "role" in bad.stdout
    assert ecpds(tmp_path, "user", "web", "remove", "ann").returncode == 0
    assert users.role_of("ann") is None
    assert users.role_of("admin") is Role.ADMINISTRATOR


def test_tokens_are_created_with_a_role_listed_and_revoked(tmp_path: Path) -> None:
    """A created token is printed once and checks with its role; revoked, it is refused."""
    created = ecpds(tmp_path, "token", "create", "reader", "--role", "viewer")
    assert created.returncode == 0, created.stdout + created.stderr
    token = created.stdout.strip().splitlines()[-1]
    book = TokenFile(tmp_path / "secrets" / "api-tokens")
    assert book.check(token) == Token("reader", TokenRole.VIEWER)
    listed = ecpds(tmp_path, "token", "list")
    assert "reader" in listed.stdout
    assert token not in listed.stdout
    assert ecpds(tmp_path, "token", "revoke", "reader").returncode == 0
    assert book.check(token) is None
    assert ecpds(tmp_path, "token", "revoke", "reader").returncode == 2
