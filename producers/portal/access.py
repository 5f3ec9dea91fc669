"""The portal's access model, one pure core shared by every protocol (SFTP, SCP, HTTPS, ...).

No I/O, no clock: ``now`` is passed in. A refusal is a ``Denied`` (reason, message, operation,
path), which each door answers with its own protocol's code and publishes as a
``PortalAccessDenied`` event. Sign-in failures are not decided here: they go through the
sign-in defender (``bus.signin``). Rules kept here (ECPDS-REFERENCE.md "Data Portal"):

- A data user reaches destinations directly (``DataUser.destinations``) or through an active
  policy listing it; only destinations that exist are seen. A destination not seen answers
  ``NOT_FOUND``, never "forbidden", so its existence is not told.
- An operation (``get put delete dir mkdir rmdir rename size mtime``) is allowed when it is
  granted and, if ``portal.<op>PathPermRegex`` is set, the regex matches the full path
  (``destination/name``, the whole of it, as Java's ``matches``).
- An inactive account is ``DISABLED``; so is one whose ``portal.expiry`` (ISO 8601 date or
  time, UTC when no zone) has passed. An account without destinations is ``NO_DESTINATIONS``.
- ``portal.maxConnections`` (default 10; negative: unlimited) sessions at once per user; the
  next one is refused (``MAX_CONNECTIONS``). ``portal.maxConnectionsSchedule`` changes it by
  time of day (UTC): ``HH:MM-HH:MM=N`` windows, comma-separated, the first that holds wins; a
  window whose end is before its start crosses midnight.
- Rolling quotas ``portal.maxUploadBytes`` over ``portal.uploadPeriod`` and
  ``portal.maxDownloadBytes`` over ``portal.downloadPeriod`` (default one day): once spent, new
  sessions are refused (``QUOTA_EXCEEDED``); a session already open finishes what it does.
- Paths are confined to the user's view, rooted at ``/`` (its destinations): a ``..`` part,
  an empty part inside the path, a backslash, a NUL, a control character, a part longer than
  255 bytes or a path longer than 1024, and anything that percent-decodes (once or twice) to
  one of those or to a ``/`` are refused outright, never resolved.
- Temporary names (``incoming.tmpPattern``, default ``(^\\.)|(\\.tmp$)`` on the file's base
  name; ``incoming.tmpDetect=no`` turns it off) are uploads in progress: they are registered
  only once renamed to a final name.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import unquote

from bus.config.durations import parse_duration, parse_size
from bus.config.view import ConfigView
from bus.errors import ConfigurationError
from bus.events.config import DataUser
from bus.events.config import PortalOperation as Operation
from bus.events.portal import AccessDeniedReason as Reason

DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_PERIOD = timedelta(days=1)
DEFAULT_TMP_PATTERN = r"(^\.)|(\.tmp$)"
MAX_PART = 255  # bytes of one name, as most file systems
MAX_PATH = 1024  # bytes of a whole path, as an ecpds target
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FALSE = frozenset({"no", "false", "off", "0"})


class Direction(StrEnum):
    """Which way bytes went, for the rolling quotas."""

    UPLOAD = "UPLOAD"
    DOWNLOAD = "DOWNLOAD"


@dataclass(frozen=True, slots=True)
class Denied:
    """A refusal: why, what was asked, and a message fit for the client."""

    reason: Reason
    message: str
    operation: Operation | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """At most ``limit`` bytes in any ``period``."""

    limit: int
    period: timedelta


@dataclass(frozen=True, slots=True)
class Account:
    """A data user as the portal sees it: what it may reach and do, and its limits."""

    login: str
    active: bool
    destinations: tuple[str, ...]
    operations: frozenset[Operation]
    regexes: Mapping[Operation, re.Pattern[str]] = field(default_factory=dict)
    expires_at: datetime | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    schedule: tuple[tuple[int, int, int], ...] = ()  # (start minute, end minute, max) UTC
    quotas: Mapping[Direction, Quota] = field(default_factory=dict)
    temporary: re.Pattern[str] | None = re.compile(DEFAULT_TMP_PATTERN)

    def may_see(self, destination: str) -> bool:
        return destination in self.destinations

    def connections_at(self, now: datetime) -> int:
        """Sessions allowed at once at ``now``: the first schedule window holding it, else
        ``max_connections``."""
        minute = now.astimezone(UTC).hour * 60 + now.astimezone(UTC).minute
        for start, end, most in self.schedule:
            inside = start <= minute < end if start <= end else minute >= start or minute < end
            if inside:
                return most
        return self.max_connections


def destinations_of(login: str, view: ConfigView) -> tuple[str, ...]:
    """The destinations ``login`` reaches, directly or through an active policy, sorted."""
    user = view.users.get(login)
    direct = set(user.destinations) if user is not None else set()
    via = {
        d for p in view.policies.values() if p.active and login in p.users for d in p.destinations
    }
    return tuple(sorted(d for d in direct | via if d in view.destinations))


def account_of(user: DataUser, view: ConfigView) -> Account:
    """``user``'s account; a bad ``portal.*``/``incoming.*`` property raises
    ``ConfigurationError`` naming it (the door refuses the sign-in, as a misconfiguration)."""
    props = user.properties
    regexes: dict[Operation, re.Pattern[str]] = {}
    for op in Operation:
        name = f"portal.{op.value.lower()}PathPermRegex"
        if (raw := props.get(name)) is not None:
            try:
                regexes[op] = re.compile(raw)
            except re.error as error:
                raise ConfigurationError(name, f"not a regex: {error}") from None
    quotas: dict[Direction, Quota] = {}
    for direction, word in ((Direction.UPLOAD, "Upload"), (Direction.DOWNLOAD, "Download")):
        limit = props.get(f"portal.max{word}Bytes")
        if limit is not None:
            period = props.get(f"portal.{word.lower()}Period")
            span = (
                timedelta(milliseconds=parse_duration(period, f"portal.{word.lower()}Period"))
                if period is not None
                else DEFAULT_PERIOD
            )
            quotas[direction] = Quota(parse_size(limit, f"portal.max{word}Bytes"), span)
    temporary: re.Pattern[str] | None = None
    if props.get("incoming.tmpDetect", "yes").strip().lower() not in _FALSE:
        try:
            temporary = re.compile(props.get("incoming.tmpPattern", DEFAULT_TMP_PATTERN))
        except re.error as error:
            raise ConfigurationError("incoming.tmpPattern", f"not a regex: {error}") from None
    return Account(
        login=user.login,
        active=user.active,
        destinations=destinations_of(user.login, view),
        operations=frozenset(user.operations),
        regexes=regexes,
        expires_at=_expiry(props.get("portal.expiry")),
        max_connections=_whole(props.get("portal.maxConnections"), "portal.maxConnections"),
        schedule=_schedule(props.get("portal.maxConnectionsSchedule")),
        quotas=quotas,
        temporary=temporary,
    )


def _expiry(raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ConfigurationError("portal.expiry", f"not an ISO 8601 date: {raw!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_WINDOW = re.compile(r"\s*(\d\d):(\d\d)-(\d\d):(\d\d)=(-?\d+)\s*")


def _schedule(raw: str | None) -> tuple[tuple[int, int, int], ...]:
    """``HH:MM-HH:MM=N[,...]`` as (start minute, end minute, N) windows."""
    if raw is None or not raw.strip():
        return ()
    windows = []
    for part in raw.split(","):
        found = _WINDOW.fullmatch(part)
        hours = (int(found[1]), int(found[3])) if found else (99, 99)
        minutes = (int(found[2]), int(found[4])) if found else (99, 99)
        if found is None or max(hours) > 24 or max(minutes) > 59:
            raise ConfigurationError(
                "portal.maxConnectionsSchedule", f"expected HH:MM-HH:MM=N[,...], got {part!r}"
            )
        start, end = hours[0] * 60 + minutes[0], hours[1] * 60 + minutes[1]
        windows.append((start, end, int(found[5])))
    return tuple(windows)


def _whole(raw: str | None, name: str) -> int:
    if raw is None:
        return DEFAULT_MAX_CONNECTIONS
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigurationError(name, f"must be a whole number, got {raw!r}") from None


def admit(account: Account, now: datetime) -> Denied | None:
    """Whether ``account`` may open a session at all (its state, not its usage)."""
    if not account.active:
        return Denied(Reason.DISABLED, f"account {account.login} is disabled")
    if account.expires_at is not None and account.expires_at <= now:
        return Denied(Reason.DISABLED, f"account {account.login} expired")
    if not account.destinations:
        return Denied(Reason.NO_DESTINATIONS, f"account {account.login} has no destinations")
    return None


# --- paths -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortalPath:
    """A path in a user's view: ``()`` is the root, then a destination, then a name in it."""

    parts: tuple[str, ...]

    @property
    def destination(self) -> str | None:
        return self.parts[0] if self.parts else None

    @property
    def name(self) -> str:
        """The path inside the destination ("" for the root and a destination itself)."""
        return "/".join(self.parts[1:])

    @property
    def text(self) -> str:
        """The full path as the regexes see it: ``destination/name``."""
        return "/".join(self.parts)

    def __str__(self) -> str:
        return "/" + self.text

    def child(self, name: str) -> PortalPath:
        return PortalPath((*self.parts, name))


