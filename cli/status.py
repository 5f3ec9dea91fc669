"""Destination status for ``ecpds destination list|show``: the status, its reason, the current
host and the transfer counts, read from the read models the monitor reads
(``destination_overview``), and drawn as a coloured badge.

Rules kept here: an operator's hold is shown neutral (blue) with its reason, never as a
failure; the hold the scheduler sets when every host failed (its reason starts ``Failed:``) is
red, as are no hosts, stopped and sleeping; amber is retrying, interrupted or waiting; green is
running. A destination with no hosts by design (standby: its files wait for pickup through the
portal) is a dim "pickup", as the monitor's grey Pickup badge, not a red "no hosts". When the
read models cannot be read (PostgreSQL
away), the listing still shows the configuration, each status as ``unknown``, and says why once
on stderr.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.markup import escape

from bus.config.view import ConfigView
from bus.events.config import Destination
from bus.settings import Settings
from projections.db import DEFAULT_SCHEMA, connect
from projections.monitor.view import pickup_only

Row = Mapping[str, Any]
COUNTS = ("queued", "running", "failed", "held", "done")

# status code -> (what an operator reads, colour)
BADGES: Mapping[str, tuple[str, str]] = {
    "EXEC": ("running", "green"),
    "WAIT": ("idle", "default"),
    "DONE": ("resending", "cyan"),
    "RSTR": ("restarting", "cyan"),
    "SCHE": ("waiting", "yellow"),
    "RETR": ("retrying", "yellow"),
    "INTR": ("interrupted", "yellow"),
    "HOLD": ("on hold", "blue"),
    "INIT": ("inactive", "dim"),
    "STOP": ("stopped", "red"),
    "FAIL": ("no hosts", "red"),
    "IDLE": ("sleeping", "red"),
}

_QUERY = (
    "SELECT name, status, status_reason, standby, current_host, queued::bigint, running::bigint,"
    " failed::bigint, held::bigint, done::bigint, last_success_at, last_error_at, last_error"
    " FROM destination_overview WHERE NOT removed"
)


async def overview(settings: Settings, schema: str = DEFAULT_SCHEMA) -> dict[str, Row] | None:
    """Each destination's status row by name, or None when the read models cannot be read
    (said once on stderr)."""
    try:
        conn = await connect(settings.pg_dsn, schema, autocommit=True)
    except psycopg.Error as error:
        _unavailable(error)
        return None
    try:
        async with conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_QUERY)
            return {row["name"]: row for row in await cur.fetchall()}
    except psycopg.Error as error:
        _unavailable(error)
        return None


def _unavailable(error: Exception) -> None:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    Console(stderr=True).print(
        f"[yellow]status unknown:[/yellow] the read models cannot be read ({escape(first)})"
    )


def _shown(code: str, reason: str | None, pickup: bool = False) -> tuple[str, str]:
    if pickup:
        return "pickup", "dim"
    if code == "HOLD" and (reason or "").startswith("Failed:"):
        return "failed", "red"  # the scheduler's hold: every host failed
    return BADGES.get(code, (code.lower(), "red"))


def label(code: str | None, reason: str | None = None, pickup: bool = False) -> str:
    """The status as an operator reads it: ``on hold (HOLD)``; ``unknown`` without one."""
    if not code:
        return "unknown"
    if pickup:
        return "pickup (standby, no hosts)"
    return f"{_shown(code, reason)[0]} ({code})"


def badge(code: str | None, reason: str | None = None, pickup: bool = False) -> str:
    """The status as a coloured badge in rich markup, a hold's reason beside it."""
    if not code:
        return "[dim]unknown[/dim]"
    _, colour = _shown(code, reason, pickup)
    text = escape(label(code, reason, pickup))
    if code == "HOLD" and reason:
        text += f" [dim]{escape(reason)}[/dim]"
    return text if colour == "default" else f"[{colour}]{text}[/{colour}]"


def row(view: ConfigView, d: Destination, found: Row | None) -> dict[str, Any]:
    """One destination as listed: its configuration, and its status and counts when known."""
    pickup = found is not None and pickup_only(found)
    out: dict[str, Any] = {
        "name": d.name,
        "status": found["status"] if found else None,
        "status_name": label(found["status"], found["status_reason"], pickup) if found else None,
        "pickup": pickup,
        "status_reason": found["status_reason"] if found else None,
        "current_host": found["current_host"] if found else None,
    }
    out |= {c: int(found[c]) if found else None for c in COUNTS}
    out |= {
        "type": d.type.value.lower(),
        "group": d.transfer_group,
        "active": d.active,
        "hosts": [h.id for h in view.hosts_for(d.name)],
        "last_success_at": found["last_success_at"] if found else None,
        "last_error_at": found["last_error_at"] if found else None,
        "last_error": found["last_error"] if found else None,
    }
    return out
