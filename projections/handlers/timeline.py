"""The transfer timeline: one ``transfer_history`` row per event of a transfer, append-only.

Every handler of an event that concerns a transfer (lifecycle, requests, orders, notifications)
adds its row with ``history``; the transfer page reads them in time order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from bus.events.base import Event
from projections.handlers.base import Handler, Write, short_type

HISTORY = (
    "INSERT INTO transfer_history (event_id, transfer_id, occurred_at, event_type, destination,"
    " status, attempt, host_id, mover_id, message, bytes, actor, source, causation_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def history(
    event: Event,
    transfer_id: str,
    destination: str,
    *,
    status: str | None = None,
    attempt: int | None = None,
    host: str | None = None,
    mover: str | None = None,
    message: str | None = None,
    size: int | None = None,
    actor: str | None = None,
) -> Write:
    """The timeline row of one event of a transfer."""
    env = event.envelope
    return Write(
        HISTORY,
        (
            env.event_id,
            transfer_id,
            env.occurred_at,
            short_type(event),
            destination,
            status,
            attempt,
            host,
            mover,
            message,
            size,
            actor,
            env.source,
            env.causation_id,
        ),
    )


_WITH_HISTORY: dict[str, LiteralString] = {}


def with_history(handler: Handler) -> Handler:
    """The handler, with its timeline row and its ``transfers`` write sent as one statement
    (a data-modifying CTE): one round of the pipeline instead of two for most events."""

    def run(event: Any) -> Sequence[Write]:
        writes = handler(event)
        if len(writes) < 2 or writes[0].sql is not HISTORY:
            return writes
        history_write, row = writes[0], writes[1]
        if not row.sql.startswith("INSERT INTO transfers "):
            return writes
        combined = _WITH_HISTORY.get(row.sql)
        if combined is None:
            combined = _WITH_HISTORY[row.sql] = "WITH h AS (" + HISTORY + ") " + row.sql
        return (Write(combined, history_write.params + row.params, row.key), *writes[2:])

    return run
