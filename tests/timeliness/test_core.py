"""Timeliness, pure: products from metadata, predictions from past cycles, lateness classes,
and the watcher's lateness events, as given/when/then over event histories."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from bus.events import Envelope, Event
from bus.events.products import (
    Lateness,
    Measure,
    ProductLate,
    ProductStatus,
    ProductStatusChanged,
    TransferLate,
)
from bus.events.transfers import TransferQueued, TransferSucceeded
from bus.timeliness import (
    MIN_SPREAD,
    History,
    ProductKey,
    base_time,
    classify,
    predict,
    product_of,
    target_seconds,
)
from consumers.timeliness.core import Watcher
from tests.bus.samples import sample

DAY0 = datetime(2026, 12, 1, tzinfo=UTC)
META = {"stream": "oper", "time": "00", "step": "24", "type": "fc"}
PRODUCT = ProductKey("oper", "00", "24", "fc")


def minutes(*values: float) -> list[float]:
    return [v * 60 for v in values]


# --- products and cycles ------------------------------------------------------------------------


def test_a_product_needs_its_four_fields() -> None:
    """stream, time, step and type make a product; a missing one (or a '/') makes none."""
    assert product_of(META) == PRODUCT
    assert product_of({**META, "step": ""}) is None
    assert product_of({k: v for k, v in META.items() if k != "type"}) is None
    assert product_of({**META, "stream": "a/b"}) is None


@pytest.mark.parametrize(
    ("metadata", "seen", "expected"),
    [
        ({"date": "20261203"}, "2026-12-05T10:00", "2026-12-03T00:00"),  # date wins
        ({}, "2026-12-05T10:00", "2026-12-05T00:00"),  # latest 00 before arrival
        ({"time": "12"}, "2026-12-05T10:00", "2026-12-04T12:00"),  # yesterday's 12
        ({"time": "0630"}, "2026-12-05T07:00", "2026-12-05T06:30"),
        ({"time": "oper"}, "2026-12-05T07:00", None),  # not a time of day
    ],
)
def test_the_cycle_of_a_file(metadata: dict[str, str], seen: str, expected: str | None) -> None:
    """A file's cycle is its date at the product's time, else the latest such time before it
    arrived."""
    meta = {**META, **metadata}
    product = product_of(meta)
    assert product is not None
    at = datetime.fromisoformat(seen).replace(tzinfo=UTC)
    found = base_time(product, meta, at)
    assert (found.isoformat()[:16] if found else None) == expected


# --- predictions --------------------------------------------------------------------------------


def test_no_prediction_below_three_cycles() -> None:
    """Two past cycles are not a habit: no prediction."""
    assert predict(minutes(60, 62)) is None


def test_the_prediction_is_the_median_and_ignores_an_outlier() -> None:
    """Given cycles at ~60 min and one at 400 min, the prediction stays ~60 min and the
    outlier does not widen the usual range."""
    p = predict(minutes(58, 60, 61, 62, 400))
    assert p is not None
    assert p.predicted == 61 * 60
    assert p.latest == 62 * 60  # 400 min is an outlier
    assert p.earliest == 58 * 60
    assert p.spread == pytest.approx(1.4826 * 60)  # 1.4826 x MAD (1 min), above the floor
    assert p.spread > MIN_SPREAD


def test_history_keeps_one_offset_per_cycle_the_latest() -> None:
    """Two deliveries of one cycle count once, at the later time (the product is complete
    when its last file is)."""
    h = History(window=3)
    for day in range(5):
        base = DAY0 + timedelta(days=day)
        h.observe("D", PRODUCT, "TRANSFER", base, base + timedelta(minutes=30))
        h.observe("D", PRODUCT, "TRANSFER", base, base + timedelta(minutes=50))
    assert h.offsets("D", PRODUCT, "TRANSFER") == minutes(50, 50, 50)  # window of 3


# --- classes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed_min", "expected"),
    [
        (-30, Lateness.WELL_AHEAD),  # 90 min before the predicted 60
        (55, Lateness.ON_TIME),
        (64, Lateness.ON_TIME),  # within the usual range (latest 64)
        (67, Lateness.SLIGHTLY_LATE),  # range r = 4 min: up to 2r
        (75, Lateness.LATE),  # up to 4r
        (83, Lateness.VERY_LATE),  # up to 6r
        (90, Lateness.CRITICAL),
    ],
)
def test_lateness_scale(observed_min: float, expected: Lateness) -> None:
    """Given past cycles 56-64 min (predicted 60, latest 64: range 4 min, raised to the
    1 min floor if smaller), an observation is classed on OpenECPDS's scale."""
    p = predict(minutes(56, 58, 60, 60, 62, 64))
    assert p is not None
    assert p.predicted == 3600
    assert p.latest == 64 * 60
    assert classify(observed_min * 60, p) is expected


