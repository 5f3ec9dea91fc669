"""Seeded random histories: whatever happens, decisions settle, limits hold, every transfer
ends somewhere, and replaying the log rebuilds the same state."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import pytest

from bus.events.base import Event, TransferStatus
from bus.events.movers import MoverStopped
from bus.events.requests import (
    HoldRequested,
    HostActivationRequested,
    HostDeactivationRequested,
    PriorityChangeRequested,
    RequeueFailedRequested,
    RestartRequested,
    StandbyReleaseRequested,
    StopRequested,
)
from bus.events.transfers import TransferQueued, TransferSucceeded, Verification
from consumers.scheduler.core import SchedulerState, evolve
from consumers.scheduler.lifecycle import FINISHED
from tests.scheduler.factories import (
    SETTINGS,
    T0,
    Scheduler,
    configured,
    destination,
    env,
    fail_running,
    host,
    ordered,
    queued,
    request,
    started,
)

DESTS = ("d1", "d2", "d3")


def _success(s: Scheduler, tid: str, when: datetime) -> Event:
    e = s.entry(tid)
    return TransferSucceeded(
        envelope=env(when),
        transfer_id=tid,
        destination=e.destination,
        attempt=e.attempt,
        host_id=e.host_id or "",
        mover_id="m1",
        remote_path=e.target,
        bytes_sent=e.size,
        duration_ms=1,
        bytes_per_second=1.0,
        verification=Verification.SIZE,
    )


def _random_request(rng: random.Random, s: Scheduler, when: datetime) -> Event:
    dest = rng.choice(DESTS)
    tids: list[str | None] = [t for t, e in s.state.transfers.items() if e.destination == dest]
    tids = tids or [None]
    tid = rng.choice(tids)
    kind = rng.randrange(8)
    if kind == 0:
        return request(HoldRequested, when, destination=dest, immediate=rng.random() < 0.5)
    if kind == 1:
        return request(
            RestartRequested, when, destination=dest, transfer_id=rng.choice([None, tid])
        )
    if kind == 2:
        return request(StopRequested, when, destination=dest, transfer_id=tid)
    if kind == 3:
        return request(RequeueFailedRequested, when, destination=dest)
    if kind == 4:
        return request(StandbyReleaseRequested, when, destination=dest)
    if kind == 5 and tid is not None:
        return request(
            PriorityChangeRequested,
            when,
            destination=dest,
            transfer_id=tid,
            priority=rng.randrange(100),
        )
    if kind == 6:
        return request(HostDeactivationRequested, when, destination=dest, host_id=f"{dest}-h1")
    return request(HostActivationRequested, when, destination=dest, host_id=f"{dest}-h1")


def _check_invariants(s: Scheduler) -> None:
    for name, rt in s.state.destinations.items():
        assert rt.config is not None
        running = [e for e in s.state.transfers.values() if e.destination == name and e.running]
        assert {e.transfer_id for e in running} == rt.running
        assert len(running) <= rt.config.max_connections
        per_host: dict[str, int] = {}
        for e in running:
            per_host[e.host_id or ""] = per_host.get(e.host_id or "", 0) + 1
        assert per_host == {h: n for h, n in rt.by_host.items() if n}
        assert all(n <= 2 for n in per_host.values())  # each host allows 2


def random_world(properties: Callable[[str], Mapping[str, str]] = lambda _: {}) -> Scheduler:
    """The scheduler random histories run on: ``DESTS``, each with two hosts and limits low
    enough to be met (``properties`` of each destination by name)."""
    s = Scheduler()
    for d in DESTS:
        dest = destination(
            d,
            max_connections=3,
            max_start=2,
            max_requeue=3,
            retry_count=2,
            start_frequency_ms=5000,
            retry_frequency_ms=2000,
            properties=properties(d),
        )
        s.given(
            configured(
                dest,
                host(f"{d}-h1", max_connections=2, retry_frequency_ms=1000),
                host(f"{d}-h2", max_connections=2, retry_frequency_ms=1000),
            )
        )
    return s


def random_queued(rng: random.Random, i: int, now: datetime) -> TransferQueued:
    """Transfer ``t<i>`` to a random destination: random priority, embargo, lifetime, held
    one time in ten."""
    status = TransferStatus.HOLD if rng.random() < 0.1 else TransferStatus.WAIT
    return queued(
        f"t{i}",
        rng.choice(DESTS),
        priority=rng.randrange(100),
        queue_time=now + timedelta(seconds=rng.choice((0, 0, 5))),
        expiry=now + timedelta(seconds=rng.choice((20, 300))),
        status=status,
        when=now,
    )


def random_outcome(
    rng: random.Random, s: Scheduler, now: datetime, roll: float, below: tuple[float, float, float]
) -> None:
    """Give ``s`` what ``roll`` draws: a running transfer's success (``roll`` below
    ``below[0]``), a failure (below ``below[1]``), a mover lost (below ``below[2]``), else an
    operator request."""
    if roll < below[0]:
        running = sorted(t for t, e in s.state.transfers.items() if e.running)
        if running:
            s.given(_success(s, rng.choice(running), now))
    elif roll < below[1]:
        fail_running(s, now, retriable=rng.random() < 0.8)
    elif roll < below[2]:
        s.given(MoverStopped(envelope=env(now), mover_id="m1", transfer_group="tg"))
    else:
        s.given(_random_request(rng, s, now))


def start_ordered(rng: random.Random, s: Scheduler, now: datetime) -> None:
    """Settle ``s`` and start what it orders, each on a random mover."""
    for order in ordered(s.settle(now, limit=40)):
        s.given(started(order, now, mover=rng.choice(("m1", "m2"))))


@pytest.mark.parametrize("seed", range(12))
def test_random_history_settles_and_keeps_the_limits(seed: int) -> None:
    """Random queues, outcomes, mover losses and requests always settle within the limits."""
    rng = random.Random(seed)
    s = random_world()
    now = T0
    for i in range(60):
        now = now + timedelta(seconds=rng.choice((0, 1, 3, 10)))
        roll = rng.random()
        if roll < 0.3:
            s.given(random_queued(rng, i, now))
        else:
            random_outcome(rng, s, now, roll, (0.55, 0.7, 0.75))
        start_ordered(rng, s, now)
        _check_invariants(s)
    # in the end, nothing is lost: every transfer is finished, held, queued or running
    for e in s.state.transfers.values():
        assert e.status in FINISHED | {
            TransferStatus.HOLD,
            TransferStatus.WAIT,
            TransferStatus.RETR,
            TransferStatus.EXEC,
        }
    replayed = SchedulerState()
    for ev in s.log:
        evolve(replayed, ev)
    # a replay brings back what decide purged (finished, past expiry + purge delay): no more
    purged = set(replayed.transfers) - set(s.state.transfers)
    assert all(
        replayed.transfers[t].status in FINISHED
        and replayed.transfers[t].expiry_time + SETTINGS.purge_after <= now
        for t in purged
    )
    assert {t: e for t, e in replayed.transfers.items() if t not in purged} == s.state.transfers
