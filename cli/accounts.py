"""``ecpds user web add|role|remove|list`` (monitor users) and ``ecpds token
create|revoke|list`` (API and monitor script tokens).

Both live in files under ``$ECPDS_VAR/secrets`` (mode 0600, directory 0700), not in events:
they guard the doors to the event log, so they must not travel on it. Monitor users are
``login:role:argon2hash`` lines in ``web-users`` (the monitor re-reads the file on every request,
so a role change or a removal takes effect at once); tokens are ``bus.tokens`` lines in
``api-tokens``. Files are rewritten whole and renamed into place. A token is printed once, when
created; only its SHA-256 is kept.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bus.config.secrets import hash_password
from bus.tokens import TokenFile, TokenRole
from cli.terminal import console, refuse, run_sync, settings
from projections.monitor.auth import WEB_USERS, Role, WebUsers

web_app = typer.Typer(no_args_is_help=True, help="Monitor (web) users and their roles.")
token_app = typer.Typer(no_args_is_help=True, help="API and monitor script tokens.")

ROLES = ", ".join(r.name.lower() for r in Role)
RoleArgument = Annotated[str, typer.Argument(help=f"one of {ROLES}")]


def secrets_dir() -> Path:
    return settings().var_dir / "secrets"


def tokens_file() -> TokenFile:
    return TokenFile(secrets_dir() / "api-tokens")


def _role(text: str) -> Role:
    try:
        return Role.parse(text)
    except KeyError:
        refuse(f"role: {text!r} is not one of {ROLES}")


def _read_password(stdin: bool) -> str:
    if stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            refuse("password: nothing on stdin")
        return line
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


class WebUserFile:
    """The ``web-users`` lines, edited in place (comments and order kept)."""

    def __init__(self, directory: Path) -> None:
        WebUsers.open(directory)  # the monitor's first-use file (with its admin) if missing
        self.path = directory / WEB_USERS
        self.lines = self.path.read_text().splitlines()

    def users(self) -> list[tuple[str, str]]:
        found = []
        for line in self.lines:
            if line.strip() and not line.startswith("#"):
                login, _, rest = line.partition(":")
                found.append((login, rest.partition(":")[0]))
        return found

    def index(self, login: str) -> int | None:
        for i, line in enumerate(self.lines):
            if not line.startswith("#") and line.partition(":")[0] == login:
                return i
        return None

    def save(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{line}\n" for line in self.lines))
        os.replace(temporary, self.path)


@web_app.command("add")
def web_add(
    login: str,
    role: RoleArgument = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Add a monitor user with a role (the password is prompted, or read from stdin)."""
    if not login or ":" in login or any(c.isspace() for c in login):
        refuse(f"login: {login!r} is not a login (no ':' and no spaces)")
    granted = _role(role)
    users = WebUserFile(secrets_dir())
    if users.index(login) is not None:
        refuse(f"login: {login} exists already: use `ecpds user web role`")
    digest = run_sync(lambda: hash_password(_read_password(password_stdin)))
    users.lines.append(f"{login}:{granted.name.lower()}:{digest}")
    users.save()
    console.print(f"[green]added {escape(login)} ({granted.name.lower()})[/green]")


@web_app.command("role")
def web_role(login: str, role: RoleArgument) -> None:
    """Change a monitor user's role (effective at the user's next request)."""
    granted = _role(role)
    users = WebUserFile(secrets_dir())
    i = users.index(login)
    if i is None:
        refuse(f"login: no monitor user {login!r}")
    _, _, rest = users.lines[i].partition(":")
    users.lines[i] = f"{login}:{granted.name.lower()}:{rest.partition(':')[2]}"
    users.save()
    console.print(f"[green]{escape(login)} is now {granted.name.lower()}[/green]")


@web_app.command("remove")
def web_remove(login: str) -> None:
    """Remove a monitor user (its sessions are refused from the next request)."""
    users = WebUserFile(secrets_dir())
    i = users.index(login)
    if i is None:
        refuse(f"login: no monitor user {login!r}")
    del users.lines[i]
    users.save()
    console.print(f"[green]removed {escape(login)}[/green]")


@web_app.command("list")
def web_list() -> None:
    """List monitor users and their roles (never their hashes)."""
    table = Table("login", "role")
    for login, role in WebUserFile(secrets_dir()).users():
        table.add_row(escape(login), role)
    console.print(table)


@token_app.command("create")
def token_create(
    name: str,
    role: Annotated[str, typer.Option(help="viewer (read-only) or operator")] = "viewer",
) -> None:
    """Create a token and print it once (only its SHA-256 is kept)."""
    if role not in TokenRole.__members__.values():
        refuse(f"role: {role!r} is not one of viewer, operator")
    try:
        token = tokens_file().create(name, TokenRole(role))
    except ValueError as error:
        refuse(f"name: {error}")
    console.print(f"token {escape(name)} ({role}), shown once: keep it secret")
    print(token)


@token_app.command("revoke")
def token_revoke(name: str) -> None:
    """Revoke a token by name (refused from the next request)."""
    if not tokens_file().revoke(name):
        refuse(f"name: no token named {name!r}")
    console.print(f"[green]revoked {escape(name)}[/green]")


@token_app.command("list")
def token_list() -> None:
    """List tokens by name and role (never the tokens)."""
    table = Table("name", "role")
    for token in tokens_file().tokens():
        table.add_row(escape(token.name), token.role.value)
    console.print(table)
