"""Projection of ``ecpds.movers``: one row per mover (last heartbeat, capacity, load); an
abort request goes on its transfer's timeline."""

from __future__ import annotations

from collections.abc import Sequence

from bus.events import movers as m
from projections.handlers.base import FREE, Handler, Write, registrar
from projections.handlers.timeline import history

HANDLERS: dict[str, Handler] = {}
on = registrar(HANDLERS, {"movers": ("mover", 1), "transfer_history": FREE})


@on(m.MoverHeartbeat)
def _heartbeat(event: m.MoverHeartbeat) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO movers AS m (mover_id, transfer_group, hostname, capacity, running,"
            " running_transfers, bytes_per_second, started_at, last_heartbeat_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (mover_id) DO UPDATE SET"
            " transfer_group = EXCLUDED.transfer_group, hostname = EXCLUDED.hostname,"
            " capacity = EXCLUDED.capacity, running = EXCLUDED.running,"
            " running_transfers = EXCLUDED.running_transfers,"
            " bytes_per_second = EXCLUDED.bytes_per_second, started_at = EXCLUDED.started_at,"
            " last_heartbeat_at = EXCLUDED.last_heartbeat_at,"
            # a heartbeat after a stop is a restart
            " stopped_at = CASE WHEN m.stopped_at < EXCLUDED.last_heartbeat_at THEN NULL"
            " ELSE m.stopped_at END,"
            " stop_reason = CASE WHEN m.stopped_at < EXCLUDED.last_heartbeat_at THEN NULL"
            " ELSE m.stop_reason END",
            (
                event.mover_id,
                event.transfer_group,
                event.hostname,
                event.capacity,
                event.running,
                list(event.running_transfers),
                event.bytes_per_second,
                event.started_at,
                event.envelope.occurred_at,
            ),
        ),
    )


@on(m.MoverStopped)
def _stopped(event: m.MoverStopped) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO movers AS m (mover_id, transfer_group, running, running_transfers,"
            " stopped_at, stop_reason) VALUES (%s, %s, 0, '{}', %s, %s)"
            " ON CONFLICT (mover_id) DO UPDATE SET transfer_group = EXCLUDED.transfer_group,"
            " running = 0, running_transfers = '{}', stopped_at = EXCLUDED.stopped_at,"
            " stop_reason = EXCLUDED.stop_reason",
            (event.mover_id, event.transfer_group, event.envelope.occurred_at, event.reason),
        ),
    )


@on(m.TransferAbortRequested)
def _abort(event: m.TransferAbortRequested) -> Sequence[Write]:
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            attempt=event.attempt,
            mover=event.mover_id,
            message=f"Mover asked to abandon attempt {event.attempt}: {event.reason}",
        ),
    )
