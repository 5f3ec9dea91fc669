"""Operator requests built from a verb: the one builder the CLI, the monitor's pages and its
REST API share (``hold``, ``restart``, ``stop``, ``requeue`` ... -> a request event).

Rules kept here: a request is an event of ``bus.events.requests`` published on
``ecpds.transfers`` keyed by ``Action.destination`` (so it is ordered with that destination's
transfer events), and the scheduler answers it. Building one is pure: no clock (an extension's
new expiry is computed by the caller from its ``now``) and no I/O. What cannot be asked is
refused with ``Invalid`` before anything is published, in words an operator can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypedDict

from bus.config.durations import parse_duration
from bus.errors import ConfigurationError
from bus.events import Envelope, Event, envelope
from bus.events import requests as r


class Verb(StrEnum):
    """Every operator request (on a transfer, a destination or a destination's host)."""

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
    """A request that cannot be asked as given (missing priority, no transfer ...)."""


@dataclass(frozen=True, slots=True)
class Action:
    """What an operator asked: the verb, what it applies to, who asked and why."""

    verb: Verb
    destination: str
    actor: str
    transfer_id: str | None = None
    host_id: str | None = None
    priority: int | None = None
    reason: str | None = None
    immediate: bool = False  # hold/restart: interrupt running transfers
    expiry_time: datetime | None = None  # extend: the new expiry


class _Common(TypedDict):
    """The fields every request event carries."""

    envelope: Envelope
    destination: str
    requested_by: str
    reason: str | None


def build(action: Action, source: str) -> Event:
    """The request event for ``action``, from ``source`` (``cli``, ``monitor`` ...)."""
    if not action.destination:
        raise Invalid(f"{action.verb} needs a destination")
    if action.verb in HOST_VERBS:
        return _host_request(action, source)
    if action.verb not in TRANSFER_VERBS and action.verb not in DESTINATION_VERBS:
        raise Invalid(f"unknown request {action.verb!r}")
    tid = action.transfer_id
    if tid is None and action.verb not in DESTINATION_VERBS:
        raise Invalid(f"{action.verb} needs a transfer")
    if tid is not None and action.verb not in TRANSFER_VERBS:
        raise Invalid(f"{action.verb} applies to a destination, not a transfer")
    common = _Common(
        envelope=envelope(source, tid or action.destination),
        destination=action.destination,
        requested_by=action.actor,
        reason=action.reason,
    )
    verb = action.verb
    if verb is Verb.HOLD:
        return r.HoldRequested(**common, transfer_id=tid, immediate=action.immediate)
    if verb is Verb.RESTART:
        return r.RestartRequested(**common, transfer_id=tid, immediate=action.immediate)
    if verb is Verb.STOP:
        return r.StopRequested(**common, transfer_id=tid)
    if verb is Verb.RELEASE:
        return r.StandbyReleaseRequested(**common, transfer_id=tid)
    if verb is Verb.REQUEUE_FAILED:
        return r.RequeueFailedRequested(**common)
    assert tid is not None  # the verbs left act on one transfer only
    if verb is Verb.REQUEUE:
        return r.RequeueRequested(**common, transfer_id=tid)
    if verb is Verb.EXTEND:
        if action.expiry_time is None:
            raise Invalid("extend needs a lifetime (e.g. 2d, 12h)")
        return r.LifetimeExtensionRequested(
            **common, transfer_id=tid, expiry_time=action.expiry_time
        )
    if action.priority is None or not 0 <= action.priority <= 99:
        raise Invalid("priority must be a whole number from 0 to 99")
    return r.PriorityChangeRequested(**common, transfer_id=tid, priority=action.priority)


def _host_request(action: Action, source: str) -> Event:
    if not action.host_id:
        raise Invalid("a host request needs a host")
    common = _Common(
        envelope=envelope(source, action.host_id),
        destination=action.destination,
        requested_by=action.actor,
        reason=action.reason,
    )
    host = action.host_id
    if action.verb is Verb.HOST_ON:
        return r.HostActivationRequested(**common, host_id=host)
    if action.verb is Verb.HOST_OFF:
        return r.HostDeactivationRequested(**common, host_id=host)
    if action.priority is None or action.priority < 0:
        raise Invalid("a host priority is a whole number from 0")
    return r.HostPriorityChangeRequested(**common, host_id=host, priority=action.priority)


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
    """A priority from a form or JSON field, or None when absent; not a number is refused."""
    if text is None or text == "":
        return None
    try:
        return int(str(text))
    except ValueError:
        raise Invalid("priority must be a whole number from 0 to 99") from None
