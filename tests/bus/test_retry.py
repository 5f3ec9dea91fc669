"""The one retry policy: doubling capped delays, only for retriable failures, bounded or not."""

from __future__ import annotations

from bus.retry import RetryPolicy


def test_delays_double_until_capped() -> None:
    """Failed attempts 1, 2, 3, 4 wait 1, 2, 3, 3 seconds under a 3-second cap."""
    policy = RetryPolicy(initial=1.0, maximum=3.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 3.0]


def test_a_bounded_policy_stops_after_max_attempts_and_never_retries_a_permanent_failure() -> None:
    """With max_attempts=3 the third failed attempt is the last; a permanent one is not retried."""
    policy = RetryPolicy(initial=1.0, maximum=3.0, max_attempts=3)
    assert policy.retry(1, retriable=True)
    assert policy.retry(2, retriable=True)
    assert not policy.retry(3, retriable=True)
    assert not policy.retry(1, retriable=False)


def test_an_unbounded_policy_retries_for_as_long_as_it_takes() -> None:
    """Without max_attempts a retriable failure is tried again after any number of attempts,
    and the delay stays finite at the cap."""
    policy = RetryPolicy(initial=0.5, maximum=30.0)
    assert policy.retry(10_000, retriable=True)
    assert not policy.retry(10_000, retriable=False)
    assert policy.delay(10_000) == 30.0