def test_no_history_and_no_target_is_no_data() -> None:
    """Without history or target nothing can be said."""
    assert classify(3600, None) is Lateness.NO_DATA


def test_a_target_alone_classes_a_transfer() -> None:
    """With no history, a 2 h target: before it on time, past it late, far past critical."""
    target = 7200.0
    assert classify(7000, None, target=target) is Lateness.ON_TIME
    assert classify(7300, None, target=target) is Lateness.LATE
    assert classify(7200 * 4, None, target=target) is Lateness.CRITICAL


def test_past_the_target_is_late_even_when_history_says_on_time() -> None:
    """A destination whose files always come at 3 h but promised 2 h: late, not on time."""
    p = predict(minutes(180, 180, 181, 179))
    assert classify(180 * 60, p) is Lateness.ON_TIME
    assert classify(180 * 60, p, target=7200) is Lateness.LATE


def test_nothing_yet_is_no_data_until_the_prediction_passes() -> None:
    """An absent file is no data before its prediction, then classed by how late now is."""
    p = predict(minutes(60, 60, 61, 59))
    assert classify(None, p, now=30 * 60) is Lateness.NO_DATA
    assert classify(None, p, now=120 * 60) is Lateness.CRITICAL


def test_a_target_is_read_from_the_destination_property() -> None:
    """monitor.target is a duration after the base time; an unreadable one is no target."""
    assert target_seconds({"monitor.target": "2h"}) == 7200
    assert target_seconds({"monitor.target": "PT90M"}) == 5400
    assert target_seconds({"monitor.target": "soon"}) is None
    assert target_seconds({}) is None


# --- the watcher, over event histories ----------------------------------------------------------


def queued(day: int, after: timedelta, tid: str = "", destination: str = "D") -> TransferQueued:
    """The queueing of day ``day``'s file, ``after`` its base time."""
    at = DAY0 + timedelta(days=day) + after
    tid = tid or f"f{day}-{destination}"
    return sample(
        TransferQueued,
        envelope=Envelope(
            event_id=f"q-{tid}", occurred_at=at, source="scheduler", correlation_id=tid
        ),
        transfer_id=tid,
        destination=destination,
        metadata={**META, "date": (DAY0 + timedelta(days=day)).strftime("%Y%m%d")},
    )


def succeeded(day: int, after: timedelta, tid: str = "", destination: str = "D") -> Event:
    """The delivery of day ``day``'s file, ``after`` its base time."""
    at = DAY0 + timedelta(days=day) + after
    tid = tid or f"f{day}-{destination}"
    return sample(
        TransferSucceeded,
        envelope=Envelope(event_id=f"s-{tid}", occurred_at=at, source="mover", correlation_id=tid),
        transfer_id=tid,
        destination=destination,
    )


def given(
    days: int, arrive: timedelta, deliver: timedelta, targets: Mapping[str, float | None]
) -> Watcher:
    """A watcher that saw ``days`` regular cycles (arrival and delivery after the base)."""
    w = Watcher()
    for day in range(days):
        assert w.evolve(queued(day, arrive), targets) == []
        assert w.evolve(succeeded(day, deliver), targets) == []
    return w


HOUR = timedelta(hours=1)