def _bad_part(part: str) -> str | None:
    """Why ``part`` (one name of a path) is refused, or None."""
    if part in (".", ".."):
        return "a '.' or '..' part"
    if "\\" in part:
        return "a backslash"
    if "\x00" in part:
        return "a NUL byte"
    if _CONTROL.search(part):
        return "a control character"
    if len(part.encode()) > MAX_PART:
        return f"a name longer than {MAX_PART} bytes"
    decoded = part
    for _ in range(2):  # encoded, then double-encoded: what a later decoder would see
        once = unquote(decoded, errors="strict")
        if once == decoded:
            break
        decoded = once
        if "/" in decoded or decoded in (".", "..") or "\\" in decoded or _CONTROL.search(decoded):
            return "an encoded '/', '.', '..', backslash or control character"
    return None


def confine(raw: str) -> PortalPath | Denied:
    """``raw`` (absolute or relative to the root: the view is the client's whole world) as a
    path in the view, or the refusal of a path that tries to leave it or hide something."""
    if len(raw.encode()) > MAX_PATH:
        return Denied(Reason.NOT_FOUND, f"a path longer than {MAX_PATH} bytes", path=raw[:64])
    text = "" if raw in ("", ".") else raw.strip("/")
    parts = tuple(text.split("/")) if text else ()
    for part in parts:
        why = "an empty part" if part == "" else _bad_part(part)
        if why is not None:
            return Denied(Reason.NOT_FOUND, f"path refused: {why}", path=_shown(raw))
    return PortalPath(parts)


