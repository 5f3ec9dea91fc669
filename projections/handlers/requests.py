"""Projection of operator requests (topic ``ecpds.transfers``): every request in
``operator_requests`` (the audit of actions), and in the transfer's timeline when it names one.

A request changes no status: the scheduler answers with the resulting events, which do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from bus.codec import to_json
from bus.events import requests as r
from bus.events.transfers import RequestDeclined
from projections.handlers.base import FREE, Handler, Write, short_type
from projections.handlers.timeline import history

HANDLERS: dict[str, Handler] = {}

_REQUEST = (
    "INSERT INTO operator_requests (event_id, occurred_at, event_type, destination, transfer_id,"
    " host_id, requested_by, reason, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)
_COMMON = frozenset(("envelope", "destination", "transfer_id", "host_id", "requested_by", "reason"))


def _request(event: Any) -> Sequence[Write]:
    env = event.envelope
    transfer_id: str | None = getattr(event, "transfer_id", None)
    details = {k: v for k, v in to_json(event).items() if k not in _COMMON}
    writes = [
        Write(
            _REQUEST,
            (
                env.event_id,
                env.occurred_at,
                short_type(event),
                event.destination,
                transfer_id,
                getattr(event, "host_id", None),
                event.requested_by,
                event.reason,
                Jsonb(details),
            ),
        )
    ]
    if transfer_id is not None:  # insert-only rows with their own ids: they commute
        writes.append(
            history(
                event,
                transfer_id,
                event.destination,
                message=event.reason,
                actor=event.requested_by,
            )
        )
    return [Write(w.sql, w.params, FREE) for w in writes]


for _cls in r.EVENTS:
    HANDLERS[_cls.AVRO_NAME] = _request
# the scheduler's "nothing to do" answer reads like a request: who asked, why it was declined
HANDLERS[RequestDeclined.AVRO_NAME] = _request
