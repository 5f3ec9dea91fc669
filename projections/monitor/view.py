"""Presentation, pure: OpenECPDS status names and badge colours, value formatting and JSON-safe
rows (the charts' data is ``charts``).

Badge colours are OpenECPDS's (ECPDS-REFERENCE.md §2.3): destination Running green;
Waiting/Retrying/Interrupted yellow; Restarting/Resending light blue; Idle grey;
Initialized/Stopped/NoHosts/Failed and anything else red.

A destination's health is OpenECPDS's monitoring colour (its ``MonitorManager``): critical when
nothing can be delivered (Failed, NoHosts, Sleeping), warning when it is stopped, retrying or
interrupted, or when it holds "bad" transfers, which the read models show as a last error newer
than the last success; else OK. ``queries.Queries.overview`` filters on the same rule in SQL
(``status=failing``): both read the status sets and the SQL below.

Two departures from OpenECPDS's colours, so that red always means "something is wrong": an
operator's hold (status ``HOLD`` with an actor; the scheduler's own "Failed" has none) is a
neutral "On hold" with its reason shown, health "Held"; a standby destination with no hosts
(``FAIL``, kept for portal pickup) is a grey "Pickup", health OK.

Errors are shown as the operator's sentence: what failed, where, and what to check
(``explain``), with the text the mover reported kept as the detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, LiteralString


@dataclass(frozen=True, slots=True)
class Badge:
    """A status as shown: its code, display name and colour class."""

    code: str
    name: str
    colour: str  # green yellow lightblue grey red


DESTINATION: Mapping[str, tuple[str, str]] = {
    "EXEC": ("Running", "green"),
    "SCHE": ("Waiting", "yellow"),
    "RETR": ("Retrying", "yellow"),
    "INTR": ("Interrupted", "yellow"),
    "RSTR": ("Restarting", "lightblue"),
    "DONE": ("Resending", "lightblue"),
    "WAIT": ("Idle", "grey"),
    "INIT": ("Initialized", "red"),
    "STOP": ("Stopped", "red"),
    "FAIL": ("NoHosts", "red"),
    "HOLD": ("Failed", "red"),
    "IDLE": ("Sleeping", "red"),
}

TRANSFER: Mapping[str, tuple[str, str]] = {
    "INIT": ("Arriving", "lightblue"),
    "SCHE": ("Preset", "lightblue"),
    "FETC": ("Fetching", "lightblue"),
    "HOLD": ("StandBy", "grey"),
    "WAIT": ("Queued", "yellow"),
    "EXEC": ("Transferring", "green"),
    "DONE": ("Done", "green"),
    "RETR": ("ReQueued", "yellow"),
    "STOP": ("Stopped", "red"),
    "FAIL": ("Failed", "red"),
    "INTR": ("Interrupted", "yellow"),
}


CRITICAL: frozenset[str] = frozenset({"HOLD", "FAIL", "IDLE"})
"""Destination statuses in which nothing is delivered until something changes."""
WARNING: frozenset[str] = frozenset({"STOP", "RETR", "INTR"})
"""Destination statuses that need watching."""
FAILING = "failing"
"""The overview's pseudo status filter: every destination whose health is not OK or held."""
HELD = "held"
"""The overview's pseudo status filter: every destination an operator put on hold."""

HELD_SQL: LiteralString = "(status = 'HOLD' AND status_actor IS NOT NULL)"
"""``operator_hold`` in SQL."""
UNHEALTHY_SQL: LiteralString = (
    "(NOT coalesce(status = 'HOLD' AND status_actor IS NOT NULL, false)"
    " AND ((status = ANY(%s) AND NOT coalesce(status = 'FAIL' AND standby, false))"
    " OR (last_error_at IS NOT NULL"
    " AND (last_success_at IS NULL OR last_error_at > last_success_at))))"
)
"""``health`` is neither OK nor held, in SQL (its one parameter: the unhealthy statuses)."""


@dataclass(frozen=True, slots=True)
class Health:
    """A destination's monitoring colour: ``ok``, ``warning`` or ``critical``, and why."""

    level: Literal["ok", "held", "warning", "critical"]
    colour: str
    reason: str

    @property
    def name(self) -> str:
        return self.level.capitalize() if self.level != "ok" else "OK"


def last_outcome_failed(row: Mapping[str, Any]) -> bool:
    """Whether the destination's latest transfer outcome is an error (no success since)."""
    error_at, success_at = row.get("last_error_at"), row.get("last_success_at")
    return error_at is not None and (success_at is None or error_at > success_at)


def operator_hold(row: Mapping[str, Any]) -> bool:
    """Whether the destination is on hold because an operator asked (not after failures)."""
    return row.get("status") == "HOLD" and bool(row.get("status_actor"))


