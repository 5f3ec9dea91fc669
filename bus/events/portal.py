"""Portal events (topic ``ecpds.portal``, key: user): uploads, downloads, denied access."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from bus.events.base import Event


class AccessDeniedReason(StrEnum):
    """Why the portal refused access."""

    NOT_FOUND = "NOT_FOUND"
    GEOLOCATION = "GEOLOCATION"
    DISABLED = "DISABLED"
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    PASSWORD_NOT_SET = "PASSWORD_NOT_SET"  # noqa: S105 - a reason, not a password
    MAX_CONNECTIONS = "MAX_CONNECTIONS"
    NO_DESTINATIONS = "NO_DESTINATIONS"
    NO_PERMISSION = "NO_PERMISSION"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"


@dataclass(frozen=True, slots=True, kw_only=True)
class PortalUploaded(Event):
    """A data user uploaded a file through the portal."""

    AVRO_NAME: ClassVar[str] = "ecpds.portal.PortalUploaded"

    user: str
    destination: str
    path: str
    protocol: str
    size: int
    duration_ms: int
    data_file_id: str | None = None
    client_address: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortalDownloaded(Event):
    """A data user downloaded a file (or a range of it) through the portal."""

    AVRO_NAME: ClassVar[str] = "ecpds.portal.PortalDownloaded"

    user: str
    destination: str
    path: str
    protocol: str
    bytes_sent: int
    duration_ms: int
    complete: bool = True
    data_file_id: str | None = None
    transfer_id: str | None = None
    client_address: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortalAccessDenied(Event):
    """The portal refused a request."""

    AVRO_NAME: ClassVar[str] = "ecpds.portal.PortalAccessDenied"

    user: str | None = None
    protocol: str
    reason: AccessDeniedReason
    message: str
    operation: str | None = None
    path: str | None = None
    client_address: str | None = None


EVENTS: tuple[type[Event], ...] = (
    PortalUploaded,
    PortalDownloaded,
    PortalAccessDenied,
)
NAMED_TYPES: Mapping[str, type] = {
    "ecpds.portal.AccessDeniedReason": AccessDeniedReason,
}
