"""Notification events (topic ``ecpds.notifications``, key: destination)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from bus.events.base import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationPublished(Event):
    """A notification about a delivered or available file was published over MQTT."""

    AVRO_NAME: ClassVar[str] = "ecpds.notifications.NotificationPublished"

    destination: str
    transfer_id: str
    data_file_id: str
    topic: str
    qos: int
    retain: bool
    payload_size: int
    broker: str | None = None
    message_id: str | None = None  # WIS2 notification id
    data_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationFailed(Event):
    """A notification could not be published."""

    AVRO_NAME: ClassVar[str] = "ecpds.notifications.NotificationFailed"

    destination: str
    transfer_id: str
    topic: str
    error_class: str
    message: str
    retriable: bool


EVENTS: tuple[type[Event], ...] = (
    NotificationPublished,
    NotificationFailed,
)
NAMED_TYPES: Mapping[str, type] = {}
