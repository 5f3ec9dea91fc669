"""Given/when/then: which temporary files movers recorded the janitor removes, and when."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bus.events import Event
from bus.events.transfers import TransferFailed, TransferStarted
from consumers.janitor import temporaries
from consumers.janitor.temporaries import GIVE_UP, SETTLE, Leftover, Temporaries
from tests.janitor.factories import T0, env, scheduled, started, stopped, succeeded

TID = "f1-site-a"


def _started(attempt: int, at_s: float = 0) -> TransferStarted:
    return replace(
        started("f1", attempt=attempt),
        envelope=env("f1", T0 + timedelta(seconds=at_s)),
        temporary_path=f"/in/.f1.dat.0a1b2c3d.{attempt}.tmp",
    )


def _failed(attempt: int) -> TransferFailed:
    return TransferFailed(
        envelope=env("f1"), transfer_id=TID, destination="site-a", attempt=attempt,
        host_id="h2", mover_id="m1", error_class="ConnectionLost", message="reset",
        retriable=True, temporary_path=f"/in/.f1.dat.0a1b2c3d.{attempt}.tmp",
    )  # fmt: skip


def given(*events: Event) -> Temporaries:
    state = Temporaries()
    for event in events:
        temporaries.evolve(state, event)
    return state


def at(event: Event, seconds: float) -> Event:
    return replace(event, envelope=env("f1", T0 + timedelta(seconds=seconds)))


def test_a_crashed_attempts_name_is_removed_once_the_transfer_is_delivered() -> None:
    """Attempt 1 started and never ended, attempt 2 delivered: attempt 1's name is due after
    the settle time, attempt 2's (renamed) never is."""
    state = given(
        _started(1), scheduled("f1", attempt=2), _started(2), at(succeeded("f1", attempt=2), 10)
    )
    assert temporaries.due(state, T0 + timedelta(seconds=10)) == []
    (due,) = temporaries.due(state, T0 + timedelta(seconds=10) + SETTLE)
    assert due == Leftover(TID, 1, "h1", "/in/.f1.dat.0a1b2c3d.1.tmp")
    temporaries.removed(state, due)
    assert state.names == {}
    assert state.finished_at == {}


def test_nothing_is_due_while_the_transfer_may_still_be_sent() -> None:
    """A transfer still retrying keeps its names: an attempt may still be writing them."""
    state = given(_started(1), _failed(1), scheduled("f1", attempt=2))
    assert temporaries.due(state, T0 + timedelta(days=2)) == []


def test_a_failed_attempts_name_is_removed_on_its_own_host_when_stopped() -> None:
    """A failure that cut the connection may have left its name on that host (h2): once the
    transfer is stopped, it is due there."""
    state = given(_failed(3), at(stopped("f1"), 5))
    assert [(d.host_id, d.attempt) for d in temporaries.due(state, T0 + timedelta(minutes=1))] == [
        ("h2", 3)
    ]


def test_a_delivery_without_leftovers_keeps_nothing() -> None:
    """A started-then-succeeded attempt leaves no entry behind (the state stays bounded)."""
    state = given(_started(1), succeeded("f1"))
    assert (state.names, state.finished_at) == ({}, {})


def test_names_are_given_up_a_day_after_the_transfer_finished() -> None:
    """A host that never answers does not keep a name forever."""
    state = given(_started(1), at(stopped("f1"), 0))
    assert temporaries.expired(state, T0 + timedelta(hours=1)) == []
    (dropped,) = temporaries.expired(state, T0 + GIVE_UP)
    assert dropped.attempt == 1
    assert temporaries.due(state, T0 + GIVE_UP) == []


def test_a_permanently_refused_attempt_left_nothing() -> None:
    """An attempt refused for good (authentication, permission) wrote nothing, or removed
    it over a sound connection: its name is not swept."""
    state = given(_started(1), replace(_failed(1), retriable=False), at(stopped("f1"), 5))
    assert temporaries.due(state, T0 + timedelta(minutes=1)) == []
    assert (state.names, state.finished_at) == ({}, {})
