"""Operator actions: each one publishes an operator request event and writes nothing else.

Rule kept here: the monitor never changes a read-model row. An action is a request event on
``ecpds.transfers`` keyed by destination (so it is ordered with that destination's transfer
events); the scheduler answers with the resulting events, and the page shows the result once
they come back through the projection. ``build`` is pure, ``Actions.request`` publishes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bus.config.durations import parse_duration
from bus.errors import ConfigurationError
from bus.events import Event, envelope
from bus.events import requests as r
from bus.publisher import Publisher
from bus.topics import TRANSFERS

SOURCE = "monitor"


class Verb(StrEnum):
    """Every action the monitor offers (on a transfer, a destination or a destination's host)."""

    HOLD = "hold"
    RESTART = "restart"
    STOP = "stop"
    REQUEUE = "requeue"
    PRIORITY = "priority"
    RELEASE = "release"  # release standby
    REQUEUE_FAILED = "requeue-failed"
    EXTEND = "extend"  # extend a transfer's lifetime
    HOST_ON = "host-on"
    HOST_OFF = "host-off"
    HOST_PRIORITY = "host-priority"


TRANSFER_VERBS = (
    Verb.HOLD,
    Verb.RESTART,
    Verb.STOP,
    Verb.REQUEUE,
    Verb.PRIORITY,
    Verb.RELEASE,
    Verb.EXTEND,
)
DESTINATION_VERBS = (Verb.HOLD, Verb.RESTART, Verb.STOP, Verb.RELEASE, Verb.REQUEUE_FAILED)
HOST_VERBS = (Verb.HOST_ON, Verb.HOST_OFF, Verb.HOST_PRIORITY)


class Invalid(ValueError):
    """An action that cannot be requested as given (missing priority, unknown verb ...)."""


@dataclass(frozen=True, slots=True)
class Action:
    """What an operator asked: the verb and what it applies to."""

    verb: Verb
    destination: str
    actor: str
    transfer_id: str | None = None
    host_id: str | None = None
    priority: int | None = None
    reason: str | None = None
    immediate: bool = False  # hold/restart: interrupt running transfers
    expiry_time: datetime | None = None  # extend: the new expiry


def build(req: Action) -> Event:
    """The request event for ``req``."""
    env = envelope(SOURCE, req.transfer_id or req.host_id or req.destination)
    dest, actor, why, tid = req.destination, req.actor, req.reason, req.transfer_id
    if req.verb in HOST_VERBS:
        if not req.host_id:
            raise Invalid("a host action needs a host")
        host = req.host_id
        if req.verb is Verb.HOST_ON:
            return r.HostActivationRequested(
                envelope=env, destination=dest, host_id=host, requested_by=actor, reason=why
            )
        if req.verb is Verb.HOST_PRIORITY:
            if req.priority is None or req.priority < 0:
                raise Invalid("a host priority is a whole number from 0")
            return r.HostPriorityChangeRequested(
                envelope=env,
                destination=dest,
                host_id=host,
                priority=req.priority,
                requested_by=actor,
                reason=why,
            )
        return r.HostDeactivationRequested(
            envelope=env, destination=dest, host_id=host, requested_by=actor, reason=why
        )
    if req.verb is Verb.HOLD:
        return r.HoldRequested(
            envelope=env,
            destination=dest,
            transfer_id=tid,
            immediate=req.immediate,
            requested_by=actor,
            reason=why,
        )
    if req.verb is Verb.RESTART:
        return r.RestartRequested(
            envelope=env,
            destination=dest,
            transfer_id=tid,
            immediate=req.immediate,
            requested_by=actor,
            reason=why,
        )
    if req.verb is Verb.STOP:
        return r.StopRequested(
            envelope=env, destination=dest, transfer_id=tid, requested_by=actor, reason=why
        )
    if req.verb is Verb.RELEASE:
        return r.StandbyReleaseRequested(
            envelope=env, destination=dest, transfer_id=tid, requested_by=actor, reason=why
        )
    if req.verb is Verb.REQUEUE_FAILED:
        return r.RequeueFailedRequested(
            envelope=env, destination=dest, requested_by=actor, reason=why
        )
    if tid is None:
        raise Invalid(f"{req.verb} needs a transfer")
    if req.verb is Verb.REQUEUE:
        return r.RequeueRequested(
            envelope=env, destination=dest, transfer_id=tid, requested_by=actor, reason=why
        )
    if req.verb is Verb.EXTEND:
        if req.expiry_time is None:
            raise Invalid("extend needs a lifetime (e.g. 2d, 12h)")
        return r.LifetimeExtensionRequested(
            envelope=env,
            destination=dest,
            transfer_id=tid,
            expiry_time=req.expiry_time,
            requested_by=actor,
            reason=why,
        )
    if req.priority is None or not 0 <= req.priority <= 99:
        raise Invalid("priority must be a whole number from 0 to 99")
    return r.PriorityChangeRequested(
        envelope=env,
        destination=dest,
        transfer_id=tid,
        priority=req.priority,
        requested_by=actor,
        reason=why,
    )


def lifetime_expiry(lifetime: object, now: datetime) -> datetime | None:
    """The new expiry of an "extend": ``now`` + a lifetime like 2d, 12h or PT6H (None if absent)."""
    if lifetime is None or lifetime == "":
        return None
    try:
        ms = parse_duration(str(lifetime), "lifetime")
    except ConfigurationError as e:
        raise Invalid(f"{e.field}: {e.reason}") from None
    return now + timedelta(milliseconds=ms)


def parse_priority(text: object) -> int | None:
    """A priority from a form or JSON field, or None when absent or not a number."""
    if text is None or text == "":
        return None
    try:
        return int(str(text))
    except ValueError:
        raise Invalid("priority must be a whole number from 0 to 99") from None


class Actions:
    """Publishes operator requests on the transfers topic (connecting on the first one, so a
    monitor without Kafka still shows its pages)."""

    def __init__(self, bootstrap: str, topic: str = TRANSFERS) -> None:
        self._bootstrap = bootstrap
        self._publisher: Publisher | None = None
        self._lock = asyncio.Lock()
        self.topic = topic

    async def _started(self) -> Publisher:
        async with self._lock:
            if self._publisher is None:
                publisher = Publisher(self._bootstrap, client_id="ecpds-monitor")
                await publisher.start()
                self._publisher = publisher
            return self._publisher

    async def request(self, req: Action) -> Event:
        """Publish the request (acknowledged by the broker when this returns); the event."""
        event = build(req)
        publisher = await self._started()
        await publisher.publish(self.topic, req.destination, event)
        return event

    async def close(self) -> None:
        if self._publisher is not None:
            await self._publisher.stop()
            self._publisher = None
