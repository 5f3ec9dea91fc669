"""Builders of the events the scheduler decides, with deterministic envelopes.

Rule kept here: no clock and no randomness. An event id is a UUID5 of what was decided and the
decision time, so deciding twice on the same state at the same time yields the same events
(a runner that crashes before committing republishes identical ids, and consumers dedupe).
``correlation_id`` is the data file (transfers) or the destination (destination events), so
one grep follows a file; ``causation_id`` is the event that led to the decision.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from bus.events.base import DestinationStatus, Envelope, Event
from bus.events.config import Destination, Host
from bus.events.datafiles import Checksums
from bus.events.movers import TransferAbortRequested
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    DestinationStatusChanged,
    HostActivated,
    HostDeactivated,
    HostPriorityChanged,
    HostSwitched,
    TransferAbandoned,
    TransferExpired,
    TransferFellBack,
    TransferHeld,
    TransferInterrupted,
    TransferLifetimeExtended,
    TransferPriorityChanged,
    TransferReleased,
    TransferRequeued,
    TransferScheduled,
    TransferStopped,
)
from consumers.scheduler.state import DestinationSummary, StoredFile, TransferEntry

_NAMESPACE = uuid.UUID("5b2f7e0c-54a4-4d0e-9d1c-6c1f0e7a9e11")
_NAMESPACE_BYTES = _NAMESPACE.bytes
_NO_CHECKSUMS = Checksums(adler32="")

EXPIRED = "File not transferred before expiration"
MAX_REQUEUE = "Maximum requeue limit reached"


_last_now: list[tuple[datetime, str]] = []


def _iso(now: datetime) -> str:
    # one decide call stamps many events with the same time: format it once (a cache of one)
    if _last_now and _last_now[0][0] is now:
        return _last_now[0][1]
    text = now.isoformat()
    _last_now[:] = [(now, text)]
    return text


def event_id(key: str, now: datetime) -> str:
    """A name-based UUID (version 5 layout, SHA-1 of the namespace and the name) of ``key`` at
    ``now``; the same as ``uuid.uuid5`` without its object overhead."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + f"{key}|{_iso(now)}".encode(), usedforsecurity=False)
    h = digest.hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def stamp(
    source: str, now: datetime, key: str, correlation_id: str, causation_id: str | None
) -> Envelope:
    """An envelope whose id is derived from ``key`` and ``now`` (same decision, same id)."""
    return Envelope(
        event_id=event_id(key, now),
        occurred_at=now,
        source=source,
        correlation_id=correlation_id,
        causation_id=causation_id or None,
    )


def transfer_event_id(kind: str, e: TransferEntry, now: datetime) -> str:
    """The id of a decision of ``kind`` about ``e`` as it is now (its version): a duplicate
    delivered after the transfer moved on no longer matches, and is ignored."""
    return event_id(f"{kind}|{e.transfer_id}|{e.version}", now)


def _tenv(source: str, now: datetime, kind: str, e: TransferEntry, cause: str | None) -> Envelope:
    return Envelope(
        event_id=transfer_event_id(kind, e, now),
        occurred_at=now,
        source=source,
        correlation_id=e.data_file_id,
        causation_id=(cause if cause is not None else e.last_event_id) or None,
    )


def decided_on(e: TransferEntry, ev: Event) -> bool:
    """Whether the scheduler's decision ``ev`` was made on ``e`` as it is now."""
    kind = KINDS.get(type(ev))
    return kind is not None and ev.envelope.event_id == transfer_event_id(
        kind, e, ev.envelope.occurred_at
    )