def normalise(raw: str, cwd: PortalPath | None = None) -> PortalPath | Denied:
    """A client's path resolved the way ``realpath`` does (``..`` climbs, ``.`` stays), only
    within the view: a path that would climb above the root is refused."""
    parts = list(cwd.parts) if cwd is not None and not raw.startswith("/") else []
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return Denied(Reason.NOT_FOUND, "path refused: above the root", path=_shown(raw))
            parts.pop()
            continue
        why = _bad_part(part)
        if why is not None:
            return Denied(Reason.NOT_FOUND, f"path refused: {why}", path=_shown(raw))
        parts.append(part)
    joined = "/".join(parts)
    if len(joined.encode()) > MAX_PATH:
        return Denied(Reason.NOT_FOUND, f"a path longer than {MAX_PATH} bytes", path=raw[:64])
    return PortalPath(tuple(parts))


def _shown(raw: str) -> str:
    """A refused path as it may be logged: control characters escaped, bounded."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", raw)[:256]


# --- operations --------------------------------------------------------------------------------


def authorise(
    account: Account, operation: Operation, path: PortalPath, now: datetime
) -> Denied | None:
    """Whether ``account`` may do ``operation`` on ``path`` now (None: allowed)."""
    shown = str(path)
    refused = admit(account, now)
    if refused is not None:
        return Denied(refused.reason, refused.message, operation, shown)
    destination = path.destination
    if destination is not None and not account.may_see(destination):
        return Denied(Reason.NOT_FOUND, f"{shown}: no such file or directory", operation, shown)
    if operation not in account.operations:
        return Denied(
            Reason.NO_PERMISSION, f"{operation.value.lower()} is not permitted", operation, shown
        )
    regex = account.regexes.get(operation)
    if regex is not None and path.parts and not regex.fullmatch(path.text):
        return Denied(
            Reason.NO_PERMISSION,
            f"{operation.value.lower()} is not permitted on {shown}",
            operation,
            shown,
        )
    return None


def is_temporary(account: Account, name: str) -> bool:
    """Whether ``name`` (a path inside a destination) is an upload still in progress."""
    if account.temporary is None:
        return False
    return account.temporary.search(name.rsplit("/", 1)[-1]) is not None


# --- usage: sessions and quotas ----------------------------------------------------------------


@dataclass(slots=True)
class _Use:
    sessions: int = 0
    moved: dict[Direction, deque[tuple[datetime, int]]] = field(
        default_factory=lambda: {d: deque() for d in Direction}
    )


class Usage:
    """Sessions open and bytes moved per user, for ``max_connections`` and the quotas (state
    only; one per portal process, shared by every door)."""

    def __init__(self) -> None:
        self._users: dict[str, _Use] = {}

    def open(self, account: Account, now: datetime) -> Denied | None:
        """Count a new session of ``account``, or refuse it (the count is then unchanged)."""
        refused = admit(account, now)
        if refused is not None:
            return refused
        use = self._users.setdefault(account.login, _Use())
        most = account.connections_at(now)
        if 0 <= most <= use.sessions:
            return Denied(
                Reason.MAX_CONNECTIONS, f"at most {most} sessions at once for {account.login}"
            )
        for direction, quota in account.quotas.items():
            spent = self.spent(account.login, direction, quota.period, now)
            if spent >= quota.limit:
                return Denied(
                    Reason.QUOTA_EXCEEDED,
                    f"{direction.value.lower()} quota of {quota.limit} bytes per "
                    f"{quota.period} spent ({spent} bytes)",
                )
        use.sessions += 1
        return None

    def close(self, login: str) -> None:
        use = self._users.get(login)
        if use is not None and use.sessions > 0:
            use.sessions -= 1

    def sessions(self, login: str) -> int:
        use = self._users.get(login)
        return use.sessions if use is not None else 0

    def moved(self, login: str, direction: Direction, size: int, now: datetime) -> None:
        """Count ``size`` bytes moved by ``login`` (a whole file or a part of one)."""
        if size > 0:
            self._users.setdefault(login, _Use()).moved[direction].append((now, size))

    def spent(self, login: str, direction: Direction, period: timedelta, now: datetime) -> int:
        """Bytes ``login`` moved that way within ``period`` before ``now`` (older: forgotten)."""
        use = self._users.get(login)
        if use is None:
            return 0
        moves = use.moved[direction]
        while moves and moves[0][0] <= now - period:
            moves.popleft()
        return sum(size for _, size in moves)


__all__ = [
    "Account",
    "Denied",
    "Direction",
    "Operation",
    "PortalPath",
    "Quota",
    "Reason",
    "Usage",
    "account_of",
    "admit",
    "authorise",
    "confine",
    "destinations_of",
    "is_temporary",
    "normalise",
]
