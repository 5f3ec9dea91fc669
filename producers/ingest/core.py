"""The pure decision of the ingest stage: accept a submission (with a plan) or refuse it.

``decide(submission, view, index, now)`` reads only its arguments: the configuration view,
the ingest index (uniqueness keys and pending counts) and the time. It never touches the
network, the disk or the clock, so every refusal and every plan is pinned by given/when/then
tests. Rules kept (ECPDS-REFERENCE.md §2.5):

- refused, in this order: invalid options, unknown destination, inactive destination, no
  permission (a data user without ``put`` on the destination), more pending than the
  destination's ``max_pending``, larger than its ``max_file_size`` (when the size is known
  up front; the service enforces it again while streaming), already expired (``--at`` or
  ``--delay`` at or after the expiry), duplicate (destination, target, version) unless
  ``--requeue`` or ``--force``, which make a new file instance (previous + 1);
- the plan queues one transfer to the destination and one per alias (recursive, alias
  ``pattern`` a regex on the target; unknown or inactive aliases are skipped), status ``WAIT``,
  or ``HOLD`` when the submission or that destination is on standby.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from bus.config.durations import parse_size
from bus.config.view import ConfigView
from bus.errors import ConfigurationError
from bus.events.base import TransferStatus
from bus.events.config import PortalOperation
from bus.events.datafiles import DataFileRegistered, RefusalReason, SubmissionMode

MAX_PRIORITY = 99
DEFAULT_PRIORITY = 99
MAX_METADATA_NAME = 25
MAX_METADATA_VALUE = 255
MAX_TARGET = 1024

UniqueKey = tuple[str, str, str]  # destination, target, version ("" when none)


ACQUISITION_REQUESTER = "acquisition/"  # + host id: the requester of acquired data files


def requested_by_acquisition(registered: DataFileRegistered) -> bool:
    """Whether acquisition registered this data file (its requester names an acquisition host)."""
    return (registered.requested_by or "").startswith(ACQUISITION_REQUESTER)


PORTAL_REQUESTER = "portal/"  # + login: the requester of files pushed through the Data Portal


def requested_by_portal(registered: DataFileRegistered) -> bool:
    """Whether a data user pushed this data file through the portal."""
    return (registered.requested_by or "").startswith(PORTAL_REQUESTER)


def left_open_by(registered: DataFileRegistered, source: str, named: bool) -> bool:
    """Whether an ingest API with envelope ``source`` recovers this open registration at start.

    Not acquisition's or the portal's (they recover their own). An API whose instance is named
    (``ECPDS_INSTANCE``, stable across its restarts) takes only those it made itself, so one
    API's restart never fails another's upload in flight; an unnamed one (``<host>-<pid>``,
    new at every start) cannot tell its own and takes every API's."""
    if requested_by_acquisition(registered) or requested_by_portal(registered):
        return False
    return not named or registered.envelope.source == source


