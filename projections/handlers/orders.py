"""Projection of ``ecpds.orders.<transfer-group>``: each order joins its transfer's timeline
and sets the order columns of ``transfers``.

Rules kept here: the order's host definition (with its encrypted credentials) is never written,
only the host id; orders travel on another topic than the transfer lifecycle, so they write
their own columns only (``transfer_group``, ``ordered_*``), keeping the row independent of
how the two topics interleave.
"""

from __future__ import annotations

from collections.abc import Sequence

from bus.events import orders as o
from projections.handlers.base import FREE, Handler, Write, registrar
from projections.handlers.timeline import history

HANDLERS: dict[str, Handler] = {}
on = registrar(HANDLERS, {"transfer_history": FREE, "transfers": ("transfer", 1)})


@on(o.TransferOrdered)
def _ordered(event: o.TransferOrdered) -> Sequence[Write]:
    at = event.envelope.occurred_at
    return (
        history(
            event,
            event.transfer_id,
            event.destination,
            attempt=event.attempt,
            host=event.host.id,
            message=f"ordered for transfer group {event.transfer_group}",
            size=event.size,
        ),
        Write(
            "INSERT INTO transfers AS t (transfer_id, destination, data_file_id, transfer_group,"
            " ordered_attempt, ordered_at, ordered_host) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (transfer_id) DO UPDATE SET transfer_group = EXCLUDED.transfer_group,"
            " ordered_attempt = EXCLUDED.ordered_attempt, ordered_at = EXCLUDED.ordered_at,"
            " ordered_host = EXCLUDED.ordered_host"
            " WHERE t.ordered_attempt IS NULL OR t.ordered_attempt <= EXCLUDED.ordered_attempt",
            (
                event.transfer_id,
                event.destination,
                event.data_file_id,
                event.transfer_group,
                event.attempt,
                at,
                event.host.id,
            ),
        ),
    )