def orders(
    source: str,
    now: datetime,
    e: TransferEntry,
    dest: Destination,
    host: Host,
    file: StoredFile | None,
    group: str | None = None,
) -> tuple[TransferScheduled, TransferOrdered]:
    """The decision to run the next attempt of ``e`` on ``host``: the fact for the transfers
    log and the order for the movers of ``group`` (default: the destination's transfer group;
    a regional group's fallback when ``fell_back`` says so)."""
    attempt = e.attempt + 1
    group = group or dest.transfer_group
    env = _tenv(source, now, "scheduled", e, None)
    scheduled = TransferScheduled(
        envelope=env,
        transfer_id=e.transfer_id,
        destination=e.destination,
        attempt=attempt,
        host_id=host.id,
        transfer_group=group,
    )
    order = TransferOrdered(
        envelope=_tenv(source, now, "ordered", e, env.event_id),
        transfer_id=e.transfer_id,
        destination=e.destination,
        data_file_id=e.data_file_id,
        attempt=attempt,
        transfer_group=group,
        host=host,
        target=e.target,
        guid=file.guid if file is not None else e.data_file_id,
        store=file.store if file is not None else "",
        location=file.location if file is not None else "",
        size=e.size,
        checksums=file.checksums if file is not None else _NO_CHECKSUMS,
        priority=e.priority,
        expiry_time=e.expiry_time,
        compression=dest.compression,
        if_target_exists=dest.if_target_exists,
        original=file.original if file is not None else None,
        file_instance=e.file_instance,
        metadata=file.metadata if file is not None else {},
        check_since=e.unsettled_since,
    )
    return scheduled, order


def fell_back(
    source: str, now: datetime, e: TransferEntry, from_group: str, to_group: str, reason: str
) -> TransferFellBack:
    """The next attempt of ``e`` goes to ``to_group``, the fallback of its regional group."""
    return TransferFellBack(
        envelope=_tenv(source, now, "fellback", e, None),
        transfer_id=e.transfer_id,
        destination=e.destination,
        attempt=e.attempt + 1,
        from_group=from_group,
        to_group=to_group,
        failures=e.group_failures if e.transfer_group == from_group else 0,
        reason=reason,
    )


def requeued(
    source: str,
    now: datetime,
    e: TransferEntry,
    reason: str,
    queue_time: datetime,
    requeue_count: int | None = None,
    actor: str | None = None,
    cause: str | None = None,
) -> TransferRequeued:
    """Back in the queue (RETR) with its new ordering time."""
    return TransferRequeued(
        envelope=_tenv(source, now, "requeued", e, cause),
        transfer_id=e.transfer_id,
        destination=e.destination,
        reason=reason,
        requeue_count=e.requeue_count if requeue_count is None else requeue_count,
        queue_time=queue_time,
        actor=actor,
    )


def stopped(
    source: str,
    now: datetime,
    e: TransferEntry,
    reason: str,
    actor: str | None = None,
    cause: str | None = None,
) -> TransferStopped:
    """Stopped (STOP): by an operator or after an unrecoverable error."""
    return TransferStopped(
        envelope=_tenv(source, now, "stopped", e, cause),
        transfer_id=e.transfer_id,
        destination=e.destination,
        reason=reason,
        actor=actor,
    )


def expired(source: str, now: datetime, e: TransferEntry) -> TransferExpired:
    """Failed (FAIL): its lifetime passed before delivery."""
    return TransferExpired(
        envelope=_tenv(source, now, "expired", e, None),
        transfer_id=e.transfer_id,
        destination=e.destination,
        expiry_time=e.expiry_time,
        reason=EXPIRED,
    )


def abandoned(source: str, now: datetime, e: TransferEntry, reason: str) -> TransferAbandoned:
    """Failed for good (FAIL), e.g. maximum requeue reached."""
    return TransferAbandoned(
        envelope=_tenv(source, now, "abandoned", e, None),
        transfer_id=e.transfer_id,
        destination=e.destination,
        reason=reason,
        attempt=e.attempt,
    )


def interrupted(
    source: str, now: datetime, e: TransferEntry, reason: str, cause: str | None = None
) -> TransferInterrupted:
    """The running attempt is interrupted (INTR); it will be requeued."""
    return TransferInterrupted(
        envelope=_tenv(source, now, "interrupted", e, cause),
        transfer_id=e.transfer_id,
        destination=e.destination,
        attempt=e.attempt,
        reason=reason,
        mover_id=e.mover_id,
    )


def abort_requested(
    source: str, now: datetime, e: TransferEntry, reason: str, cause: str
) -> TransferAbortRequested:
    """Ask the mover running ``e``'s attempt to abandon it (``cause``: the interruption or stop
    decided on it)."""
    return TransferAbortRequested(
        envelope=_tenv(source, now, "abort", e, cause),
        transfer_id=e.transfer_id,
        destination=e.destination,
        attempt=e.attempt,
        reason=reason,
        mover_id=e.mover_id,
    )


