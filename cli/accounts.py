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

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bus.tokens import TokenFile, TokenRole, tokens_path
from cli.terminal import AsJson, console, listing, refuse, settings
from projections.monitor.auth import Role, WebUsers

web_app = typer.Typer(no_args_is_help=True, help="Monitor (web) users and their roles.")
token_app = typer.Typer(no_args_is_help=True, help="API and monitor script tokens.")

ROLES = ", ".join(r.name.lower() for r in Role)
RoleArgument = Annotated[str, typer.Argument(help=f"one of {ROLES}")]


def secrets_dir() -> Path:
    return settings().var_dir / "secrets"


def tokens_file() -> TokenFile:
    return TokenFile(tokens_path(secrets_dir()))


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


def web_users() -> WebUsers:
    """The monitor's user file (created with its admin on first use, as the monitor does)."""
    return WebUsers.open(secrets_dir())


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
    users = web_users()
    if users.lookup(login) is not None:
        refuse(f"login: {login} exists already: use `ecpds user web role`")
    users.add(login, granted, _read_password(password_stdin))
    console.print(f"[green]added {escape(login)} ({granted.name.lower()})[/green]")


@web_app.command("role")
def web_role(login: str, role: RoleArgument) -> None:
    """Change a monitor user's role (effective at the user's next request)."""
    granted = _role(role)
    if not web_users().set_role(login, granted):
        refuse(f"login: no monitor user {login!r}")
    console.print(f"[green]{escape(login)} is now {granted.name.lower()}[/green]")


@web_app.command("remove")
def web_remove(login: str) -> None:
    """Remove a monitor user (its sessions are refused from the next request)."""
    if not web_users().remove(login):
        refuse(f"login: no monitor user {login!r}")
    console.print(f"[green]removed {escape(login)}[/green]")


@web_app.command("list")
def web_list(as_json: AsJson = False) -> None:
    """List monitor users and their roles (never their hashes)."""
    rows = [
        {"login": login, "role": granted.name.lower()} for login, granted in web_users().logins()
    ]
    listing(("login", "role"), rows, as_json)


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
def token_list(as_json: AsJson = False) -> None:
    """List tokens by name and role (never the tokens)."""
    rows = [{"name": t.name, "role": t.role.value} for t in tokens_file().tokens()]
    listing(("name", "role"), rows, as_json)
