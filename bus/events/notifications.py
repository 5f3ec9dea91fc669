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


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationRefused(Event):
    """A WIS2 notification was not sent: it would break a WIS2 rule (schema, size, inline
    content, links, topic hierarchy, settings); the reason says which."""

    AVRO_NAME: ClassVar[str] = "ecpds.notifications.NotificationRefused"

    destination: str
    transfer_id: str
    data_file_id: str  # "" when not known
    topic: str | None = None  # None: no WIS2 topic could be formed
    message_id: str
    data_id: str | None = None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MailFailed(Event):
    """A mail was refused for good by the mail server (a permanent SMTP failure); it is not sent
    again."""

    AVRO_NAME: ClassVar[str] = "ecpds.notifications.MailFailed"

    destination: str
    transfer_id: str | None = None  # None: a mail about the destination itself
    rule: str  # what made the mail, e.g. destination.onEnd
    recipients: tuple[str, ...] = ()
    mail_id: str  # the mail's Message-ID
    subject: str
    error_class: str
    message: str  # the server's reason, credentials masked


EVENTS: tuple[type[Event], ...] = (
    NotificationPublished,
    NotificationFailed,
    MailFailed,
    NotificationRefused,
)
NAMED_TYPES: Mapping[str, type] = {}
