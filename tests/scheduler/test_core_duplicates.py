"""Duplicate holding (``scheduler.requeueon``), given/when/then on the pure core: of the
transfers of one destination with the same target, the one the rule prefers is sent and the
others are put on HOLD "Duplicate file found"; ties go to the one already processed, then to
the one queued last."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bus.events.requests import StandbyReleaseRequested
from bus.events.transfers import TransferHeld, TransferQueued
from bus.templates.lexer import TemplateError
from bus.templates.requeueon import compile_rule
from tests.scheduler.factories import (
    T0,
    Scheduler,
    at,
    configured,
    destination,
    of,
    ordered,
    ordered_ids,
    queued,
    request,
    succeeded,
)

NEWER_WINS = {"scheduler.requeueon": "$time1 > $time2"}


def same(tid: str, target: str = "out/a.grib", **kw: object) -> TransferQueued:
    """A queued transfer of ``target`` (the factory names targets after transfer ids)."""
    return replace(queued(tid, **kw), target=target)  # type: ignore[arg-type]


def test_the_newer_of_two_waiting_duplicates_is_sent_the_older_held() -> None:
    """Given t1 then t2 for the same target and "newer wins", when the scheduler orders, then
    t2 is sent and t1 is held with the reason naming t2."""
    s = Scheduler(
        configured(destination(properties=NEWER_WINS)),
        same("t1", queue_time=T0),
        same("t2", queue_time=at(seconds=1)),
    )
    out = s.settle(at(seconds=2))
    assert ordered_ids(out) == ["t2"]
    (held,) = of(out, TransferHeld)
    assert held.transfer_id == "t1"
    assert held.reason.startswith("Duplicate file found: transfer t2")
    assert s.entry("t1").status == "HOLD"


def test_without_a_rule_duplicates_are_all_sent() -> None:
    """Given no requeueon rule, two transfers of one target are both ordered."""
    s = Scheduler(configured(), same("t1"), same("t2", queue_time=at(seconds=1)))
    assert sorted(ordered_ids(s.settle(at(seconds=2)))) == ["t1", "t2"]


def test_pattern_and_ignore_choose_the_targets_the_rule_applies_to() -> None:
    """Targets outside requeuepattern, or matching requeueignore, are not weighed."""
    props = {
        **NEWER_WINS,
        "scheduler.requeuepattern": r"\.grib$",
        "scheduler.requeueignore": "^tmp/",
    }
    s = Scheduler(
        configured(destination(max_connections=10, properties=props)),
        same("a1", "out/a.bufr"),
        same("a2", "out/a.bufr", queue_time=at(seconds=1)),
        same("b1", "tmp/b.grib"),
        same("b2", "tmp/b.grib", queue_time=at(seconds=1)),
        same("c1", "out/c.grib"),
        same("c2", "out/c.grib", queue_time=at(seconds=1)),
    )
    out = s.settle(at(seconds=2))
    assert sorted(ordered_ids(out)) == ["a1", "a2", "b1", "b2", "c2"]
    assert [h.transfer_id for h in of(out, TransferHeld)] == ["c1"]


def test_a_duplicate_of_a_delivered_file_is_held_on_a_tie() -> None:
    """Given t1 delivered and a rule that prefers neither of two same-size files, when t2 of
    the same target comes, then it is held: the one already processed wins a tie."""
    bigger = {"scheduler.requeueon": "$size1 > $size2"}
    s = Scheduler(configured(destination(properties=bigger)), same("t1"))
    (order,) = ordered(s.settle(T0))
    s.given(succeeded(order, at(seconds=1)))
    s.given(same("t2", queue_time=at(seconds=2)))
    out = s.settle(at(seconds=3))
    assert ordered(out) == []
    (held,) = of(out, TransferHeld)
    assert held.transfer_id == "t2"
    assert "t1 (DONE)" in held.reason


def test_a_bigger_file_replaces_a_delivered_one() -> None:
    """Given t1 delivered and "bigger wins", when a bigger t2 of the same target comes, then
    it is sent."""
    bigger = {"scheduler.requeueon": "$size1 > $size2"}
    s = Scheduler(configured(destination(properties=bigger)), same("t1"))
    (order,) = ordered(s.settle(T0))
    s.given(succeeded(order, at(seconds=1)))
    s.given(replace(same("t2", queue_time=at(seconds=2)), size=99))
    assert ordered_ids(s.settle(at(seconds=3))) == ["t2"]


def test_a_released_duplicate_is_weighed_again() -> None:
    """A held duplicate released by an operator is held again while the other one wins."""
    s = Scheduler(
        configured(destination(properties=NEWER_WINS)),
        same("t1"),
        same("t2", queue_time=at(seconds=1)),
    )
    s.settle(at(seconds=2))
    s.given(request(StandbyReleaseRequested, at(seconds=3), transfer_id="t1"))
    out = s.settle(at(seconds=3))
    assert [h.transfer_id for h in of(out, TransferHeld)] == ["t1"]
    assert ordered(out) == []


def test_a_rule_configured_after_the_transfers_sees_them() -> None:
    """The target index is built from the known transfers when a rule is configured later."""
    s = Scheduler(same("t1"), same("t2", queue_time=at(seconds=1)))
    s.given(*configured(destination(properties=NEWER_WINS)))
    assert ordered_ids(s.settle(at(seconds=2))) == ["t2"]


def test_rule_language() -> None:
    """Comparisons, arithmetic, &&, ||, ! and text work on the two files' values."""
    values = {"time1": 2000, "time2": 1000, "size1": 5, "size2": 5, "destination": "d",
              "target": "out/x.grib"}  # fmt: skip
    assert compile_rule("$time1 > $time2").holds(values)
    assert compile_rule("$time1 - $time2 >= 1000 && $size1 === $size2").holds(values)
    assert not compile_rule("!($size1 == $size2) || $target != 'out/x.grib'").holds(values)
    assert compile_rule("$target == \"out/\" + 'x.grib'").holds(values)
    assert not compile_rule("$size1 / 0 > 1").holds(values)  # no exception: it does not hold


@pytest.mark.parametrize(
    ("source", "column", "detail"),
    [
        ("$time1 > ", 10, "ends too early"),
        ("$time3 > $time2", 1, "unknown variable $time3"),
        ("$time1 >> $time2", 9, "unexpected '>'"),
        ("($size1 > 1", 12, "')' is missing"),
        ("", 1, "empty rule"),
        ("$size1 > 1; x", 11, "unexpected ';'"),
    ],
)
def test_bad_rules_are_refused_with_the_column(source: str, column: int, detail: str) -> None:
    """A rule that does not parse is refused, naming the field and the column."""
    with pytest.raises(TemplateError) as caught:
        compile_rule(source)
    assert caught.value.column == column
    assert detail in caught.value.detail
    assert "scheduler.requeueon" in str(caught.value)
