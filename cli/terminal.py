"""What every operator verb of ``ecpds`` shares: the console, the settings, the operator's
name, the live configuration read once, and how a failure becomes an exit code.

Rule kept here: a refusal (``ConfigurationError``, ``bus.requests.Invalid``) prints the field
or the reason and exits 2, before anything is published; any other ecpds failure (broker away,
timeout) prints what failed and exits 1. No traceback reaches the operator for either.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bus.config.view import ConfigView, LiveConfig
from bus.errors import ConfigurationError, EcpdsError
from bus.logging import configure
from bus.requests import Invalid
from bus.settings import Settings

console = Console()
T = TypeVar("T")


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
