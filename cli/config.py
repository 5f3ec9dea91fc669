"""``ecpds destination|host|user add|edit|show|list|remove``, ``ecpds host trust-key`` and
``ecpds config apply|check|export|rotate-key``.

Every change goes the same way: read the live configuration from ``ecpds.config``, plan the
change against it (``bus.config.apply``: validated, references checked), show it, publish the
events, and return once the live view shows them. A refusal prints the field and the reason and
exits 2; when a file or a command has several problems, every one is printed, each named as the
operator wrote it (``hosts[0].options.acquisition.fileage``), never by a Python name. ``config
check`` validates a file offline (no broker), as ``apply`` would before planning.

Secrets never travel in clear: a host password is encrypted with the operator key, a data user's
password hashed with argon2 and the hash encrypted with the operator key. Passwords are never
command-line arguments (they would sit in shell history and in ``ps``):
``--ask-password`` prompts, ``--password-stdin`` reads the first line of stdin.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
import yaml
from rich.markup import escape

from bus.config import Entity, Kind, identity, kind_of
from bus.config.apply import (
    Change,
    current_entity,
    events_for,
    plan,
    reencrypt,
    removal,
    resolve,
)
from bus.config.hostkeys import event_key, trusted
from bus.config.secrets import (
    ClearSecret,
    OperatorKey,
    begin_rotation,
    finish_rotation,
    next_key_file,
    retired_key_file,
    seal_password,
)
from bus.config.validate import Problems
from bus.config.view import ConfigView, LiveConfig
from bus.config.yamlio import assignments, build, export, load, to_mapping, with_fields
from bus.errors import ConfigurationError
from bus.events.config import Association, DataUser, Destination, Host
from bus.publisher import Publisher
from bus.topics import CONFIG
from cli import status
from cli.credentials import operator
from cli.terminal import (
    AsJson,
    Row,
    actor,
    console,
    listing,
    read_config,
    refuse,
    run,
    run_sync,
    settings,
)
from projections.db import DEFAULT_SCHEMA

T = TypeVar("T")

destination_app = typer.Typer(no_args_is_help=True, help="Define and inspect destinations.")
host_app = typer.Typer(no_args_is_help=True, help="Define and inspect hosts.")
user_app = typer.Typer(no_args_is_help=True, help="Define and inspect data users (portal).")
config_app = typer.Typer(no_args_is_help=True, help="Configuration as code (YAML).")

TopicOption = Annotated[str, typer.Option("--topic", hidden=True, help="configuration topic")]
Schema = Annotated[str, typer.Option("--schema", hidden=True, help="read-model schema")]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="FIELD=VALUE (YAML value: 30s, 10MB, yes, a list)"),
]
AskPassword = Annotated[bool, typer.Option("--ask-password", help="prompt for the password")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from stdin")
]


def _topic_callback(ctx: typer.Context, topic: TopicOption = CONFIG) -> None:
    ctx.obj = topic


for _app in (destination_app, host_app, user_app, config_app):
    _app.callback()(_topic_callback)


async def _commit(topic: str, make: Callable[[ConfigView], list[Change]]) -> list[Change]:
    """Plan against the live view, show the plan, publish it and wait until the view has it."""
    found = settings()
    operator(found)  # refused (exit 2) before anything is read or published
    async with LiveConfig(found.kafka_bootstrap, topic) as live:
        changes = every_problem(lambda: make(live.view))
        show_plan(changes)
        if not changes:
            return changes
        source = f"cli/{found.instance}"
        items = [
            (topic, key, event) for key, event in events_for(changes, source=source, actor=actor())
        ]
        async with Publisher(found.kafka_bootstrap, client_id="ecpds-cli") as publisher:
            published = await publisher.publish_many(items)
        await live.reached(published)
    console.print(f"[green]applied {len(changes)} change(s)[/green]")
    return changes


def show_plan(changes: Sequence[Change]) -> None:
    """Print a plan: + created, ~ changed (field: old -> new), - removed."""
    if not changes:
        console.print("no changes")
        return
    for change in changes:
        name = f"{change.kind} {escape(change.ident)}"
        if change.action == "create":
            console.print(f"[green]+ {name}[/green]")
        elif change.action == "remove":
            console.print(f"[red]- {name}[/red]")
        else:
            console.print(f"[yellow]~ {name}[/yellow]")
            for d in change.diffs:
                console.print(f"    {d.name}: {escape(d.old)} [bold]->[/bold] {escape(d.new)}")


def every_problem(work: Callable[[], T]) -> T:
    """Run ``work``; when it refuses with several problems, print each one and exit 2 (a single
    refusal goes on to the caller's handling, which prints it the same way)."""
    try:
        return work()
    except Problems as problems:
        console.print(f"[red]refused:[/red] {len(problems.problems)} problems")
        for problem in problems.problems:
            console.print(f"  {escape(problem.field)}: {escape(problem.reason)}")
        raise typer.Exit(2) from None


def _password(ask: bool, stdin: bool) -> ClearSecret | None:
    if ask and stdin:
        raise ConfigurationError("password", "give --ask-password or --password-stdin, not both")
    if ask:
        return ClearSecret(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    if stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ConfigurationError("password", "nothing on stdin")
        return ClearSecret(line)
    return None


def _build(cls: type[Any], prefix: str, fields: dict[str, Any]) -> Any:
    return build(cls, prefix, {k: v for k, v in fields.items() if v is not None})


def _add(view: ConfigView, entity: Entity, extra: Sequence[Entity] = ()) -> list[Change]:
    kind, ident = kind_of(entity), identity(entity)
    if current_entity(view, kind, ident) is not None:
        raise ConfigurationError(kind.replace("-", "_"), f"{ident} exists already: use edit")
    return plan(view, [entity, *extra])


def _edit(
    view: ConfigView, kind: Kind, ident: str, make: Callable[[Entity], Entity]
) -> list[Change]:
    current = current_entity(view, kind, ident)
    if current is None:
        raise ConfigurationError(kind.replace("-", "_"), f"no {kind} named {ident!r}")
    return plan(view, [make(current)])


def _show(
    view: ConfigView, kind: Kind, ident: str, found: Row | None = None, as_json: bool = False
) -> None:
    entity = current_entity(view, kind, ident)
    if entity is None:
        raise ConfigurationError(kind.replace("-", "_"), f"no {kind} named {ident!r}")
    data = to_mapping(entity)
    if isinstance(entity, Destination):
        data["hosts"] = [h.id for h in view.hosts_for(entity.name)]
        data["aliases_resolved"] = list(view.aliases_of(entity.name))
        shown = status.row(view, entity, found)
        data["status"] = {
            k: shown[k]
            for k in ("status", "status_name", "status_reason", "current_host", *status.COUNTS)
        }
        if not as_json:
            reason = f" - {escape(shown['status_reason'])}" if shown["status_reason"] else ""
            console.print(f"status: {status.badge(shown['status'], None, shown['pickup'])}{reason}")
            counts = "  ".join(f"{c} {shown[c] if found else '?'}" for c in status.COUNTS)
            console.print(escape(counts))
    if isinstance(entity, Host):
        data["destinations"] = list(view.destinations_of(entity.id))
        for label, keys in (("host_key", view.host_keys), ("refused_host_key", view.refused_keys)):
            key = keys.get(entity.id)
            if key is not None:
                data[label] = f"{key.fingerprint} {key.key_type} at {key.address}".strip()
    if as_json:
        typer.echo(orjson.dumps(data, default=str).decode())
        return
    console.print(escape(yaml.safe_dump(data, sort_keys=False).rstrip()))


# --- destination ----------------------------------------------------------------------------


@destination_app.command("add")
def destination_add(
    ctx: typer.Context,
    name: str,
    type_: Annotated[str, typer.Option("--type", "-t")] = "dissemination",
    transfer_group: Annotated[str, typer.Option("--transfer-group", "-g")] = "default",
    country: Annotated[str | None, typer.Option()] = None,
    comment: Annotated[str | None, typer.Option()] = None,
    sets: Sets = None,
) -> None:
    """Define a new destination."""
    fields: dict[str, Any] = {"name": name, "type": type_, "transfer_group": transfer_group}
    fields |= {"country": country, "comment": comment, **assignments(sets or ())}
    entity = run_sync(lambda: every_problem(lambda: _build(Destination, "destination", fields)))
    run(lambda: _commit(ctx.obj, lambda view: _add(view, entity)))


@destination_app.command("edit")
def destination_edit(ctx: typer.Context, name: str, sets: Sets = None) -> None:
    """Change fields of a destination (--set FIELD=VALUE)."""
    values = run_sync(lambda: assignments(sets or ()))
    make = lambda view: _edit(  # noqa: E731
        view, "destination", name, lambda d: with_fields(d, values)
    )
    run(lambda: _commit(ctx.obj, make))


@destination_app.command("show")
def destination_show(
    ctx: typer.Context, name: str, as_json: AsJson = False, schema: Schema = DEFAULT_SCHEMA
) -> None:
    """Show a destination: its status and counts, its hosts in priority order, its aliases."""
    view = run(lambda: read_config(ctx.obj))
    found = run(lambda: status.overview(settings(), schema))
    run_sync(lambda: _show(view, "destination", name, (found or {}).get(name), as_json))


@destination_app.command("list")
def destination_list(
    ctx: typer.Context, as_json: AsJson = False, schema: Schema = DEFAULT_SCHEMA
) -> None:
    """List destinations with their status and transfer counts (queued, running, failed, held,
    done: from the read models the monitor reads)."""
    view = run(lambda: read_config(ctx.obj))
    found = run(lambda: status.overview(settings(), schema))
    rows = [
        status.row(view, d, (found or {}).get(d.name))
        for d in sorted(view.destinations.values(), key=lambda d: d.name)
    ]
    columns = ("name", "status", *status.COUNTS, "current_host", "type", "group", "hosts")
    styled = {
        "status": lambda r: status.badge(r["status"], r["status_reason"], r["pickup"]),
        "failed": lambda r: f"[red]{r['failed']}[/red]" if r["failed"] else "0",
    }
    listing(columns, rows, as_json, styled)


@destination_app.command("remove")
def destination_remove(ctx: typer.Context, name: str) -> None:
    """Remove a destination and its host associations."""
    run(lambda: _commit(ctx.obj, lambda view: removal(view, "destination", name)))


# --- host -------------------------------------------------------------------------------------


@host_app.command("add")
def host_add(
    ctx: typer.Context,
    host_id: Annotated[str, typer.Argument(metavar="ID")],
    protocol: Annotated[str, typer.Option("--protocol", "-p")],
    address: Annotated[str, typer.Option("--address", "-a")],
    nickname: Annotated[str | None, typer.Option()] = None,
    type_: Annotated[str, typer.Option("--type", "-t")] = "dissemination",
    login: Annotated[str | None, typer.Option()] = None,
    directory: Annotated[str | None, typer.Option()] = None,
    destination: Annotated[
        list[str] | None, typer.Option("--destination", "-d", help="associate with")
    ] = None,
    priority: Annotated[int, typer.Option(help="association priority (0 first)")] = 0,
    ask_password: AskPassword = False,
    password_stdin: PasswordStdin = False,
    sets: Sets = None,
) -> None:
    """Define a new host, optionally associated with destinations."""

    def build_host() -> tuple[Host, list[Any]]:
        fields: dict[str, Any] = {"id": host_id, "nickname": nickname or host_id, "type": type_}
        fields |= {"protocol": protocol, "address": address, "login": login}
        fields |= {"directory": directory, **assignments(sets or ())}
        host: Host = _build(Host, "host", fields)
        links = [
            _build(
                Association,
                "association",
                {"destination": d, "host": host_id, "priority": priority},
            )
            for d in destination or ()
        ]
        return host, links

    host, links = run_sync(lambda: every_problem(build_host))
    password = run_sync(lambda: _password(ask_password, password_stdin))
    if password is not None:
        key = run_sync(lambda: OperatorKey.load(settings().key_file))
        host = dataclasses.replace(host, credentials=key.encrypt(password))
    run(lambda: _commit(ctx.obj, lambda view: _add(view, host, links)))


@host_app.command("edit")
def host_edit(
    ctx: typer.Context,
    host_id: Annotated[str, typer.Argument(metavar="ID")],
    ask_password: AskPassword = False,
    password_stdin: PasswordStdin = False,
    sets: Sets = None,
) -> None:
    """Change fields of a host (--set FIELD=VALUE), or its password."""
    values = run_sync(lambda: assignments(sets or ()))
    password = run_sync(lambda: _password(ask_password, password_stdin))
    secret = None
    if password is not None:
        secret = run_sync(lambda: OperatorKey.load(settings().key_file).encrypt(password))

    def make(h: Entity) -> Entity:
        host = with_fields(h, values)
        assert isinstance(host, Host)
        return dataclasses.replace(host, credentials=secret) if secret is not None else host

    run(lambda: _commit(ctx.obj, lambda view: _edit(view, "host", host_id, make)))


@host_app.command("show")
def host_show(ctx: typer.Context, host_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Show a host (credentials only as the id of the key that encrypted them)."""
    view = run(lambda: read_config(ctx.obj))
    run_sync(lambda: _show(view, "host", host_id))


@host_app.command("list")
def host_list(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List hosts."""
    view = run(lambda: read_config(ctx.obj))
    rows = [
        {
            "id": h.id,
            "type": h.type.value.lower(),
            "protocol": h.protocol,
            "address": h.address,
            "active": h.active,
            "destinations": list(view.destinations_of(h.id)),
        }
        for h in sorted(view.hosts.values(), key=lambda h: h.id)
    ]
    listing(("id", "type", "protocol", "address", "active", "destinations"), rows, as_json)


@host_app.command("remove")
def host_remove(ctx: typer.Context, host_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove a host and its associations."""
    run(lambda: _commit(ctx.obj, lambda view: removal(view, "host", host_id)))


@host_app.command("trust-key")
def host_trust_key(
    ctx: typer.Context,
    host_id: Annotated[str, typer.Argument(metavar="ID")],
    fingerprint: Annotated[
        str | None,
        typer.Option("--fingerprint", help="SHA256:... (default: the key last refused)"),
    ] = None,
) -> None:
    """Accept a host's SSH host key: the one its last refused connection offered, or the given
    fingerprint. Connections offering it are accepted from now on; any other is refused."""
    run(lambda: _trust_key(ctx.obj, host_id, fingerprint))


async def _trust_key(topic: str, host_id: str, fingerprint: str | None) -> None:
    found = settings()
    operator(found)  # refused (exit 2) before anything is read or published
    async with LiveConfig(found.kafka_bootstrap, topic) as live:
        event = trusted(live.view, host_id, fingerprint, f"cli/{found.instance}", actor())
        async with Publisher(found.kafka_bootstrap, client_id="ecpds-cli") as publisher:
            published = await publisher.publish(topic, event_key(event.key), event)
        await live.reached([published])
    console.print(f"[green]trusted host key {event.key.fingerprint} for host {host_id}[/green]")


# --- user -------------------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    login: str,
    destination: Annotated[list[str] | None, typer.Option("--destination", "-d")] = None,
    operation: Annotated[
        list[str] | None, typer.Option("--operation", "-o", help="dir, get, put, ...")
    ] = None,
    ask_password: AskPassword = False,
    password_stdin: PasswordStdin = False,
    sets: Sets = None,
) -> None:
    """Define a new data user (portal account)."""
    fields = {"login": login, "destinations": destination or [], "operations": operation or []}
    user: DataUser = run_sync(
        lambda: every_problem(
            lambda: _build(DataUser, "data_user", fields | assignments(sets or ()))
        )
    )
    password = run_sync(lambda: _password(ask_password, password_stdin))
    if password is not None:
        key = run_sync(lambda: OperatorKey.load(settings().key_file))
        user = dataclasses.replace(user, password_secret=seal_password(password, key))
    run(lambda: _commit(ctx.obj, lambda view: _add(view, user)))


@user_app.command("edit")
def user_edit(
    ctx: typer.Context,
    login: str,
    ask_password: AskPassword = False,
    password_stdin: PasswordStdin = False,
    sets: Sets = None,
) -> None:
    """Change fields of a data user (--set FIELD=VALUE), or its password."""
    values = run_sync(lambda: assignments(sets or ()))
    password = run_sync(lambda: _password(ask_password, password_stdin))
    sealed = None
    if password is not None:
        key = run_sync(lambda: OperatorKey.load(settings().key_file))
        sealed = seal_password(password, key)

    def make(u: Entity) -> Entity:
        user = with_fields(u, values)
        assert isinstance(user, DataUser)
        if sealed is None:
            return user
        return dataclasses.replace(user, password_hash=None, password_secret=sealed)

    run(lambda: _commit(ctx.obj, lambda view: _edit(view, "data-user", login, make)))


@user_app.command("show")
def user_show(ctx: typer.Context, login: str) -> None:
    """Show a data user."""
    view = run(lambda: read_config(ctx.obj))
    run_sync(lambda: _show(view, "data-user", login))


@user_app.command("list")
def user_list(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List data users."""
    view = run(lambda: read_config(ctx.obj))
    rows = [
        {
            "login": u.login,
            "active": u.active,
            "destinations": list(u.destinations),
            "operations": [o.value.lower() for o in u.operations],
        }
        for u in sorted(view.users.values(), key=lambda u: u.login)
    ]
    listing(("login", "active", "destinations", "operations"), rows, as_json)


@user_app.command("remove")
def user_remove(ctx: typer.Context, login: str) -> None:
    """Remove a data user."""
    run(lambda: _commit(ctx.obj, lambda view: removal(view, "data-user", login)))


# --- config apply / export --------------------------------------------------------------------


@config_app.command("apply")
def config_apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", exists=True, dir_okay=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the plan only")] = False,
    prune: Annotated[bool, typer.Option(help="remove what the file does not define")] = False,
) -> None:
    """Make the configuration what FILE says: shows the diff, publishes only the changes."""
    document = run_sync(lambda: every_problem(lambda: load(file.read_text())))
    key = run_sync(lambda: OperatorKey.load(settings().key_file))

    def make(view: ConfigView) -> list[Change]:
        return plan(view, resolve(document, view, key), prune=prune, where=document.where)

    if dry_run:
        view = run(lambda: read_config(ctx.obj))
        show_plan(run_sync(lambda: every_problem(lambda: make(view))))
        return
    run(lambda: _commit(ctx.obj, make))


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Option("--file", "-f", exists=True, dir_okay=False)],
) -> None:
    """Validate FILE as `apply` would, without a broker: every problem is listed, exit 2."""
    document = run_sync(lambda: every_problem(lambda: load(file.read_text())))
    # references are checked against what the file itself defines (no live configuration)
    changes = run_sync(
        lambda: every_problem(lambda: plan(ConfigView(), document.entities, where=document.where))
    )
    console.print(f"[green]{escape(str(file))}: valid ({len(changes)} definitions)[/green]")


