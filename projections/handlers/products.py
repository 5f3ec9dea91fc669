"""Projection of product timeliness (topic ``ecpds.products``, and the product rows of queued
transfers): ``product_status``, ``product_transfers``, ``lateness_events``.

A transfer whose metadata names a product (``bus.timeliness.product_of``) gets its
``product_transfers`` row when queued (``queued``, called by the transfers handler); its
delivery is kept in step by the ``transfers_product_status`` trigger (migration 0004).
Every time written comes from an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import LiteralString

from bus.events import products as p
from bus.events import transfers as t
from bus.timeliness import ProductKey, base_time, product_of
from projections.handlers.base import FREE, Handler, Rule, Write, registrar, short_type, text

HANDLERS: dict[str, Handler] = {}
RULES: dict[str, Rule] = {
    "product_status": ("product", 1),
    "lateness_events": FREE,
    "product_transfers": ("transfer", 1),  # ordered with the transfer's own rows
}
on = registrar(HANDLERS, RULES)

_STATUS: LiteralString = (
    'INSERT INTO product_status AS s (product, stream, "time", step, type, status, status_at,'
    " changed_at, changed_by, event_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (product) DO UPDATE SET status = EXCLUDED.status,"
    " status_at = EXCLUDED.status_at, changed_at = EXCLUDED.changed_at,"
    " changed_by = EXCLUDED.changed_by, event_id = EXCLUDED.event_id"
)


@on(p.ProductStatusChanged)
def _status(event: p.ProductStatusChanged) -> Sequence[Write]:
    key = ProductKey(event.stream, event.time, event.step, event.type)
    return (
        Write(
            _STATUS,
            (
                key.text(),
                event.stream,
                event.time,
                event.step,
                event.type,
                text(event.status),
                event.at,
                event.envelope.occurred_at,
                event.requested_by,
                event.envelope.event_id,
            ),
        ),
    )


_LATE: LiteralString = (
    "INSERT INTO lateness_events (event_id, occurred_at, event_type, product, destination,"
    " transfer_id, base_time, measure, lateness, predicted_at, target_at, observed_at,"
    " late_by_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)


@on(p.ProductLate)
def _product_late(event: p.ProductLate) -> Sequence[Write]:
    key = ProductKey(event.stream, event.time, event.step, event.type)
    env = event.envelope
    return (
        Write(
            _LATE,
            (
                env.event_id,
                env.occurred_at,
                short_type(event),
                key.text(),
                None,
                None,
                event.base_time,
                None,
                text(event.lateness),
                event.predicted_at,
                None,
                event.observed_at,
                event.late_by_ms,
            ),
        ),
    )


@on(p.TransferLate)
def _transfer_late(event: p.TransferLate) -> Sequence[Write]:
    key = ProductKey(event.stream, event.time, event.step, event.type)
    env = event.envelope
    return (
        Write(
            _LATE,
            (
                env.event_id,
                env.occurred_at,
                short_type(event),
                key.text(),
                event.destination,
                event.transfer_id,
                event.base_time,
                text(event.measure),
                text(event.lateness),
                event.predicted_at,
                event.target_at,
                event.observed_at,
                event.late_by_ms,
            ),
        ),
    )


_QUEUED: LiteralString = (
    "INSERT INTO product_transfers AS p (transfer_id, destination, product, base_time,"
    " arrived_at, delivered_at, status) VALUES (%s, %s, %s, %s, %s, NULL, %s)"
    " ON CONFLICT (transfer_id) DO UPDATE SET destination = EXCLUDED.destination,"
    " product = EXCLUDED.product, base_time = EXCLUDED.base_time,"
    " arrived_at = EXCLUDED.arrived_at, delivered_at = NULL, status = EXCLUDED.status"
)


def queued(event: t.TransferQueued) -> Sequence[Write]:
    """The ``product_transfers`` row of a queued transfer whose file names a product (none
    otherwise); a re-queued instance starts its cycle again."""
    product = product_of(event.metadata)
    if product is None:
        return ()
    arrived = event.envelope.occurred_at
    row = (
        event.transfer_id,
        event.destination,
        product.text(),
        base_time(product, event.metadata, arrived),
        arrived,
        text(event.status),
    )
    return (Write(_QUEUED, row, ("transfer", event.transfer_id)),)