def destination_env(
    source: str, now: datetime, kind: str, s: DestinationSummary, cause: str | None = None
) -> Envelope:
    """Envelope of a destination-level decision, its id derived from the summary's version."""
    return Envelope(
        event_id=event_id(f"{kind}|{s.name}|{s.version}", now),
        occurred_at=now,
        source=source,
        correlation_id=s.name,
        causation_id=cause,
    )


def destination_status(
    source: str,
    now: datetime,
    s: DestinationSummary,
    new: DestinationStatus,
    reason: str,
    until: datetime | None = None,
    actor: str | None = None,
    cause: str | None = None,
) -> DestinationStatusChanged:
    """The destination's status changes."""
    return DestinationStatusChanged(
        envelope=destination_env(source, now, "status", s, cause),
        destination=s.name,
        new_status=new,
        old_status=s.status,
        reason=reason,
        actor=actor,
        until=until,
    )


def host_switched(
    source: str,
    now: datetime,
    s: DestinationSummary,
    from_host: str | None,
    to_host: str,
    reason: str,
) -> HostSwitched:
    """The destination's orders go to another host from now on."""
    return HostSwitched(
        envelope=destination_env(source, now, "switch", s),
        destination=s.name,
        to_host=to_host,
        reason=reason,
        from_host=from_host,
    )


def destination_decided_on(s: DestinationSummary, ev: Event) -> bool:
    """Whether the destination-level decision ``ev`` was made on ``s`` as it is now."""
    kind = DESTINATION_KINDS.get(type(ev))
    key = f"{kind}|{s.name}|{s.version}"
    return kind is not None and ev.envelope.event_id == event_id(key, ev.envelope.occurred_at)


def held(
    source: str, now: datetime, e: TransferEntry, reason: str, actor: str, cause: str | None
) -> TransferHeld:
    """Put on standby (HOLD): by an operator, or by the scheduler (a duplicate)."""
    return TransferHeld(
        envelope=_tenv(source, now, "held", e, cause),
        transfer_id=e.transfer_id,
        destination=e.destination,
        reason=reason,
        actor=actor,
    )


def released(
    source: str, now: datetime, e: TransferEntry, actor: str, cause: str
) -> TransferReleased:
    """Released from standby into the queue (WAIT)."""
    return TransferReleased(
        envelope=_tenv(source, now, "released", e, cause),
        transfer_id=e.transfer_id,
        destination=e.destination,
        actor=actor,
    )


def priority_changed(
    source: str, now: datetime, e: TransferEntry, priority: int, actor: str, cause: str
) -> TransferPriorityChanged:
    """The transfer's priority changes (its place in the queue with it)."""
    return TransferPriorityChanged(
        envelope=_tenv(source, now, "priority", e, cause),
        transfer_id=e.transfer_id,
        destination=e.destination,
        old_priority=e.priority,
        new_priority=priority,
        actor=actor,
    )


def lifetime_extended(
    source: str, now: datetime, e: TransferEntry, expiry: datetime, actor: str, cause: str
) -> TransferLifetimeExtended:
    """The transfer's expiry time moves."""
    return TransferLifetimeExtended(
        envelope=_tenv(source, now, "lifetime", e, cause),
        transfer_id=e.transfer_id,
        destination=e.destination,
        old_expiry_time=e.expiry_time,
        new_expiry_time=expiry,
        actor=actor,
    )


KINDS: dict[type[Event], str] = {
    TransferRequeued: "requeued",
    TransferStopped: "stopped",
    TransferExpired: "expired",
    TransferAbandoned: "abandoned",
    TransferHeld: "held",
    TransferReleased: "released",
    TransferPriorityChanged: "priority",
    TransferLifetimeExtended: "lifetime",
}
"""Transfer decisions that ``evolve`` applies only to the transfer version they were decided on
(see ``transfer_event_id``); the others carry an attempt number, which does the same."""

DESTINATION_KINDS: dict[type[Event], str] = {
    DestinationStatusChanged: "status",
    HostSwitched: "switch",
    HostActivated: "host-activated",
    HostDeactivated: "host-deactivated",
    HostPriorityChanged: "host-priority",
}
"""Destination-level decisions, applied only to the summary version they were decided on."""
