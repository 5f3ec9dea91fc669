"""Building the ``DeadLettered`` event for a message that cannot go on.

The original key, value and headers are kept byte for byte with the origin (topic, partition,
offset) and the reason, so an operator can inspect, fix and replay it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bus.events import envelope
from bus.events.deadletter import DeadLettered, DeadLetterReason, Header


def dead_letter_event(
    *,
    source: str,
    reason: DeadLetterReason,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, bytes]],
    timestamp_ms: int | None = None,
    event_type: str | None = None,
    error_class: str | None = None,
    consumer_group: str | None = None,
) -> DeadLettered:
    return DeadLettered(
        envelope=envelope(source, f"{topic}/{partition}/{offset}"),
        reason=reason,
        message=message,
        origin_topic=topic,
        origin_partition=partition,
        origin_offset=offset,
        original_value=value,
        original_key=key,
        original_headers=tuple(Header(key=k, value=v) for k, v in headers),
        origin_timestamp=(
            datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms is not None else None
        ),
        error_class=error_class,
        consumer_group=consumer_group,
        event_type=event_type,
    )
