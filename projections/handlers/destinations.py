"""Projection of destination status and host changes (topic ``ecpds.transfers``):
``destinations`` (status, current host) and ``associations`` (host on/off, priority).

Rule kept here: only status columns are written; the configuration columns of the same rows
belong to ``ecpds.config`` (see ``config``), so the two topics commute.
"""

from __future__ import annotations

from collections.abc import Sequence

from bus.events import transfers as t
from projections.handlers.base import Handler, Write, registrar, text

HANDLERS: dict[str, Handler] = {}
on = registrar(HANDLERS, {"destinations": ("destination", 1), "associations": ("association", 2)})


@on(t.DestinationStatusChanged)
def _status(event: t.DestinationStatusChanged) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO destinations AS d (name, status, status_reason, status_actor,"
            " status_until, status_changed_at) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET status = EXCLUDED.status,"
            " status_reason = EXCLUDED.status_reason, status_actor = EXCLUDED.status_actor,"
            " status_until = EXCLUDED.status_until,"
            " status_changed_at = EXCLUDED.status_changed_at",
            (
                event.destination,
                text(event.new_status),
                event.reason,
                event.actor,
                event.until,
                event.envelope.occurred_at,
            ),
        ),
    )


@on(t.HostSwitched)
def _switched(event: t.HostSwitched) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO destinations AS d (name, current_host, host_switched_at,"
            " host_switch_reason) VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
            " current_host = EXCLUDED.current_host, host_switched_at = EXCLUDED.host_switched_at,"
            " host_switch_reason = EXCLUDED.host_switch_reason",
            (event.destination, event.to_host, event.envelope.occurred_at, event.reason),
        ),
    )


_ACTIVE = (
    "INSERT INTO associations AS a (destination, host, active, active_set_at, active_reason)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (destination, host) DO UPDATE SET"
    " active = EXCLUDED.active, active_set_at = EXCLUDED.active_set_at,"
    " active_reason = EXCLUDED.active_reason"
)


@on(t.HostActivated)
def _activated(event: t.HostActivated) -> Sequence[Write]:
    return (
        Write(
            _ACTIVE,
            (event.destination, event.host_id, True, event.envelope.occurred_at, None),
        ),
    )


@on(t.HostDeactivated)
def _deactivated(event: t.HostDeactivated) -> Sequence[Write]:
    return (
        Write(
            _ACTIVE,
            (event.destination, event.host_id, False, event.envelope.occurred_at, event.reason),
        ),
    )


@on(t.HostPriorityChanged)
def _priority(event: t.HostPriorityChanged) -> Sequence[Write]:
    # the association's priority is also written from ecpds.config: later event time wins
    return (
        Write(
            "INSERT INTO associations AS a (destination, host, priority, priority_set_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (destination, host) DO UPDATE SET"
            " priority = CASE WHEN a.priority_set_at IS NULL"
            " OR a.priority_set_at <= EXCLUDED.priority_set_at"
            " THEN EXCLUDED.priority ELSE a.priority END,"
            " priority_set_at = greatest(a.priority_set_at, EXCLUDED.priority_set_at)",
            (event.destination, event.host_id, event.new_priority, event.envelope.occurred_at),
        ),
    )
