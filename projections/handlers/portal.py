"""Projection of ``ecpds.portal``: every upload, download and denial in ``portal_access``, and
the sign-in defender's failures (kind ``SIGN_IN_FAILED``) and bans (kind ``BANNED``) there too,
with the door as ``protocol``. A denial's destination is the first part of its path (the
portal's paths are ``/<destination>/...``), so the monitor counts denials per destination.
Each portal instance's latest report of its sessions in progress is one row of
``portal_session_reports`` (an older report never replaces a newer one)."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.types.json import Jsonb

from bus.events import portal as p
from projections.handlers.base import FREE, Handler, Write, registrar, text

HANDLERS: dict[str, Handler] = {}
on = registrar(HANDLERS, {"portal_access": FREE, "portal_session_reports": ("portal", 1)})

_ACCESS = (
    "INSERT INTO portal_access (event_id, occurred_at, kind, data_user, destination, path,"
    " protocol, bytes, duration_ms, complete, reason, message, operation, data_file_id,"
    " transfer_id, client_address) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " %s, %s, %s) ON CONFLICT DO NOTHING"
)


@on(p.PortalUploaded)
def _uploaded(event: p.PortalUploaded) -> Sequence[Write]:
    env = event.envelope
    row = (
        env.event_id,
        env.occurred_at,
        "UPLOAD",
        event.user,
        event.destination,
        event.path,
        event.protocol,
        event.size,
        event.duration_ms,
        True,
        None,
        None,
        "PUT",
        event.data_file_id,
        None,
        event.client_address,
    )
    return (Write(_ACCESS, row),)


@on(p.PortalDownloaded)
def _downloaded(event: p.PortalDownloaded) -> Sequence[Write]:
    env = event.envelope
    row = (
        env.event_id,
        env.occurred_at,
        "DOWNLOAD",
        event.user,
        event.destination,
        event.path,
        event.protocol,
        event.bytes_sent,
        event.duration_ms,
        event.complete,
        None,
        None,
        "GET",
        event.data_file_id,
        event.transfer_id,
        event.client_address,
    )
    return (Write(_ACCESS, row),)


def _destination_of(path: str | None) -> str | None:
    """The destination a denied portal path names (its first part), if any."""
    if not path or not path.startswith("/"):
        return None
    return path[1:].split("/", 1)[0] or None


@on(p.PortalAccessDenied)
def _denied(event: p.PortalAccessDenied) -> Sequence[Write]:
    env = event.envelope
    row = (
        env.event_id,
        env.occurred_at,
        "DENIED",
        event.user,
        _destination_of(event.path),
        event.path,
        event.protocol,
        None,
        None,
        None,
        text(event.reason),
        event.message,
        event.operation,
        None,
        None,
        event.client_address,
    )
    return (Write(_ACCESS, row),)


@on(p.SignInFailed)
def _sign_in_failed(event: p.SignInFailed) -> Sequence[Write]:
    env = event.envelope
    row = (
        env.event_id,
        env.occurred_at,
        "SIGN_IN_FAILED",
        event.login,
        None,
        None,
        event.door,
        None,
        None,
        None,
        text(event.attempt),
        f"score {event.score}",
        "SIGN_IN",
        None,
        None,
        event.client_address,
    )
    return (Write(_ACCESS, row),)


@on(p.SignInBanned)
def _sign_in_banned(event: p.SignInBanned) -> Sequence[Write]:
    env = event.envelope
    row = (
        env.event_id,
        env.occurred_at,
        "BANNED",
        event.login,
        None,
        None,
        event.door,
        None,
        event.ban_ms,
        None,
        text(event.scope),
        f"{event.banned} banned until {event.banned_until.isoformat()} (ban {event.offence})",
        "SIGN_IN",
        None,
        None,
        event.client_address,
    )
    return (Write(_ACCESS, row),)


@on(p.PortalSessionsReported)
def _sessions(event: p.PortalSessionsReported) -> Sequence[Write]:
    sessions = [
        {
            "user": s.user,
            "protocol": s.protocol,
            "client_address": s.client_address,
            "opened_at": s.opened_at.isoformat(),
        }
        for s in event.sessions
    ]
    return (
        Write(
            "INSERT INTO portal_session_reports AS r (portal_id, reported_at, period_ms, sessions)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (portal_id) DO UPDATE SET"
            " reported_at = EXCLUDED.reported_at, period_ms = EXCLUDED.period_ms,"
            " sessions = EXCLUDED.sessions WHERE r.reported_at <= EXCLUDED.reported_at",
            (event.portal_id, event.envelope.occurred_at, event.period_ms, Jsonb(sessions)),
        ),
    )
