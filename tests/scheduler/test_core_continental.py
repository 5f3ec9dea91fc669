"""Given/when/then: continental movers. A destination of a regional transfer group is ordered to
its group once its object is staged in the group's replica; a transfer that failed
``fallback_after`` attempts in a row there, or finds none of the group's movers alive, or no
staged copy in time, is ordered to the fallback (central) group, announced by a
``TransferFellBack``; a transfer that fell back stays there."""

from __future__ import annotations

from datetime import datetime, timedelta

from bus.events.base import Event
from bus.events.config import TransferGroup
from bus.events.config_changes import TransferGroupDefined
from bus.events.movers import MoverHeartbeat, MoverStopped
from bus.events.transfers import DataFileStaged, Fault, TransferFellBack
from consumers.scheduler.decisions import next_due
from tests.scheduler.factories import (
    T0,
    Scheduler,
    at,
    configured,
    destination,
    env,
    fail_running,
    host,
    of,
    ordered,
    queued,
    succeeded,
)

REGION = TransferGroup(
    name="tg", replica_store="asia-store", fallback_group="central", fallback_after=2
)
RETRY_MS = 1_000  # the destination's retry frequency: the staging wait is 2 x 1 s


def groups(region: TransferGroup = REGION) -> list[TransferGroupDefined]:
    return [
        TransferGroupDefined(envelope=env(), transfer_group=TransferGroup(name="central")),
        TransferGroupDefined(envelope=env(), transfer_group=region),
    ]


def staged(tid: str, when: datetime = T0, store: str = "asia-store") -> DataFileStaged:
    return DataFileStaged(
        envelope=env(when),
        data_file_id=f"df-{tid}",
        destination="dest",
        transfer_group="tg",
        store=store,
        from_store="",
        size=10,
        duration_ms=3,
    )


def beat(mover: str, when: datetime, group: str) -> MoverHeartbeat:
    return MoverHeartbeat(
        envelope=env(when), mover_id=mover, transfer_group=group, capacity=4, running=0,
        started_at=T0,
    )  # fmt: skip


def regional(*events: Event, region: TransferGroup = REGION) -> Scheduler:
    """A destination of the regional group ``tg`` (one host that never holds it), t1 queued."""
    dest = destination(max_start=0, retry_count=-1, retry_frequency_ms=RETRY_MS)
    return Scheduler(
        groups(region), configured(dest, host("h1", retry_count=0)), queued("t1"), *events
    )


def test_a_staged_regional_transfer_is_ordered_to_its_region() -> None:
    """Given t1's object staged in the region's replica, then t1 is ordered to the regional
    group, with no fallback."""
    s = regional(staged("t1"))
    out = s.settle(T0)
    (order,) = ordered(out)
    assert order.transfer_group == "tg"
    assert of(out, TransferFellBack) == []


def test_a_regional_transfer_waits_for_its_staged_copy() -> None:
    """Given t1 not staged yet, nothing is ordered; the staged copy arriving orders it to the
    region at once."""
    s = regional()
    assert ordered(s.settle(T0)) == []
    s.given(staged("t1", at(ms=500)))
    (order,) = ordered(s.settle(at(ms=500)))
    assert order.transfer_group == "tg"


def test_no_staged_copy_in_time_falls_back_to_the_central_group() -> None:
    """Given t1 never staged, when fallback_after x the retry frequency has passed since its
    queue time, then t1 is ordered to the central group, with the reason recorded."""
    s = regional()
    assert ordered(s.settle(at(ms=1_999))) == []
    out = s.settle(at(seconds=2))
    (fell,) = of(out, TransferFellBack)
    (order,) = ordered(out)
    assert (fell.from_group, fell.to_group, fell.attempt) == ("tg", "central", 1)
    assert "not staged in asia-store" in fell.reason
    assert order.transfer_group == "central"


def test_the_staging_wait_leaves_a_timer() -> None:
    """A transfer waiting for its staged copy makes the destination due when its wait ends, so
    the fallback happens without any new event."""
    s = regional()
    s.settle(T0)
    assert next_due(s.state, at(ms=10)) == T0 + timedelta(seconds=2)


def test_n_failures_on_the_region_send_the_next_attempt_to_the_central_group() -> None:
    """Given fallback_after = 2, when t1 fails twice on the regional group (the host's fault or
    a transient one), then its third attempt goes to the central group, announced once; when
    that fails too, it stays on the central group."""
    s = regional(staged("t1"))
    (first,) = ordered(s.settle(T0))
    out = fail_running(s, at(seconds=1), fault=Fault.TRANSIENT, error="NotStaged")
    (second,) = ordered(s.settle(at(seconds=2)))
    assert (first.transfer_group, second.transfer_group) == ("tg", "tg")
    assert of(out, TransferFellBack) == []
    fail_running(s, at(seconds=3), fault=Fault.HOST, error="ConnectionLost")
    out = s.settle(at(seconds=5))
    (fell,) = of(out, TransferFellBack)
    (third,) = ordered(out)
    assert (fell.failures, fell.attempt, third.attempt) == (2, 3, 3)
    assert "2 failed attempt(s) on transfer group tg" in fell.reason
    assert third.transfer_group == "central"
    fail_running(s, at(seconds=6), fault=Fault.TRANSIENT)
    out = s.settle(at(seconds=8))
    assert [o.transfer_group for o in ordered(out)] == ["central"]
    assert of(out, TransferFellBack) == []


def test_failures_below_the_threshold_then_success_stay_on_the_region() -> None:
    """One failure (fallback_after = 2) then a success: every attempt ran on the region, and
    the next transfer starts on the region with a clean count."""
    s = regional(staged("t1"), staged("t2"))
    s.settle(T0)
    fail_running(s, at(seconds=1), fault=Fault.TRANSIENT)
    (second,) = ordered(s.settle(at(seconds=2)))
    s.given(succeeded(second, at(seconds=3)))
    s.given(queued("t2", when=at(seconds=4)))
    out = s.settle(at(seconds=4))
    assert [o.transfer_group for o in ordered(out)] == ["tg"]
    assert s.entry("t2").group_failures == 0
    assert of(s.log, TransferFellBack) == []


def test_no_live_mover_in_the_region_falls_back_at_once() -> None:
    """Given the region's only mover stopped and a central mover alive, t1 is ordered to the
    central group at once ("No Transfer Server available"), not after N failures."""
    s = regional(staged("t1"))
    s.given(beat("asia-1", T0, "tg"), beat("eu-1", T0, "central"))
    s.given(MoverStopped(envelope=env(at(ms=1)), mover_id="asia-1", transfer_group="tg"))
    out = s.settle(at(ms=2))
    (fell,) = of(out, TransferFellBack)
    (order,) = ordered(out)
    assert "No Transfer Server available in transfer group tg" in fell.reason
    assert order.transfer_group == "central"


def test_a_group_without_fallback_orders_to_the_region_after_the_staging_wait() -> None:
    """A regional group with a replica but no fallback: after the staging wait the transfer is
    ordered to the region anyway (its mover then reports NotStaged and it is retried)."""
    region = TransferGroup(name="tg", replica_store="asia-store", fallback_after=2)
    s = regional(region=region)
    assert ordered(s.settle(T0)) == []
    (order,) = ordered(s.settle(at(seconds=2)))
    assert order.transfer_group == "tg"


def test_a_plain_group_is_unchanged() -> None:
    """A destination of a group that is not regional is ordered to it as before, staged or not."""
    s = Scheduler(configured(), queued("t1"))
    (order,) = ordered(s.settle(T0))
    assert order.transfer_group == "tg"
