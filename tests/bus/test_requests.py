"""The one operator request builder (``bus.requests``) the CLI, the monitor's pages and its REST
API share: each verb becomes its request event, and what cannot be asked is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bus.events import requests as r
from bus.requests import Action, Invalid, Verb, build, lifetime_expiry, parse_priority

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BASE = {"destination": "d", "actor": "op"}


def test_each_verb_builds_its_request_event() -> None:
    """Each verb becomes its operator request event, carrying who asked, why, what it targets
    and where it came from."""
    requeue = build(Action(Verb.REQUEUE, transfer_id="t", reason="why", **BASE), "cli")
    assert isinstance(requeue, r.RequeueRequested)
    assert (requeue.destination, requeue.transfer_id, requeue.reason) == ("d", "t", "why")
    assert requeue.envelope.source == "cli"
    assert requeue.envelope.correlation_id == "t"
    hold = build(Action(Verb.HOLD, **BASE), "monitor")
    assert isinstance(hold, r.HoldRequested)
    assert (hold.transfer_id, hold.requested_by, hold.immediate) == (None, "op", False)
    assert hold.envelope.correlation_id == "d"
    prio = build(Action(Verb.PRIORITY, transfer_id="t", priority=7, **BASE), "cli")
    assert isinstance(prio, r.PriorityChangeRequested)
    assert prio.priority == 7
    stop = build(Action(Verb.STOP, transfer_id="t", **BASE), "cli")
    assert isinstance(stop, r.StopRequested)
    assert stop.transfer_id == "t"
    assert isinstance(build(Action(Verb.RELEASE, **BASE), "cli"), r.StandbyReleaseRequested)
    assert isinstance(build(Action(Verb.REQUEUE_FAILED, **BASE), "cli"), r.RequeueFailedRequested)


def test_host_verbs_build_host_requests() -> None:
    """Host on, off and priority become their requests for the host within the destination,
    correlated by the host."""
    on = build(Action(Verb.HOST_ON, host_id="h", **BASE), "cli")
    assert isinstance(on, r.HostActivationRequested)
    off = build(Action(Verb.HOST_OFF, host_id="h", **BASE), "cli")
    assert isinstance(off, r.HostDeactivationRequested)
    assert (off.destination, off.host_id, off.envelope.correlation_id) == ("d", "h", "h")
    prio = build(Action(Verb.HOST_PRIORITY, host_id="h", priority=2, **BASE), "cli")
    assert isinstance(prio, r.HostPriorityChangeRequested)
    assert (prio.host_id, prio.priority) == ("h", 2)


def test_immediate_and_extend_are_carried() -> None:
    """An immediate restart keeps its flag and an extension carries the new expiry."""
    restart = build(Action(Verb.RESTART, immediate=True, **BASE), "cli")
    assert isinstance(restart, r.RestartRequested)
    assert restart.immediate
    later = NOW + timedelta(days=2)
    extend = build(Action(Verb.EXTEND, transfer_id="t", expiry_time=later, **BASE), "cli")
    assert isinstance(extend, r.LifetimeExtensionRequested)
    assert extend.expiry_time == later


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (Action(Verb.PRIORITY, "d", "op", transfer_id="t", priority=100), "from 0 to 99"),
        (Action(Verb.PRIORITY, "d", "op", transfer_id="t"), "from 0 to 99"),
        (Action(Verb.REQUEUE, "d", "op"), "requeue needs a transfer"),
        (Action(Verb.EXTEND, "d", "op", transfer_id="t"), "extend needs a lifetime"),
        (Action(Verb.REQUEUE_FAILED, "d", "op", transfer_id="t"), "not a transfer"),
        (Action(Verb.HOST_ON, "d", "op"), "needs a host"),
        (Action(Verb.HOST_PRIORITY, "d", "op", host_id="h", priority=-1), "from 0"),
        (Action(Verb.HOLD, "", "op"), "hold needs a destination"),
    ],
)
def test_what_cannot_be_asked_is_refused(action: Action, message: str) -> None:
    """A priority outside its range, a transfer verb without a transfer, a destination verb
    given a transfer, a host verb without a host or no destination is refused, saying why."""
    with pytest.raises(Invalid, match=message):
        build(action, "cli")


def test_lifetimes_and_priorities_are_parsed_from_text() -> None:
    """A lifetime becomes now + the duration (absent: None; malformed: refused naming the
    field); a priority is a whole number (absent: None)."""
    assert lifetime_expiry("2d", NOW) == NOW + timedelta(days=2)
    assert lifetime_expiry("PT6H", NOW) == NOW + timedelta(hours=6)
    assert lifetime_expiry("", NOW) is None
    with pytest.raises(Invalid, match="lifetime"):
        lifetime_expiry("soon", NOW)
    assert parse_priority("5") == 5
    assert parse_priority(None) is None
    with pytest.raises(Invalid, match="whole number"):
        parse_priority("high")


@pytest.mark.parametrize(
    ("action", "named"),
    [
        (Action(Verb.PRIORITY, transfer_id="t", priority=10**21, **BASE), "priority"),
        (Action(Verb.PRIORITY, transfer_id="t", priority=True, **BASE), "priority"),
        (Action(Verb.HOST_PRIORITY, host_id="h", priority=2**31, **BASE), "priority"),
        (Action(Verb.HOLD, reason={"a": 1}, **BASE), "reason"),  # type: ignore[arg-type]
        (Action(Verb.HOLD, reason="x" * 5000, **BASE), "reason"),
        (Action(Verb.HOLD, immediate="yes", **BASE), "immediate"),  # type: ignore[arg-type]
        (Action(Verb.HOLD, destination={"d": 1}, actor="op"), "destination"),  # type: ignore[arg-type]
        (Action(Verb.STOP, transfer_id=["t"], **BASE), "transfer_id"),  # type: ignore[arg-type]
        (Action(Verb.HOST_OFF, host_id=7, **BASE), "host_id"),  # type: ignore[arg-type]
    ],
)
def test_fields_of_the_wrong_type_or_range_are_refused_by_name(action: Action, named: str) -> None:
    """Whatever front built it, a field of the wrong type, too long or out of range is refused
    naming that field, before any event exists (no TypeError or OverflowError later)."""
    with pytest.raises(Invalid) as refused:
        build(action, "monitor")
    assert refused.value.field == named


def test_priorities_from_json_or_forms_are_range_checked() -> None:
    """A priority is an int or its digits within 0-99 (a host's: up to an Avro int); a bool,
    a float, an object or 22 digits is refused naming the priority, and a long lifetime does
    not overflow."""
    assert parse_priority(7) == 7
    assert parse_priority(" 42 ") == 42
    assert parse_priority(2**31 - 1, 2**31 - 1) == 2**31 - 1
    for bad in (100, -1, True, 5.0, {"p": 1}, "1" * 22, "-3", 10**21):
        with pytest.raises(Invalid) as refused:
            parse_priority(bad)
        assert refused.value.field == "priority"
    for lifetime in ("99999999999d", ["2d"], {"d": 2}, True):
        with pytest.raises(Invalid) as refused:
            lifetime_expiry(lifetime, NOW)
        assert refused.value.field == "lifetime"