def unique_key(destination: str, target: str, version: str | None) -> UniqueKey:
    """The uniqueness key of a data file: (destination, target, version)."""
    return (destination, target, version or "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """What a producer asks for: the options of ``ecpds put`` / ``POST /api/v1/datafiles``."""

    destination: str
    target: str
    priority: int = DEFAULT_PRIORITY
    lifetime_ms: int | None = None  # None = the destination's default lifetime
    delay_ms: int | None = None
    at: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    standby: bool = False
    asap: bool = False
    notify: bool = False  # --event
    mode: SubmissionMode = SubmissionMode.NORMAL
    version: str | None = None
    identity: str | None = None  # recurring-product key; default the target
    size: int | None = None  # when known before the bytes arrive (Content-Length)
    user: str | None = None  # data user login, when a data user submits
    requested_by: str | None = None  # who submitted: token:<name> or user:<login>
    original: str | None = None  # original file name
    acquisition_host: str | None = None  # the provider host it was acquired from
    causation_id: str | None = None  # the event that caused it (an acquisition discovery)

    @property
    def key(self) -> UniqueKey:
        return unique_key(self.destination, self.target, self.version)


class IndexView(Protocol):
    """What ``decide`` needs to know about files already registered."""

    def latest_instance(self, key: UniqueKey) -> tuple[int, bool] | None:
        """The latest file instance under ``key`` and whether it is still live, or None."""
        ...

    def pending(self, destination: str) -> int:
        """How many transfers of ``destination`` are not finished (not DONE, FAIL or STOP)."""
        ...


@dataclass(frozen=True, slots=True)
class PlannedTransfer:
    """One transfer to queue once the bytes are stored."""

    destination: str
    status: TransferStatus
    alias_of: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """An accepted submission: everything the events need, except ids and checksums."""

    submission: Submission
    transfer_group: str
    file_instance: int
    priority: int
    queue_time: datetime
    scheduled_time: datetime | None
    expiry_time: datetime
    identity: str
    max_file_size: int | None  # enforced while streaming; None = no limit
    transfers: tuple[PlannedTransfer, ...]


@dataclass(frozen=True, slots=True)
class Accepted:
    plan: Plan


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal: why (the event's reason), which option it concerns, and a clear message."""

    reason: RefusalReason
    field: str
    message: str


Decision = Accepted | Refused

_TARGET_PART = re.compile(r"[^/\x00]+")


def _invalid(name: str, message: str) -> Refused:
    return Refused(RefusalReason.INVALID, name, message)


def check_options(s: Submission) -> Refused | None:
    """Refuse options that no configuration could make valid."""
    if not s.destination:
        return _invalid("destination", "a destination is required")
    parts = s.target.split("/")
    if not s.target or len(s.target) > MAX_TARGET or s.target.startswith("/"):
        return _invalid("target", f"target must be a relative path of 1-{MAX_TARGET} characters")
    if any(p in ("", ".", "..") or not _TARGET_PART.fullmatch(p) for p in parts):
        return _invalid("target", f"target {s.target!r} has an empty, '.' or '..' part")
    if not 0 <= s.priority <= MAX_PRIORITY:
        return _invalid("priority", f"priority must be 0-{MAX_PRIORITY}, got {s.priority}")
    if s.delay_ms is not None and s.at is not None:
        return _invalid("delay", "give --delay or --at, not both")
    if s.delay_ms is not None and s.delay_ms < 0:
        return _invalid("delay", "delay must not be negative")
    if s.lifetime_ms is not None and s.lifetime_ms < 0:
        return _invalid("lifetime", "lifetime must not be negative")
    if s.at is not None and s.at.tzinfo is None:
        return _invalid("at", "the time must carry a time zone (UTC)")
    if s.size is not None and s.size < 0:
        return _invalid("size", "size must not be negative")
    for name, value in s.metadata.items():
        if not name or len(name) > MAX_METADATA_NAME:
            return _invalid("metadata", f"metadata name {name!r} must be 1-25 characters")
        if len(value) > MAX_METADATA_VALUE:
            return _invalid("metadata", f"metadata value of {name!r} exceeds 255 characters")
    return None


def _permitted(s: Submission, view: ConfigView) -> bool:
    if s.user is None:
        return True  # an operator (API token) may put anywhere
    user = view.users.get(s.user)
    if user is None or not user.active or PortalOperation.PUT not in user.operations:
        return False
    return s.user in view.users_for(s.destination)


def decide(submission: Submission, view: ConfigView, index: IndexView, now: datetime) -> Decision:
    """Accept ``submission`` with a plan, or refuse it with a reason (see the module rules)."""
    s = submission
    if (invalid := check_options(s)) is not None:
        return invalid
    dest = view.destinations.get(s.destination)
    if dest is None:
        return Refused(
            RefusalReason.UNKNOWN_DESTINATION,
            "destination",
            f"destination {s.destination!r} not found",
        )
    if not dest.active:
        return Refused(
            RefusalReason.NOT_PERMITTED,
            "destination",
            f"destination {s.destination!r} is not active",
        )
    if not _permitted(s, view):
        return Refused(
            RefusalReason.NOT_PERMITTED,
            "destination",
            f"data user {s.user!r} may not put on destination {s.destination!r}",
        )
    pending = index.pending(s.destination)
    if pending >= dest.max_pending:
        return Refused(
            RefusalReason.TOO_MANY_PENDING,
            "destination",
            f"destination {s.destination!r} has {pending} pending transfers "
            f"(max pending {dest.max_pending})",
        )
    limit = dest.max_file_size
    if limit is not None and limit < 0:
        limit = None  # -1 means no limit, as in OpenECPDS
    if limit is not None and s.size is not None and s.size > limit:
        return too_large(s.destination, s.size, limit)
    lifetime = dest.default_lifetime_ms if s.lifetime_ms is None else s.lifetime_ms
    expiry = now + timedelta(milliseconds=lifetime)
    scheduled: datetime | None = None
    if s.delay_ms is not None:
        scheduled = now + timedelta(milliseconds=s.delay_ms)
    elif s.at is not None:
        scheduled = s.at
    if expiry <= now or (scheduled is not None and scheduled >= expiry):
        field_name = "at" if s.at is not None else "delay" if scheduled else "lifetime"
        return Refused(
            RefusalReason.ALREADY_EXPIRED,
            field_name,
            f"the file would expire at {expiry.isoformat()} before it is scheduled"
            if scheduled is not None
            else "a lifetime of 0 expires the file at once",
        )
    latest = index.latest_instance(s.key)
    if latest is not None and latest[1] and s.mode is SubmissionMode.NORMAL:
        return Refused(
            RefusalReason.DUPLICATE,
            "target",
            f"Duplicate DataFile found: {s.target!r} (version {s.version or '-'}) is already "
            f"registered on {s.destination!r}; use --requeue or --force for a new instance",
        )
    return Accepted(
        Plan(
            submission=s,
            transfer_group=dest.transfer_group,
            file_instance=(latest[0] + 1) if latest is not None else 1,
            priority=s.priority,
            queue_time=scheduled if scheduled is not None and scheduled > now else now,
            scheduled_time=scheduled,
            expiry_time=expiry,
            identity=s.identity or s.target,
            max_file_size=limit,
            transfers=plan_transfers(s.destination, s.target, s.standby, view),
        )
    )


def plan_transfers(
    destination: str, target: str, standby: bool, view: ConfigView
) -> tuple[PlannedTransfer, ...]:
    """The transfers to queue for a file: the destination and each active alias, each ``HOLD``
    when the file or that destination is on standby, else ``WAIT``."""

    def status(name: str) -> TransferStatus:
        dest = view.destinations.get(name)
        held = standby or (dest is not None and dest.standby)
        return TransferStatus.HOLD if held else TransferStatus.WAIT

    planned = [PlannedTransfer(destination, status(destination))]
    for alias in view.aliases_of(destination, target):
        dest = view.destinations.get(alias)
        if dest is not None and dest.active:
            planned.append(PlannedTransfer(alias, status(alias), alias_of=destination))
    return tuple(planned)


def upload_cap(
    view: ConfigView, destination: str, user: str | None, default: int | None
) -> tuple[int, str] | None:
    """The cap a front door (the ingest API, the portal) adds to a put and whose it is: its
    ``default`` (ECPDS_MAX_UPLOAD) for a destination without its own ``max_file_size`` (that
    one is the service's to enforce), and a data user's ``max_file_size`` property; the lower
    of the two, or None when there is none. An unreadable property caps at 0."""
    dest = view.destinations.get(destination)
    caps: list[tuple[int, str]] = []
    if dest is not None and dest.max_file_size is None and default is not None:
        caps.append((default, "the default max upload (ECPDS_MAX_UPLOAD)"))
    found = view.users.get(user) if user is not None else None
    own = found.properties.get("max_file_size") if found is not None else None
    if own is not None:
        try:
            caps.append((parse_size(own), f"the max file size of data user {user!r}"))
        except ConfigurationError:
            caps.append((0, f"the max file size of data user {user!r} (unreadable: 0)"))
    return min(caps) if caps else None


def too_large(destination: str, size: int, limit: int) -> Refused:
    """The refusal of a file larger than its destination's max file size."""
    return Refused(
        RefusalReason.TOO_LARGE,
        "size",
        f"{size} bytes exceeds the max file size of destination {destination!r} ({limit} bytes)",
    )
