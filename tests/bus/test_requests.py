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
