"""Operator requests built from a verb: the one builder the CLI, the monitor's pages and its
REST API share (``hold``, ``restart``, ``stop``, ``requeue`` ... -> a request event).

Rules kept here: a request is an event of ``bus.events.requests`` published on
``ecpds.transfers`` keyed by ``Action.destination`` (so it is ordered with that destination's
transfer events), and the scheduler answers it. Building one is pure: no clock (an extension's
new expiry is computed by the caller from its ``now``) and no I/O. What cannot be asked is
refused with ``Invalid`` (naming the field) before anything is published, in words an
operator can act on: a field of the wrong type (an object where a text is expected), a text
too long, a priority out of range (0-99 for a transfer, 0-``MAX_HOST_PRIORITY`` for a host,
so no number ever overflows the event's Avro ``int``).
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


MAX_PRIORITY = 99  # a transfer's priority: 0 (first) to 99
MAX_HOST_PRIORITY = 2**31 - 1  # a host's priority within its destination (an Avro int)
MAX_NAME = 1024  # a destination, host or transfer id
MAX_REASON = 4096


class Invalid(ValueError):
    """A request that cannot be asked as given (missing priority, no transfer ...); ``field``
    names the offending field when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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


def _text(value: object, field: str, limit: int, *, required: bool = False) -> None:
    """Refuse a field that is not a text of at most ``limit`` characters (or None)."""
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value):
        raise Invalid(f"{field} must be a text", field)
    if len(value) > limit:
        raise Invalid(f"{field} must be at most {limit} characters", field)


def _checked(action: Action) -> None:
    """Refuse fields of the wrong type or out of range (whatever front built the action)."""
    if not isinstance(action.destination, str) or not action.destination:
        raise Invalid(f"{action.verb} needs a destination", "destination")
    _text(action.destination, "destination", MAX_NAME)
    _text(action.actor, "actor", MAX_NAME, required=True)
    _text(action.transfer_id, "transfer_id", MAX_NAME)
    _text(action.host_id, "host_id", MAX_NAME)
    _text(action.reason, "reason", MAX_REASON)
    if not isinstance(action.immediate, bool):
        raise Invalid("immediate must be true or false", "immediate")
    if action.priority is not None:
        top = MAX_HOST_PRIORITY if action.verb is Verb.HOST_PRIORITY else MAX_PRIORITY
        _priority_range(action.priority, top)
    if action.expiry_time is not None and not isinstance(action.expiry_time, datetime):
        raise Invalid("lifetime must be a duration like 2d or 12h", "lifetime")


def _priority_range(value: object, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise Invalid(f"priority must be a whole number from 0 to {top}", "priority")
    return value


def build(action: Action, source: str) -> Event:
    """The request event for ``action``, from ``source`` (``cli``, ``monitor`` ...)."""
    _checked(action)
    if action.verb in HOST_VERBS:
        return _host_request(action, source)
    if action.verb not in TRANSFER_VERBS and action.verb not in DESTINATION_VERBS:
        raise Invalid(f"unknown request {action.verb!r}", "verb")
    tid = action.transfer_id
    if tid is None and action.verb not in DESTINATION_VERBS:
        raise Invalid(f"{action.verb} needs a transfer", "transfer_id")
    if tid is not None and action.verb not in TRANSFER_VERBS:
        raise Invalid(f"{action.verb} applies to a destination, not a transfer", "transfer_id")
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
            raise Invalid("extend needs a lifetime (e.g. 2d, 12h)", "lifetime")
        return r.LifetimeExtensionRequested(
            **common, transfer_id=tid, expiry_time=action.expiry_time
        )
    if action.priority is None:
        raise Invalid(f"priority must be a whole number from 0 to {MAX_PRIORITY}", "priority")
    return r.PriorityChangeRequested(**common, transfer_id=tid, priority=action.priority)


def _host_request(action: Action, source: str) -> Event:
    if not action.host_id:
        raise Invalid("a host request needs a host", "host_id")
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
    if action.priority is None:
        raise Invalid(
            f"a host priority is a whole number from 0 to {MAX_HOST_PRIORITY}", "priority"
        )
    return r.HostPriorityChangeRequested(**common, host_id=host, priority=action.priority)


def lifetime_expiry(lifetime: object, now: datetime) -> datetime | None:
    """The new expiry of an "extend": ``now`` + a lifetime like 2d, 12h or PT6H (None if absent)."""
    if lifetime is None or lifetime == "":
        return None
    if isinstance(lifetime, bool) or not isinstance(lifetime, str | int):
        raise Invalid("lifetime must be a duration like 2d or 12h", "lifetime")
    try:
        ms = parse_duration(str(lifetime), "lifetime")
        return now + timedelta(milliseconds=ms)
    except ConfigurationError as e:
        raise Invalid(f"{e.field}: {e.reason}", "lifetime") from None
    except OverflowError:
        raise Invalid("lifetime is too long", "lifetime") from None


def parse_priority(text: object, top: int = MAX_PRIORITY) -> int | None:
    """A priority from a form or JSON field (a whole number, or its digits), or None when
    absent; anything else, or a number outside 0-``top``, is refused naming the field."""
    if text is None or text == "":
        return None
    if isinstance(text, str):
        digits = text.strip()
        if not digits.isdigit() or len(digits) > len(str(top)):
            raise Invalid(f"priority must be a whole number from 0 to {top}", "priority")
        text = int(digits)
    return _priority_range(text, top)
