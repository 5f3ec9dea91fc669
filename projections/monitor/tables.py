"""The overview table rendered in plain Python: with thousands of destinations it is the
monitor's hottest page, and string building is several times faster than a template loop.

Rule kept here: every value from the read models goes through ``html.escape``; column names
sit once in the header (``data-col``), which the live script uses to update cells in place;
each row carries its health level (``data-health``), which the live script keeps current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from projections.monitor.view import Health, destination_badge, health, when

COLUMNS = (
    ("name", "Destination", ""),
    ("status", "Status", ""),
    ("health", "Health", ""),
    ("current_host", "Host", ""),
    ("outstanding", "Outstanding", "num"),
    ("queued", "Q'D", "num"),
    ("running", "Running", "num"),
    ("failed", "Failed", "num"),
    ("last_success_at", "Last transfer", ""),
    ("last_error_at", "Last error", ""),
    ("last_error", "Error", "error"),
)


def _text(value: Any) -> str:
    return "" if value is None else escape(str(value))


def _health(h: Health) -> str:
    return f'<span class="badge {h.colour}" title="{escape(h.reason)}">{escape(h.name)}</span>'


def _row(r: Mapping[str, Any]) -> str:
    name = _text(r["name"])
    b, h = destination_badge(r["status"]), health(r)
    return (
        f'<tr data-name="{name}" data-health="{h.level}">'
        f'<td><a href="/destinations/{quote(str(r["name"]), safe="")}">'
        f'{name}</a></td><td><span class="badge {b.colour}" title="{escape(b.code)}">'
        f"{escape(b.name)}</span></td><td>{_health(h)}</td><td>{_text(r['current_host'])}</td>"
        f'<td class="num">{r["outstanding"]}</td><td class="num">{r["queued"]}</td>'
        f'<td class="num">{r["running"]}</td><td class="num">{r["failed"]}</td>'
        f"<td>{when(r['last_success_at'])}</td><td>{when(r['last_error_at'])}</td>"
        f'<td class="error">{_text(r["last_error"])}</td></tr>\n'
    )


def overview_table(rows: Sequence[Mapping[str, Any]]) -> Markup:
    """The destinations table of the overview page."""
    head = "".join(
        f'<th data-col="{col}"{" class=num" if css == "num" else ""}>{escape(title)}</th>'
        for col, title, css in COLUMNS
    )
    body = (
        "".join(_row(r) for r in rows) or '<tr><td colspan="11">No destination matches.</td></tr>'
    )
    return Markup(  # noqa: S704 (every value is escaped above)
        f'<table class="overview"><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>'
        f'<p class="count">{len(rows)} destinations</p>'
    )
