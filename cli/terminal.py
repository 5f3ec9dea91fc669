"""What every operator verb of ``ecpds`` shares: the console, the settings, the operator's
name, the live configuration read once, listings as a table or ``--json``, and how a failure
becomes an exit code.

Output is never cut to fit: when stdout is not a terminal (a pipe, a file) the console is as
wide as the longest line instead of rich's 80 columns, and every listing takes ``--json``
(one JSON array of objects, for scripts).

Rule kept here: a refusal (``ConfigurationError``, ``bus.requests.Invalid``) prints the field
or the reason and exits 2, before anything is published; any other ecpds failure (broker away,
timeout) prints what failed and exits 1. No traceback reaches the operator for either.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bus.config.view import ConfigView, LiveConfig
from bus.errors import ConfigurationError, EcpdsError
from bus.logging import configure
from bus.requests import Invalid
from bus.settings import Settings

PIPED_WIDTH = 4096  # columns when stdout is not a terminal: wide enough that nothing is cut


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr), full width when it is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


console = make_console()
T = TypeVar("T")
AsJson = Annotated[bool, typer.Option("--json", help="print a JSON array of objects")]


Row = Mapping[str, Any]


def listing(
    columns: Sequence[str],
    rows: Sequence[Row],
    as_json: bool,
    styled: Mapping[str, Callable[[Row], str]] | None = None,
) -> None:
    """Print ``rows`` as a table of ``columns`` (a column in ``styled`` drawn by its function,
    in rich markup; the others escaped), or with ``as_json`` as one JSON array (plain values,
    every key of each row)."""
    if as_json:
        typer.echo(orjson.dumps(list(rows), default=str).decode())
        return
    draw = styled or {}
    table = Table(*columns)
    for row in rows:
        table.add_row(*(draw[c](row) if c in draw else escape(_cell(row.get(c))) for c in columns))
    console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def refuse(message: str) -> NoReturn:
    """Print a refusal and exit 2."""
    console.print(f"[red]refused:[/red] {escape(message)}")
    raise typer.Exit(2)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work``; a refusal exits 2, any other ecpds failure exits 1."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except ConfigurationError as error:
        refuse(f"{error.field}: {error.reason}")
    except Invalid as error:
        refuse(str(error))
    except (EcpdsError, TimeoutError) as error:
        console.print(f"[red]failed:[/red] {escape(str(error) or type(error).__name__)}")
        raise typer.Exit(1) from None


def run_sync(work: Callable[[], T]) -> T:
    """Run a local step; a refusal exits 2."""
    try:
        return work()
    except ConfigurationError as error:
        refuse(f"{error.field}: {error.reason}")
    except Invalid as error:
        refuse(str(error))


def settings() -> Settings:
    """The settings from the environment, with logging set up for this command."""
    found = Settings.from_env()
    # logs go to the process's stderr (`config export` writes YAML on stdout); the real one,
    # not whatever sys.stderr is now, which a test runner may swap and close
    configure(found, stream=sys.__stderr__)
    return found


def actor() -> str:
    """The operator's login name, as requests and configuration changes record it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def read_config(topic: str) -> ConfigView:
    """The live configuration as ``topic`` holds it now (read to its end)."""
    live = LiveConfig(settings().kafka_bootstrap, topic)
    async with live:
        return live.view
