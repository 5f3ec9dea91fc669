"""Factories for scheduler tests: configuration, queued transfers, mover outcomes, operator
requests, and a small given/when/then driver over the pure core (no mocks, no clock)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bus.events.base import Envelope, Event, TransferStatus
from bus.events.config import (
    Association,
    Destination,
    DestinationType,
    Host,
    HostType,
)
from bus.events.config_changes import (
    AssociationDefined,
    DestinationChanged,
    DestinationDefined,
    HostChanged,
    HostDefined,
)
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    Fault,
    TransferFailed,
    TransferInterrupted,
    TransferQueued,
    TransferStarted,
    TransferSucceeded,
    Verification,
)
from consumers.scheduler.core import SchedulerSettings, SchedulerState, decide, evolve
from consumers.scheduler.state import DestinationSummary, TransferEntry

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday, noon UTC
SETTINGS = SchedulerSettings(source="scheduler/test")
_ids = itertools.count()


def at(minutes: float = 0, seconds: float = 0, ms: int = 0) -> datetime:
    """T0 plus an offset."""
    return T0 + timedelta(minutes=minutes, seconds=seconds, milliseconds=ms)


def env(when: datetime = T0, correlation: str = "test", cause: str | None = None) -> Envelope:
    """An envelope with a fresh readable id."""
    return Envelope(
        event_id=f"ev-{next(_ids)}",
        occurred_at=when,
        source="test",
        correlation_id=correlation,
        causation_id=cause,
    )


def destination(name: str = "dest", **kw: Any) -> Destination:
    """A dissemination destination with small, test-friendly limits unless told otherwise."""
    base: dict[str, Any] = {
        "name": name,
        "type": DestinationType.DISSEMINATION,
        "transfer_group": "tg",
        "max_connections": 2,
        "retry_count": 2,
        "retry_frequency_ms": 30_000,
        "max_start": 3,
        "start_frequency_ms": 600_000,
        "reset_frequency_ms": 1_200_000,
    }
    return Destination(**{**base, **kw})


def host(host_id: str = "h1", **kw: Any) -> Host:
    """A dissemination host retried once after 60 s unless told otherwise."""
    base: dict[str, Any] = {
        "id": host_id,
        "nickname": host_id,
        "type": HostType.DISSEMINATION,
        "protocol": "ftp",
        "address": f"{host_id}.example:21",
        "max_connections": 5,
        "retry_count": 1,
        "retry_frequency_ms": 60_000,
    }
    return Host(**{**base, **kw})


def configured(dest: Destination | None = None, *hosts: Host) -> list[Event]:
    """Events defining a destination and its hosts, associated in the given order."""
    dest = dest or destination()
    hosts = hosts or (host("h1"),)
    events: list[Event] = [DestinationDefined(envelope=env(), destination=dest)]
    for i, h in enumerate(hosts):
        events.append(HostDefined(envelope=env(), host=h))
        events.append(
            AssociationDefined(
                envelope=env(),
                association=Association(destination=dest.name, host=h.id, priority=i),
            )
        )
    return events


def changed(thing: Destination | Host, **kw: Any) -> Event:
    """A configuration change of a destination or a host."""
    if isinstance(thing, Destination):
        return DestinationChanged(envelope=env(), destination=replace(thing, **kw))
    return HostChanged(envelope=env(), host=replace(thing, **kw))


def queued(
    tid: str,
    dest: str = "dest",
    *,
    priority: int = 99,
    queue_time: datetime = T0,
    expiry: datetime | None = None,
    status: TransferStatus = TransferStatus.WAIT,
    when: datetime | None = None,
) -> TransferQueued:
    """A transfer queued for ``dest`` (default: now, priority 99, two days of lifetime)."""
    return TransferQueued(
        envelope=env(when or min(queue_time, T0), f"df-{tid}"),
        transfer_id=tid,
        destination=dest,
        data_file_id=f"df-{tid}",
        target=f"{tid}.bin",
        status=status,
        priority=priority,
        queue_time=queue_time,
        expiry_time=expiry or queue_time + timedelta(days=2),
        size=10,
    )


def started(order: TransferOrdered, when: datetime, mover: str = "m1") -> TransferStarted:
    """A mover started the ordered attempt."""
    return TransferStarted(
        envelope=env(when),
        transfer_id=order.transfer_id,
        destination=order.destination,
        attempt=order.attempt,
        host_id=order.host.id,
        mover_id=mover,
    )


def succeeded(order: TransferOrdered, when: datetime, mover: str = "m1") -> TransferSucceeded:
    """A mover delivered the ordered attempt."""
    return TransferSucceeded(
        envelope=env(when),
        transfer_id=order.transfer_id,
        destination=order.destination,
        attempt=order.attempt,
        host_id=order.host.id,
        mover_id=mover,
        remote_path=order.target,
        bytes_sent=order.size,
        duration_ms=5,
        bytes_per_second=2000.0,
        verification=Verification.SIZE,
    )


def failed(
    order: TransferOrdered,
    when: datetime,
    *,
    retriable: bool = True,
    mover: str = "m1",
    error: str = "ConnectionRefused",
    message: str = "connection refused",
    fault: Fault | None = None,
) -> TransferFailed:
    """A mover failed the ordered attempt (retriable unless told otherwise; without ``fault``
    it reads as a failure from a mover older than that field)."""
    return TransferFailed(
        envelope=env(when),
        transfer_id=order.transfer_id,
        destination=order.destination,
        attempt=order.attempt,
        host_id=order.host.id,
        mover_id=mover,
        error_class=error,
        message=message,
        retriable=retriable,
        fault=fault,
    )


def fail_running(
    s: Scheduler,
    when: datetime,
    *,
    retriable: bool = True,
    error: str = "ConnectionRefused",
    message: str = "connection refused",
    fault: Fault | None = None,
) -> list[Event]:
    """Every running attempt fails at ``when``; returns what is decided then (settled)."""
    for e in sorted(s.state.transfers.values(), key=lambda e: e.transfer_id):
        if e.running:
            s.given(
                TransferFailed(
                    envelope=env(when),
                    transfer_id=e.transfer_id,
                    destination=e.destination,
                    attempt=e.attempt,
                    host_id=e.host_id or "",
                    mover_id="m1",
                    error_class=error,
                    message=message,
                    retriable=retriable,
                    fault=fault,
                )
            )
    return s.settle(when)


def interrupted(order: TransferOrdered, when: datetime, mover: str = "m1") -> TransferInterrupted:
    """A mover reported the ordered attempt interrupted (e.g. its shutdown)."""
    return TransferInterrupted(
        envelope=env(when),
        transfer_id=order.transfer_id,
        destination=order.destination,
        attempt=order.attempt,
        reason="mover shutdown",
        mover_id=mover,
    )


def request(cls: type[Event], when: datetime = T0, **kw: Any) -> Event:
    """An operator request of type ``cls`` by ``admin`` for destination ``dest``."""
    fields: dict[str, Any] = {"destination": "dest", "requested_by": "admin", **kw}
    return cls(envelope=env(when), **fields)


class Scheduler:
    """Given/when/then driver: feed events, decide at a time, decisions are fed back."""

    def __init__(self, *events: Event | Iterable[Event]) -> None:
        self.state = SchedulerState()
        self.log: list[Event] = []  # every event evolved, inputs and decisions, in order
        self.given(*events)

    def given(self, *events: Event | Iterable[Event]) -> Scheduler:
        """Fold events (or lists of events) into the state."""
        for item in events:
            for ev in [item] if isinstance(item, Event) else item:
                self.log.append(ev)
                evolve(self.state, ev)
        return self

    def decide(self, now: datetime) -> list[Event]:
        """One decide at ``now``; its decisions are evolved back, as the runner does."""
        out = decide(self.state, SETTINGS, now)
        for ev in out:
            self.log.append(ev)
            evolve(self.state, ev)
        return out

    def settle(self, now: datetime, limit: int = 20) -> list[Event]:
        """Decide at ``now`` until nothing more is decided (bounded)."""
        everything: list[Event] = []
        for _ in range(limit):
            out = self.decide(now)
            if not out:
                return everything
            everything.extend(out)
        raise AssertionError(f"decisions did not settle: {[type(e).__name__ for e in out]}")

    def entry(self, tid: str) -> TransferEntry:
        """The scheduler's entry of a transfer."""
        return self.state.transfers[tid]

    def summary(self, dest: str = "dest") -> DestinationSummary:
        """The scheduler's summary of a destination."""
        return self.state.destinations[dest].summary


def kinds(events: Iterable[Event]) -> list[str]:
    """The class names of events, in order."""
    return [type(e).__name__ for e in events]


def ordered(events: Iterable[Event]) -> list[TransferOrdered]:
    """The orders among events."""
    return [e for e in events if isinstance(e, TransferOrdered)]


def ordered_ids(events: Iterable[Event]) -> list[str]:
    """The transfer ids ordered, in order."""
    return [o.transfer_id for o in ordered(events)]


def of(events: Iterable[Event], cls: type[Any]) -> list[Any]:
    """The events of one type."""
    return [e for e in events if isinstance(e, cls)]
