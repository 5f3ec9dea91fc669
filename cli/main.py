"""The ``ecpds`` command: operator verbs and ``ecpds up``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bus import codec, health
from bus.errors import EcpdsError
from bus.logging import configure
from bus.settings import Settings
from bus.topics import DEFAULT_TRANSFER_GROUP, apply_topics, catalogue, orders_topic
from cli import events as events_cli
from cli import openecpds, supervisor
from cli.accounts import token_app, web_app
from cli.config import config_app, destination_app, host_app, user_app
from cli.products import product_app
from cli.put import put_command
from cli.requests import transfer_app
from cli.terminal import AsJson, console, listing


class _Ecpds(typer.Typer):
    """The ``ecpds`` app, which also takes OpenECPDS's command line (``cli.openecpds``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argv = sys.argv[1:]
        if not args and "args" not in kwargs and openecpds.is_openecpds(argv):
            try:
                kwargs["args"] = openecpds.translate(argv)
            except openecpds.Unsupported as error:
                Console(stderr=True).print(f"[red]refused:[/red] {escape(str(error))}")
                raise SystemExit(2) from None
        return super().__call__(*args, **kwargs)


app = _Ecpds(no_args_is_help=True, add_completion=False, help=__doc__)
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics ecpds declares.")
events_app = typer.Typer(no_args_is_help=True, help="Read the event log.")
projections_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL read models.")
app.add_typer(topics_app, name="topics")
app.add_typer(events_app, name="events")
app.add_typer(projections_app, name="projections")
app.add_typer(destination_app, name="destination")
app.add_typer(host_app, name="host")
app.add_typer(transfer_app, name="transfer")
app.add_typer(product_app, name="product")
app.add_typer(user_app, name="user")
user_app.add_typer(web_app, name="web")
app.add_typer(token_app, name="token")
app.add_typer(config_app, name="config")
app.command("put")(put_command)


def settings() -> Settings:
    try:
        s = Settings.from_env()
    except EcpdsError as error:
        console.print(f"[red]invalid configuration:[/red] {error}")
        raise typer.Exit(2) from error
    configure(s)
    return s


@app.command()
def up(
    only: Annotated[list[str] | None, typer.Option(help="run only these components")] = None,
    keep_infra: Annotated[
        bool, typer.Option(help="leave Kafka/PostgreSQL running on exit")
    ] = False,
) -> None:
    """Start Kafka, PostgreSQL, MQTT and every ecpds component; Ctrl-C stops all."""
    s = settings()
    try:
        asyncio.run(supervisor.up(s, only, keep_infra))
    except EcpdsError as error:
        console.print(f"[red]ecpds up failed:[/red] {error}")
        raise typer.Exit(1) from error


@app.command()
def status(as_json: AsJson = False) -> None:
    """Show whether Kafka, PostgreSQL and the MQTT broker are healthy."""
    s = settings()
    checks = asyncio.run(health.check_all(s))
    rows = [{"service": c.service, "healthy": c.healthy, "detail": c.detail} for c in checks]
    state = {"state": lambda r: "[green]healthy[/green]" if r["healthy"] else "[red]down[/red]"}
    listing(("service", "state", "detail"), rows, as_json, state)
    if not all(c.healthy for c in checks):
        raise typer.Exit(1)


@topics_app.command("apply")
def topics_apply() -> None:
    """Create or align every declared topic (idempotent)."""
    s = settings()
    specs = [
        *catalogue(s.topic_partitions),
        orders_topic(DEFAULT_TRANSFER_GROUP, s.topic_partitions),
    ]
    for change in asyncio.run(
        apply_topics(s.kafka_bootstrap, specs, replication=s.kafka_replication)
    ):
        console.print(f"{change.topic:28} {change.action:10} {change.detail}")


@topics_app.command("list")
def topics_list(as_json: AsJson = False) -> None:
    """List the declared topics with their key, layout and allowed events."""
    s = settings()
    rows = [
        {
            "topic": spec.name,
            "key": spec.key,
            "partitions": spec.partitions,
            "cleanup": (
                spec.cleanup
                if spec.cleanup == "compact"
                else f"delete after {spec.retention_ms // 86_400_000} d"
            ),
            "carries": spec.description,
        }
        for spec in [*catalogue(s.topic_partitions), orders_topic("<group>", s.topic_partitions)]
    ]
    listing(("topic", "key", "partitions", "cleanup", "carries"), rows, as_json)


@events_app.command("tail")
def events_tail(
    topic: Annotated[
        list[str] | None, typer.Option("--topic", "-t", help="topic(s) to read")
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="start at offset 0")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json/--text", help="one JSON object per line")] = True,
    limit: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="stop after this many quiet seconds")
    ] = None,
) -> None:
    """Decode and print events as they arrive."""
    s = settings()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            events_cli.tail(
                s,
                topic or (),
                from_beginning=from_beginning,
                as_json=as_json,
                limit=limit,
                idle_exit=idle_exit,
            )
        )


@app.command("audit")
def audit_command(
    wanted: Annotated[str, typer.Argument(metavar="ID", help="a data file id or a transfer id")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per event")] = False,
) -> None:
    """Print the timeline of a data file or transfer, read straight from Kafka."""
    import orjson

    from cli import audit

    s = settings()
    with console.status("reading the event log ..."):
        entries = audit.run(s, wanted)
    if not entries:
        console.print(f"[yellow]no event in the log names {wanted}[/yellow]")
        raise typer.Exit(1)
    if as_json:
        for e in entries:
            row = {
                "topic": e.topic,
                "partition": e.partition,
                "offset": e.offset,
                "event_type": codec.event_type(e.event),
                "event": codec.to_json(e.event),
            }
            print(orjson.dumps(row).decode())
        return
    table = Table("time (UTC)", "event", "where", "details", show_lines=False)
    for e in entries:
        name = codec.event_type(e.event).rpartition(".")[2]
        style = "red" if "Fail" in name or "Refused" in name or "Expired" in name else None
        table.add_row(
            e.when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            f"[{style}]{name}[/{style}]" if style else name,
            f"{e.topic}[{e.partition}]@{e.offset}",
            audit.detail(e.event),
        )
    console.print(table)


@projections_app.command("rebuild")
def projections_rebuild() -> None:
    """Replay the whole log into fresh read-model tables, then swap them in."""
    from projections.rebuild import rebuild

    s = settings()
    with console.status("replaying the event log into fresh tables ..."):
        report = asyncio.run(rebuild(s))
    console.print(
        f"rebuilt from {report.events} events in {report.seconds:.1f} s "
        f"({report.events_per_second:.0f} events/s) and swapped in"
    )


if __name__ == "__main__":
    app()
