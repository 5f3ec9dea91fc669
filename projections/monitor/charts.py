"""The charts' data: a range (hour, day, week) cut into fixed buckets, the read models' rows
aligned on that one time axis, and units chosen for the magnitude; pure but for ``load``,
which makes the reads (``queries.Queries.chart_*``).

Rules kept here: a range ends at ``now``, the monitor's clock (a chart must show that traffic
stopped, which no row says), and its buckets are fixed per range, so a chart has at most
``168`` points whatever the traffic; every series of a chart shares the time axis (epoch
seconds, UTC); a missing bucket is 0 for a rate or a count (nothing happened) and ``None``,
a gap, for a latency (nothing to measure); a chart shows at most ``TOP`` named series, the
rest summed as "others". Values leave here already divided by the unit named beside them, so
the browser only draws (``static/charts.js``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

TOP = 8  # named series per chart: more lines than this are not read, only counted
OTHERS = "others"


@dataclass(frozen=True, slots=True)
class Range:
    """A time range a chart can show: its span and the width of one bucket."""

    name: str
    span: timedelta
    step: timedelta

    @property
    def buckets(self) -> int:
        return int(self.span / self.step)

    @property
    def per(self) -> str:
        """A bucket in words, for counts ("errors per 10 min")."""
        minutes = int(self.step.total_seconds() // 60)
        return "minute" if minutes == 1 else f"{minutes} min" if minutes < 60 else "hour"


RANGES: Mapping[str, Range] = {
    r.name: r
    for r in (
        Range("hour", timedelta(hours=1), timedelta(minutes=1)),
        Range("day", timedelta(days=1), timedelta(minutes=10)),
        Range("week", timedelta(days=7), timedelta(hours=1)),
    )
}
DEFAULT_RANGE = "hour"


def range_named(name: str | None) -> Range:
    """The range called ``name``; the default for anything else (a picker, not an input)."""
    return RANGES.get(name or "", RANGES[DEFAULT_RANGE])


@dataclass(frozen=True, slots=True)
class Window:
    """The buckets of a range ending at a time: ``since`` is the first bucket's start,
    ``until`` the end of the bucket that holds ``now``."""

    range: Range
    since: datetime
    until: datetime

    @property
    def step_s(self) -> int:
        return int(self.range.step.total_seconds())

    @property
    def axis(self) -> list[int]:
        """The start of every bucket, epoch seconds."""
        first = int(self.since.timestamp())
        return [first + i * self.step_s for i in range(self.range.buckets)]


def window(r: Range, now: datetime) -> Window:
    """The ``r.buckets`` buckets of ``r`` whose last one holds ``now``."""
    step = int(r.step.total_seconds())
    end = (int(now.timestamp()) // step + 1) * step
    until = datetime.fromtimestamp(end, UTC)
    return Window(r, until - r.span, until)


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit for display: its name and what a raw value is divided by."""

    name: str
    divisor: float


_RATES = (Unit("B/s", 1), Unit("KiB/s", 2**10), Unit("MiB/s", 2**20), Unit("GiB/s", 2**30))
_DURATIONS = (Unit("ms", 0.001), Unit("s", 1), Unit("min", 60), Unit("h", 3600))
_DURATION_LIMITS = (1.0, 120.0, 7200.0)  # below 1 s: ms; below 2 min: s; below 2 h: min


def rate_unit(top: float) -> Unit:
    """The binary unit in which the largest rate ``top`` (bytes/s) reads as 1 to 1023."""
    for unit in reversed(_RATES):
        if top >= unit.divisor:
            return unit
    return _RATES[0]


def duration_unit(top: float) -> Unit:
    """ms, s, min or h for durations up to ``top`` seconds."""
    for unit, limit in zip(_DURATIONS, _DURATION_LIMITS, strict=False):
        if top < limit:
            return unit
    return _DURATIONS[-1]


