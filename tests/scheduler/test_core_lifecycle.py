"""The transfer status table, and the core refusing moves the table refuses."""

from __future__ import annotations

import pytest

from bus.events.base import TransferStatus as S
from consumers.scheduler import outputs
from consumers.scheduler.lifecycle import TABLE, check
from tests.scheduler.factories import T0, Scheduler, configured, ordered, queued, succeeded


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.INIT, S.WAIT),
        (S.INIT, S.HOLD),
        (S.SCHE, S.FETC),
        (S.FETC, S.WAIT),
        (S.HOLD, S.WAIT),
        (S.HOLD, S.DONE),
        (S.WAIT, S.EXEC),
        (S.EXEC, S.DONE),
        (S.EXEC, S.RETR),
        (S.EXEC, S.INTR),
        (S.RETR, S.EXEC),
        (S.RETR, S.WAIT),
        (S.INTR, S.RETR),
        (S.DONE, S.RETR),
        (S.FAIL, S.RETR),
        (S.STOP, S.RETR),
    ],
)
def test_documented_moves_are_allowed(source: S, target: S) -> None:
    """The OpenECPDS lifecycle moves (push, fetch, dissemination, retry, requeue) are allowed."""
    assert check(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.DONE, S.EXEC),
        (S.DONE, S.FAIL),
        (S.FAIL, S.EXEC),
        (S.STOP, S.EXEC),
        (S.WAIT, S.DONE),
        (S.INIT, S.EXEC),
        (S.HOLD, S.EXEC),
        (S.INTR, S.EXEC),
        (S.EXEC, S.WAIT),
    ],
)
def test_other_moves_are_refused(source: S, target: S) -> None:
    """Moves outside the lifecycle (e.g. a finished transfer running again) are refused."""
    assert not check(source, target)


def test_every_status_has_a_row() -> None:
    """The table says, for every status, what may follow it."""
    assert set(TABLE) == set(S)


def test_core_ignores_a_move_the_table_refuses() -> None:
    """A release decided on a delivered transfer (DONE -> WAIT) leaves it DONE."""
    s = Scheduler(configured(), queued("t1"))
    (order,) = ordered(s.settle(T0))
    s.given(succeeded(order, T0))
    s.given(outputs.released("test", T0, s.entry("t1"), "admin", "request-1"))
    assert s.entry("t1").status is S.DONE
