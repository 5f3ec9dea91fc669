"""Given/when/then: a reissued attempt asks its mover to look at the destination first
(``check_since``), from the first attempt since the transfer was queued or last delivered."""

from __future__ import annotations

from bus.events.requests import RequeueRequested
from tests.scheduler.factories import (
    T0,
    Scheduler,
    at,
    configured,
    destination,
    failed,
    host,
    interrupted,
    ordered,
    queued,
    request,
    succeeded,
)


def test_a_first_attempt_sends_without_looking() -> None:
    """The first order of a transfer has no earlier attempt to find: no check."""
    s = Scheduler(configured(), queued("t1"))
    (first,) = ordered(s.settle(T0))
    assert first.check_since is None


def test_every_reissue_looks_since_the_first_unsettled_attempt() -> None:
    """After an interruption and then a failure, attempts 2 and 3 both look for a file written
    since attempt 1 was ordered (its outcome was never known)."""
    s = Scheduler(configured(destination(), host("h1", retry_frequency_ms=0)), queued("t1"))
    (first,) = ordered(s.settle(T0))
    s.given(interrupted(first, at(1)))
    (second,) = ordered(s.settle(at(1)))
    assert (second.attempt, second.check_since) == (2, first.envelope.occurred_at)
    s.given(failed(second, at(2)))
    (third,) = ordered(s.settle(at(3)))
    assert (third.attempt, third.check_since) == (3, first.envelope.occurred_at)


def test_a_requeue_after_delivery_sends_again_without_looking() -> None:
    """An operator's requeue of a DONE transfer is a deliberate resend: no check."""
    s = Scheduler(configured(), queued("t1"))
    (first,) = ordered(s.settle(T0))
    s.given(succeeded(first, at(1)))
    s.given(request(RequeueRequested, at(2), transfer_id="t1"))
    (again,) = ordered(s.settle(at(2)))
    assert (again.attempt, again.check_since) == (2, None)