@config_app.command("export")
def config_export(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default stdout)")
    ] = None,
) -> None:
    """Write the current configuration as YAML (no clear secret)."""
    view = run(lambda: read_config(ctx.obj))
    text = export(view)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"exported to {escape(str(output))}")


@config_app.command("rotate-key")
def config_rotate_key(ctx: typer.Context) -> None:
    """Make a new operator key and re-encrypt every secret with it (host passwords and data
    users' hashes) through new events; the old key is kept beside it, as `.retired`."""
    run_sync(lambda: operator(settings()))  # before a new key is even made
    key_file = settings().key_file
    if not key_file.exists():
        refuse(f"credentials: no operator key file at {key_file}: nothing to rotate")
    new = run_sync(lambda: begin_rotation(key_file))
    console.print(f"new key {new.key_id} in {escape(str(next_key_file(key_file)))} until done")
    # the loaded key decrypts with the current key, the new one and a retired one
    reader = run_sync(lambda: OperatorKey.load(key_file, create=False))
    changes = run(lambda: _commit(ctx.obj, lambda view: plan(view, reencrypt(view, reader, new))))
    run_sync(lambda: finish_rotation(key_file))
    console.print(
        f"[green]rotated: {len(changes)} secret(s) re-encrypted with key {new.key_id}[/green]\n"
        f"key:          {escape(str(key_file))} ({new.key_id})\n"
        f"previous key: {escape(str(retired_key_file(key_file)))} ({reader.key_id}), kept so "
        "messages already sent still decrypt; delete it once none is in flight"
    )
