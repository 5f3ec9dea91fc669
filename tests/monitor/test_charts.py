"""The charts' data, pure: ranges cut into fixed buckets ending at now, rows aligned on one
time axis, at most TOP named series with the rest as "others", and units chosen for the
magnitude (the browser only draws what it is given)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from projections.monitor.charts import (
    OTHERS,
    RANGES,
    duration_unit,
    errors,
    latency,
    range_named,
    rate_unit,
    throughput,
    window,
)

NOW = datetime(2026, 12, 7, 20, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "buckets", "step"), [("hour", 60, 60), ("day", 144, 600), ("week", 168, 3600)]
)
def test_a_range_ends_with_the_bucket_that_holds_now(name: str, buckets: int, step: int) -> None:
    """Each range has a fixed number of buckets whose last one holds now."""
    w = window(RANGES[name], NOW)
    assert len(w.axis) == buckets
    assert w.step_s == step
    assert w.axis[-1] <= NOW.timestamp() < w.axis[-1] + step
    assert w.until - w.since == RANGES[name].span


def test_an_unknown_range_is_the_hour() -> None:
    """The picker's value is not an input: anything unknown shows the last hour."""
    assert range_named("fortnight").name == "hour"
    assert range_named(None).name == "hour"


@pytest.mark.parametrize(
    ("top", "unit"),
    [(0, "B/s"), (900, "B/s"), (1024, "KiB/s"), (5 * 2**20, "MiB/s"), (3 * 2**30, "GiB/s")],
)
def test_rates_read_in_the_unit_of_their_magnitude(top: float, unit: str) -> None:
    """The largest rate of a chart picks the binary unit in which it reads 1 to 1023."""
    assert rate_unit(top).name == unit


@pytest.mark.parametrize(
    ("top", "unit"), [(0.25, "ms"), (1.0, "s"), (90, "s"), (600, "min"), (4 * 3600, "h")]
)
def test_durations_read_in_the_unit_of_their_magnitude(top: float, unit: str) -> None:
    """The largest latency picks ms, s, min or h."""
    assert duration_unit(top).name == unit


def test_throughput_aligns_series_on_the_axis_with_zeros_and_others_last() -> None:
    """Given bytes of two destinations and of "others" in two minutes of the last hour, when
    charted, then every series has a value per minute (0 where none), in KiB/s, the busiest
    first and "others" last; a row outside the window is left out."""
    w = window(RANGES["hour"], NOW)
    first, last = w.axis[0], w.axis[-1]
    rows = [
        {"t": first, "series": "small", "bytes": 60 * 2048.0},
        {"t": last, "series": "big", "bytes": 60 * 10240.0},
        {"t": last, "series": None, "bytes": 60 * 1024.0},
        {"t": first - 60, "series": "big", "bytes": 1e12},
    ]
    chart = throughput(w, rows, key="destinations", title="by destination")
    assert chart.unit == "KiB/s"
    assert [line.label for line in chart.lines] == ["big", "small", OTHERS]
    big, small, others = (line.values for line in chart.lines)
    assert len(big) == len(small) == 60
    assert (big[-1], small[0], others[-1]) == (10.0, 2.0, 1.0)
    assert big[:-1] == (0.0,) * 59


def test_latency_leaves_gaps_where_nothing_was_delivered() -> None:
    """Given percentiles in one bucket, the other buckets are gaps (None), not zero, and the
    unit follows the largest p99."""
    w = window(RANGES["day"], NOW)
    chart = latency(w, [{"t": w.axis[3], "p50": 20.0, "p95": 90.0, "p99": 300.0}])
    assert chart.unit == "min"
    assert [line.label for line in chart.lines] == ["p50", "p95", "p99"]
    p99 = chart.lines[2].values
    assert p99[3] == 5.0
    assert (p99[2], p99[4]) == (None, None)


def test_errors_count_per_bucket_and_leave_out_quiet_destinations() -> None:
    """Failed attempts are counts per bucket ("per 10 min" on a day); a destination with none
    in the range has no line."""
    w = window(RANGES["day"], NOW)
    rows = [
        {"t": w.axis[-1], "series": "bad", "errors": 3.0},
        {"t": w.axis[-1], "series": "calm", "errors": 0.0},
    ]
    chart = errors(w, rows)
    assert chart.unit == "per 10 min"
    assert [(line.label, line.values[-1]) for line in chart.lines] == [("bad", 3.0)]


def test_nothing_in_the_range_gives_charts_without_series() -> None:
    """With no rows, each chart has no series (the page says nothing was delivered)."""
    w = window(RANGES["week"], NOW)
    assert throughput(w, [], key="hosts", title="by host").lines == ()
    assert latency(w, []).lines == ()
    assert errors(w, []).lines == ()
