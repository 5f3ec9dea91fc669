"""Portal events (topic ``ecpds.portal``, key: user): uploads, downloads, denied access, the
sign-in defender's failed sign-ins and bans at every door (monitor, API, portal servers), and
each portal instance's report of the sessions it has in progress (key: the instance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
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


class SignInAttempt(StrEnum):
    """The kind of a failed sign-in (a wrong password and an unknown login are one kind)."""

    PASSWORD = "PASSWORD"  # noqa: S105 - a kind of attempt, not a password
    TOKEN = "TOKEN"  # noqa: S105 - a kind of attempt, not a token
    MALFORMED = "MALFORMED"


class BanScope(StrEnum):
    """What a sign-in ban is on: a client address or an account (login)."""

    ADDRESS = "ADDRESS"
    ACCOUNT = "ACCOUNT"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInFailed(Event):
    """A sign-in at one door (monitor, api, sftp ...) was refused: wrong or unreadable
    credentials."""

    AVRO_NAME: ClassVar[str] = "ecpds.portal.SignInFailed"

    door: str
    attempt: SignInAttempt
    login: str | None = None
    client_address: str | None = None
    score: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInBanned(Event):
    """The defender banned an address or an account from signing in until ``banned_until``."""

    AVRO_NAME: ClassVar[str] = "ecpds.portal.SignInBanned"

    door: str
    scope: BanScope
    banned: str
    banned_until: datetime
    ban_ms: int
    offence: int
    score: int
    login: str | None = None
    client_address: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortalSession:
    """One signed-in session in progress at a portal instance."""

    AVRO_NAME: ClassVar[str] = "ecpds.portal.PortalSession"

    user: str
    protocol: str
    opened_at: datetime
    client_address: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortalSessionsReported(Event):
    """The sessions a portal instance has in progress, reported every ``period_ms`` while it
    has any and once when the last one ends; a report older than two periods is stale (the
    instance stopped or died)."""

    AVRO_NAME: ClassVar[str] = "ecpds.portal.PortalSessionsReported"

    portal_id: str
    period_ms: int
    sessions: tuple[PortalSession, ...] = ()


EVENTS: tuple[type[Event], ...] = (
    PortalUploaded,
    PortalDownloaded,
    PortalAccessDenied,
    SignInFailed,
    SignInBanned,
    PortalSessionsReported,
)
NAMED_TYPES: Mapping[str, type] = {
    "ecpds.portal.PortalSession": PortalSession,
    "ecpds.portal.AccessDeniedReason": AccessDeniedReason,
    "ecpds.portal.SignInAttempt": SignInAttempt,
    "ecpds.portal.BanScope": BanScope,
}