@dataclass(frozen=True, slots=True)
class Line:
    """One series of a chart: its label and a value (or a gap) per bucket."""

    label: str
    values: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart: what it shows, the unit of its values and its series."""

    key: str
    title: str
    unit: str
    lines: tuple[Line, ...]

    def json(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "title": self.title,
            "unit": self.unit,
            "series": [{"label": s.label, "values": list(s.values)} for s in self.lines],
        }


def _slot(w: Window, t: float) -> int | None:
    """The index of the bucket starting at epoch ``t`` (None: outside the window)."""
    i = int((t - w.since.timestamp()) // w.step_s)
    return i if 0 <= i < w.range.buckets else None


def _series(
    w: Window, rows: Iterable[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float]
) -> dict[str, list[float]]:
    """Per ``series`` name (null: others), ``value`` summed per bucket, 0 where none."""
    out: dict[str, list[float]] = {}
    for r in rows:
        i = _slot(w, float(r["t"]))
        if i is None:
            continue
        name = r["series"] if r["series"] is not None else OTHERS
        out.setdefault(name, [0.0] * w.range.buckets)[i] += value(r)
    return out


def _ordered(found: Mapping[str, list[float]]) -> list[tuple[str, list[float]]]:
    """Largest total first, "others" last."""
    named = sorted((k for k in found if k != OTHERS), key=lambda k: (-sum(found[k]), k))
    return [(k, found[k]) for k in [*named, *([OTHERS] if OTHERS in found else [])]]


def throughput(w: Window, rows: Iterable[Mapping[str, Any]], *, key: str, title: str) -> Chart:
    """Bytes per second per series from rows of (``t`` bucket start, ``series``, ``bytes``)."""
    found = _series(w, rows, lambda r: float(r["bytes"]) / w.step_s)
    top = max((v for values in found.values() for v in values), default=0.0)
    unit = rate_unit(top)
    lines = tuple(
        Line(name, tuple(round(v / unit.divisor, 3) for v in values))
        for name, values in _ordered(found)
    )
    return Chart(key, title, unit.name, lines)


def errors(w: Window, rows: Iterable[Mapping[str, Any]]) -> Chart:
    """Failed attempts per bucket and series from rows of (``t``, ``series``, ``errors``)."""
    found = {k: v for k, v in _series(w, rows, lambda r: float(r["errors"])).items() if any(v)}
    lines = tuple(Line(k, tuple(values)) for k, values in _ordered(found))
    return Chart("errors", "Failed attempts by destination", f"per {w.range.per}", lines)


PERCENTILES = ("p50", "p95", "p99")


def latency(w: Window, rows: Iterable[Mapping[str, Any]]) -> Chart:
    """p50/p95/p99 of the delivery latency per bucket from rows of (``t``, ``p50``, ``p95``,
    ``p99``) in seconds; a bucket with no delivery is a gap."""
    found: dict[str, list[float | None]] = {p: [None] * w.range.buckets for p in PERCENTILES}
    for r in rows:
        i = _slot(w, float(r["t"]))
        if i is not None:
            for p in PERCENTILES:
                found[p][i] = None if r[p] is None else float(r[p])
    top = max((v for vs in found.values() for v in vs if v is not None), default=0.0)
    unit = duration_unit(top)
    lines = tuple(
        Line(p, tuple(None if v is None else round(v / unit.divisor, 3) for v in found[p]))
        for p in PERCENTILES
        if any(v is not None for v in found[p])
    )
    return Chart("latency", "Delivery latency (queued to delivered)", unit.name, lines)


def payload(w: Window, charts: Sequence[Chart]) -> dict[str, Any]:
    """What ``/api/v1/charts`` answers: the range, the time axis and the charts."""
    return {
        "range": w.range.name,
        "step": w.step_s,
        "since": w.since.isoformat(),
        "until": w.until.isoformat(),
        "x": w.axis,
        "charts": [c.json() for c in charts],
    }


async def load(
    queries: Any, r: Range, now: datetime, destination: str | None = None
) -> dict[str, Any]:
    """The charts of range ``r`` ending at ``now`` (of one destination, or of all)."""
    w = window(r, now)
    args = (w.since, w.until, w.step_s, destination)
    by_destination = await queries.chart_destinations("bytes", *args, top=TOP)
    by_host = await queries.chart_hosts(*args, top=TOP)
    failed = await queries.chart_destinations("errors", *args, top=TOP)
    delays = await queries.chart_latency(*args)
    return payload(
        w,
        (
            throughput(w, by_destination, key="destinations", title="Throughput by destination"),
            throughput(w, by_host, key="hosts", title="Throughput by host"),
            latency(w, delays),
            errors(w, failed),
        ),
    )
