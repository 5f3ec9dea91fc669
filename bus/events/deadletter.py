"""Dead letters (topic ``ecpds.deadletter``): messages that could not be decoded or processed,
kept byte for byte with their origin and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from bus.events.base import Event


class DeadLetterReason(StrEnum):
    """Why a message was dead-lettered."""

    UNDECODABLE = "UNDECODABLE"
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"
    TYPE_NOT_ALLOWED = "TYPE_NOT_ALLOWED"
    PERMANENT_FAILURE = "PERMANENT_FAILURE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """A Kafka header of the original message."""

    AVRO_NAME: ClassVar[str] = "ecpds.deadletter.Header"

    key: str
    value: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLettered(Event):
    """A message that could not be decoded or processed, kept with its origin and the reason."""

    AVRO_NAME: ClassVar[str] = "ecpds.deadletter.DeadLettered"

    reason: DeadLetterReason
    message: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    original_value: bytes | None = None
    original_key: bytes | None = None
    original_headers: tuple[Header, ...] = ()
    origin_timestamp: datetime | None = None
    error_class: str | None = None
    consumer_group: str | None = None
    event_type: str | None = None


EVENTS: tuple[type[Event], ...] = (DeadLettered,)
NAMED_TYPES: Mapping[str, type] = {
    "ecpds.deadletter.DeadLetterReason": DeadLetterReason,
    "ecpds.deadletter.Header": Header,
}