def pickup_only(row: Mapping[str, Any]) -> bool:
    """Whether the destination has no hosts by design: standby, its files kept for pickup."""
    return row.get("status") == "FAIL" and bool(row.get("standby"))


def status_badge(row: Mapping[str, Any]) -> Badge:
    """A destination row's status badge, telling an operator's hold and a pickup-only
    destination apart from failures (see the module docstring)."""
    if operator_hold(row):
        return Badge("HOLD", "On hold", "neutral")
    if pickup_only(row):
        return Badge("FAIL", "Pickup", "grey")
    return destination_badge(row.get("status"))


def health(row: Mapping[str, Any]) -> Health:
    """The monitoring colour of an overview row (status, last error, last success)."""
    status = str(row.get("status") or "")
    badge = status_badge(row)
    why = str(row.get("status_reason") or badge.name)
    if operator_hold(row):
        return Health("held", "neutral", f"{why} (by {row.get('status_actor')})")
    if pickup_only(row):
        status = "WAIT"  # nothing is wrong: files wait to be fetched
    if status in CRITICAL:
        return Health("critical", "red", why)
    if status in WARNING:
        return Health("warning", "yellow", why)
    if last_outcome_failed(row):
        said = explain(row.get("last_error"), row.get("current_host")).sentence
        return Health("warning", "yellow", f"Last transfer failed: {said}")
    return Health("ok", "green", badge.name)


def destination_badge(code: str | None) -> Badge:
    name, colour = DESTINATION.get(code or "", (code or "Unknown", "red"))
    return Badge(code or "", name, colour)


def transfer_badge(code: str | None) -> Badge:
    name, colour = TRANSFER.get(code or "", (code or "Unknown", "grey"))
    return Badge(code or "", name, colour)


def when(value: datetime | None) -> str:
    """A UTC time as shown on the pages (seconds, no zone: every time is UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def size(value: float | int | Decimal | None) -> str:
    """Bytes in the largest unit that keeps a number below 1024."""
    if value is None:
        return ""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def jsonable(value: Any) -> Any:
    """A value JSON can carry: times in ISO 8601, decimals as numbers, mappings as dicts."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Explained:
    """An error as the operator's sentence, and the text the component reported."""

    sentence: str
    detail: str


# by the error class a TransferFailed carries (``protocols.base.FAULTS``): what happened and
# what to check; {host} is the host's id
_SENTENCES: Mapping[str, str] = {
    "AuthenticationFailed": "{host} refused the login: check the host's login and password or key.",
    "HostKeyChanged": "{host} offered another SSH host key than the one trusted: confirm the "
    "change with the site, then update the host's sftp.fingerPrint.",
    "PermissionDenied": "The login may not write into the Host Directory on {host}: ask the "
    "site to check that directory's permissions.",
    "NotFound": "The Host Directory (or a folder above it) does not exist on {host}: check the "
    "host's directory, or ask the site to create it.",
    "ProtocolFailure": "{host} answered in a way its protocol module cannot read: check the "
    "host's protocol and port.",
    "ConnectionLost": "Could not connect to {host}, or the connection dropped: check its "
    "address and port, and that the site's server and firewall accept us.",
    "ConnectionError": "Could not connect to {host}, or the connection dropped: check its "
    "address and port, and that the site's server and firewall accept us.",
    "TransferTimeout": "{host} stopped answering in time: check the network to the site and "
    "the load of its server.",
    "TimeoutError": "{host} stopped answering in time: check the network to the site and "
    "the load of its server.",
    "ServerFailure": "{host}'s server reported a failure (disk full, quota, server error): ask "
    "the site to check its server.",
    "ChecksumMismatch": "{host} kept other bytes than were sent: something at the site changes "
    "files; check with the site.",
    "ConfigurationError": "The definition of {host} cannot be used: check its Host Directory "
    "template, address, credentials and options.",
    "ObjectNotFound": "The file's bytes are missing from the store and every replica: it "
    "cannot be sent; check the store and its backups.",
    "CodecError": "The stored compressed file cannot be decoded: the stored copy is damaged.",
    "ObjectCorrupt": "A stored copy failed its checksum; another copy is tried next.",
    "NotStaged": "The regional store has no copy yet; it is tried again once staged.",
    "StoreError": "The object store could not be read just now; check the store.",
}


def explain(error: str | None, host: str | None = None) -> Explained:
    """``error`` (``"<class>: <message>"``, as the read models keep a failure) as a sentence
    naming ``host``, with the whole text as its detail; an unknown class says so plainly."""
    if not error:
        return Explained("", "")
    kind = error.split(":", 1)[0].strip()
    where = host or "The host"
    template = _SENTENCES.get(kind)
    if template is None:
        return Explained(f"The transfer failed ({kind[:60]}): see the detail.", error)
    sentence = template.format(host=where)
    return Explained(sentence[0].upper() + sentence[1:], error)