def test_a_regular_product_raises_nothing() -> None:
    """Given ten cycles arriving at 1 h and delivered at 1.5 h, the eleventh alike raises
    nothing."""
    w = given(10, HOUR, 1.5 * HOUR, {})
    assert w.evolve(queued(10, HOUR), {}) == []
    assert w.evolve(succeeded(10, 1.5 * HOUR), {}) == []


def test_a_late_delivery_is_a_transfer_late() -> None:
    """Given ten regular cycles, when the eleventh is delivered 3 h late, then one
    TransferLate (TRANSFER, critical) names the transfer, its cycle and the prediction."""
    w = given(10, HOUR, 1.5 * HOUR, {})
    assert w.evolve(queued(10, HOUR), {}) == []
    out = w.evolve(succeeded(10, 4.5 * HOUR), {})
    assert len(out) == 1
    late = out[0]
    assert isinstance(late, TransferLate)
    assert late.measure is Measure.TRANSFER
    assert late.lateness is Lateness.CRITICAL
    assert late.transfer_id == "f10-D"
    assert late.base_time == DAY0 + timedelta(days=10)
    assert late.predicted_at == DAY0 + timedelta(days=10) + 1.5 * HOUR
    assert late.late_by_ms == 3 * 3600 * 1000
    assert late.envelope.causation_id == "s-f10-D"


def test_a_late_arrival_is_reported_once() -> None:
    """A cycle arriving late is reported at its first file; a second late file of the same
    cycle and class is not reported again."""
    w = given(10, HOUR, 1.5 * HOUR, {})
    first = w.evolve(queued(10, 5 * HOUR, tid="a-D"), {})
    assert [type(e) for e in first] == [TransferLate]
    assert first[0].measure is Measure.ARRIVAL  # type: ignore[attr-defined]
    assert w.evolve(queued(10, 5 * HOUR, tid="b-D"), {}) == []


def test_a_missing_cycle_is_late_by_absence() -> None:
    """Given ten regular cycles, when the next day's arrival time passes with nothing seen,
    then due(now) reports the missing arrival (no transfer, nothing observed), once."""
    w = given(10, HOUR, 1.5 * HOUR, {})
    early = DAY0 + timedelta(days=10, minutes=30)
    assert w.due(early, {}) == []
    now = DAY0 + timedelta(days=10, hours=4)
    found = [e for e in w.due(now, {}) if isinstance(e, TransferLate)]
    arrival = [e for e in found if e.measure is Measure.ARRIVAL]
    assert len(arrival) == 1
    assert arrival[0].transfer_id is None
    assert arrival[0].observed_at is None
    assert arrival[0].lateness is Lateness.CRITICAL
    assert w.due(now, {}) == []  # reported once


def test_the_destination_target_makes_an_on_time_habit_late() -> None:
    """Given a destination that always delivers at 3 h with a 2 h target, a delivery at 3 h
    is late."""
    targets = {"D": 7200.0}
    w = Watcher()
    for day in range(10):
        w.evolve(queued(day, HOUR), {})
        w.evolve(succeeded(day, 3 * HOUR), {})
    w.evolve(queued(10, HOUR), targets)
    out = w.evolve(succeeded(10, 3 * HOUR), targets)
    assert [e.lateness for e in out] == [Lateness.LATE]  # type: ignore[attr-defined]
    assert out[0].target_at == DAY0 + timedelta(days=10, hours=2)  # type: ignore[attr-defined]


def test_a_late_completion_is_a_product_late() -> None:
    """Given products completed at 5 h for ten days, a completion at 9 h is a ProductLate."""
    w = Watcher()

    def completed(day: int, after: timedelta) -> ProductStatusChanged:
        at = DAY0 + timedelta(days=day) + after
        return sample(
            ProductStatusChanged,
            stream="oper",
            time="00",
            step="24",
            type="fc",
            status=ProductStatus.COMPLETED,
            at=at,
        )

    for day in range(10):
        assert w.evolve(completed(day, 5 * HOUR), {}) == []
    out = w.evolve(completed(10, 9 * HOUR), {})
    assert [type(e) for e in out] == [ProductLate]
    assert out[0].lateness is Lateness.CRITICAL  # type: ignore[attr-defined]
