"""Dead letters: the one way every consumer ends a record it cannot take.

``decode_record`` turns a consumed record into its event, or into a ``Poison`` saying why it
cannot be read (undecodable bytes, an unknown schema, a type not allowed on its topic).
``dead_letter`` writes a record to ``ecpds.deadletter`` and logs one warning line (no
traceback: the reason and origin say it all). ``dead_letter_event`` builds the event.

The original key, value and headers are kept byte for byte with the origin (topic, partition,
offset), the consumer group and the reason, so an operator can inspect, fix and replay it. A
record is dead-lettered once per consumer group: each group owns its own offsets, so each one
that meets the record says so; the event names the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bus import codec
from bus.errors import DecodeError, UnknownSchema
from bus.events import envelope
from bus.events.base import Event
from bus.events.deadletter import DeadLettered, DeadLetterReason, Header
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.topics import DEADLETTER, TopicSpec, spec_for

log = get_logger(__name__)


@dataclass(frozen=True)
class Poison:
    """Why a record cannot be handled, as the dead letter will say it."""

    reason: DeadLetterReason
    message: str
    event_type: str | None = None
    error_class: str | None = None


@dataclass(frozen=True)
class Origin:
    """What a dead letter keeps of a record that did not come as aiokafka's ``ConsumerRecord``
    (a faust message): where it was, its bytes and headers, its time in milliseconds."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int | None


def decode_record(record: Any, specs: Sequence[TopicSpec] | None = None) -> Event | Poison:
    """The event of a consumed record, or the ``Poison`` that says why there is none."""
    header_type = codec.type_header(record.headers)
    try:
        # a tombstone (no value) is no event either: b"" says so as a DecodeError
        event: Event = codec.decode_with_type(record.value or b"", header_type)
    except DecodeError as error:
        reason = (
            DeadLetterReason.UNKNOWN_SCHEMA
            if isinstance(error, UnknownSchema)
            else DeadLetterReason.UNDECODABLE
        )
        return Poison(reason, str(error), header_type, type(error).__name__)
    name = codec.event_type(event)
    spec = spec_for(record.topic, specs)
    if spec is not None and not spec.allows(name):
        return Poison(
            DeadLetterReason.TYPE_NOT_ALLOWED, f"{name} is not allowed on {record.topic}", name
        )
    return event


async def dead_letter(
    publisher: Publisher,
    record: Any,
    poison: Poison,
    *,
    source: str,
    group: str | None,
    topic: str = DEADLETTER,
) -> None:
    """Write ``record`` to the dead-letter topic (awaiting the broker's acknowledgement; tests
    name a ``topic`` of their own), then log one warning line. Raises what the publisher
    raises: the record has not ended then."""
    event = dead_letter_event(
        source=source,
        reason=poison.reason,
        message=poison.message,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers=list(record.headers or ()),
        timestamp_ms=record.timestamp,
        event_type=poison.event_type,
        error_class=poison.error_class,
        consumer_group=group,
    )
    await publisher.publish(topic, f"{record.topic}/{record.partition}", event)
    log.warning(
        "dead-lettered",
        reason=str(poison.reason),
        why=poison.message,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        group=group,
    )


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
