"""Projection of ``ecpds.deadletter``: one row per dead letter, with its origin and reason.

Rule kept here: the original key and value stay in Kafka (only their sizes are written): a
dead-lettered configuration event may carry encrypted credentials, which no read model holds.
"""

from __future__ import annotations

from collections.abc import Sequence

from bus.events import deadletter as d
from projections.handlers.base import FREE, Handler, Write, registrar, text

HANDLERS: dict[str, Handler] = {}
on = registrar(HANDLERS, {"dead_letters": FREE})


@on(d.DeadLettered)
def _dead_lettered(event: d.DeadLettered) -> Sequence[Write]:
    env = event.envelope
    return (
        Write(
            "INSERT INTO dead_letters (event_id, occurred_at, reason, message, origin_topic,"
            " origin_partition, origin_offset, origin_timestamp, event_type, error_class,"
            " consumer_group, key_size, value_size, header_names)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (
                env.event_id,
                env.occurred_at,
                text(event.reason),
                event.message,
                event.origin_topic,
                event.origin_partition,
                event.origin_offset,
                event.origin_timestamp,
                event.event_type,
                event.error_class,
                event.consumer_group,
                None if event.original_key is None else len(event.original_key),
                None if event.original_value is None else len(event.original_value),
                [h.key for h in event.original_headers],
            ),
        ),
    )
