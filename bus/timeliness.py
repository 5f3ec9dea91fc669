"""Timeliness, the pure core: products, predictions learnt from past cycles, lateness classes.

Shared by the monitor's grid (``projections/monitor``) and the timeliness watcher
(``consumers/timeliness``), so both class a transfer the same way. No I/O, no clock: every
time is passed in.

A **product** is a data file's ``stream/time/step/type`` metadata (``put --metadata`` or an
acquisition rule's ``acquisition.metadata``); its **cycle** (base time) is the ``date``
metadata (``YYYYMMDD``) at ``time`` (``HH`` or ``HHMM``), or without a ``date`` the latest
``time`` of day at or before the file's arrival. A cycle's **offset** is how long after its base
time something happened (the file arrived, was delivered, the product completed).

**Prediction** (per product and destination, separately for arrival and transfer), over the
offsets of the last ``WINDOW`` cycles: predicted = median; spread = 1.4826 x the median
absolute deviation (MAD; the standard deviation of normal data, unmoved by a few outliers),
at least ``MIN_SPREAD``; outliers are the offsets further than ``OUTLIER`` spreads from the
median; earliest/latest = the extremes of the others. Fewer than ``MIN_CYCLES`` cycles: no
prediction. Since the product key holds the base time (``time``), the 00 and 12 runs of a
stream are predicted apart.

**Lateness** (OpenECPDS's scale): ``d`` = observed - predicted, ``r`` = latest - predicted
(the usual lateness range, at least ``MIN_SPREAD``). More than 75 min early: WELL_AHEAD;
``d <= r``: ON_TIME; ``<= 2r``: SLIGHTLY_LATE; ``<= 4r``: LATE; ``<= 6r``: VERY_LATE; beyond:
CRITICAL. A destination's **target** (``monitor.target``, a duration after the base time) is a
promise: a transfer past it is at least LATE whatever history says, and with no history the
target alone classes it (ON_TIME before it, LATE up to twice its slack, then VERY_LATE, CRITICAL
past three times). Neither history nor target: NO_DATA. Something not observed yet is classed
by ``now`` once its prediction has passed (NO_DATA before).
"""

from __future__ import annotations

import re
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bus.events.products import Lateness
from bus.templates.filters import parse_duration_ms

WINDOW = 20  # cycles kept per product, destination and measure
MIN_CYCLES = 3  # fewer: no prediction
MIN_SPREAD = 60.0  # seconds: a clockwork product is not late by a second
OUTLIER = 3.0  # spreads from the median
WELL_AHEAD = 75 * 60.0  # seconds early
MAD_TO_SIGMA = 1.4826
PRODUCT_FIELDS = ("stream", "time", "step", "type")
TARGET = "monitor.target"  # the destination property of its target

_TIME = re.compile(r"^\d{1,2}(\d{2})?$")
_DATE = re.compile(r"^\d{8}$")


@dataclass(frozen=True, slots=True, order=True)
class ProductKey:
    """A product: the ``stream/time/step/type`` of its files."""

    stream: str
    time: str
    step: str
    type: str

    def text(self) -> str:
        """The key as written on the topic and in the read models: ``stream/time/step/type``."""
        return f"{self.stream}/{self.time}/{self.step}/{self.type}"

    @classmethod
    def parse(cls, text: str) -> ProductKey:
        """The key from its ``text()``."""
        stream, time, step, kind = text.split("/", 3)
        return cls(stream, time, step, kind)


def product_of(metadata: Mapping[str, str]) -> ProductKey | None:
    """The product a data file belongs to, from its metadata (None when it names none: all
    four of stream, time, step and type are needed)."""
    values = [metadata.get(name, "").strip() for name in PRODUCT_FIELDS]
    if not all(values) or any("/" in v for v in values):
        return None
    return ProductKey(*values)


def time_of_day(time: str) -> timedelta | None:
    """A base time ``HH`` or ``HHMM`` as a time of day (None when it is not one)."""
    if not _TIME.match(time):
        return None
    hours, minutes = (int(time[:-2] or 0), int(time[-2:])) if len(time) > 2 else (int(time), 0)
    if hours > 23 or minutes > 59:
        return None
    return timedelta(hours=hours, minutes=minutes)


def base_time(key: ProductKey, metadata: Mapping[str, str], seen: datetime) -> datetime | None:
    """The cycle of a file: its ``date`` at the product's ``time``, else the latest such time of
    day at or before ``seen`` (None when ``time`` is not a time of day)."""
    offset = time_of_day(key.time)
    if offset is None:
        return None
    date = metadata.get("date", "").strip()
    if _DATE.match(date):
        try:
            day = datetime(int(date[:4]), int(date[4:6]), int(date[6:]), tzinfo=seen.tzinfo)
        except ValueError:
            day = None
        if day is not None:
            return day + offset
    midnight = seen.replace(hour=0, minute=0, second=0, microsecond=0)
    cycle = midnight + offset
    return cycle if cycle <= seen else cycle - timedelta(days=1)


def target_seconds(properties: Mapping[str, object] | None) -> float | None:
    """A destination's ``monitor.target`` in seconds after the base time (None when absent or
    unreadable: the validator refuses a bad value at definition, an old one must not break the
    grid or the watcher)."""
    value = (properties or {}).get(TARGET)
    if not isinstance(value, str) or not value.strip():
        return None
    try:  # the parser the validator checks the property with
        return parse_duration_ms(value) / 1000
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Prediction:
    """Offsets (seconds after the base time) learnt from ``cycles`` past cycles."""

    earliest: float
    latest: float
    predicted: float
    spread: float
    cycles: int

    def at(self, base: datetime) -> datetime:
        """The predicted time of the cycle ``base``."""
        return base + timedelta(seconds=self.predicted)


def predict(offsets: Sequence[float]) -> Prediction | None:
    """The prediction from past offsets (see the module docstring); None below ``MIN_CYCLES``."""
    if len(offsets) < MIN_CYCLES:
        return None
    median = statistics.median(offsets)
    mad = statistics.median([abs(x - median) for x in offsets])
    spread = max(MAD_TO_SIGMA * mad, MIN_SPREAD)
    kept = [x for x in offsets if abs(x - median) <= OUTLIER * spread] or [median]
    return Prediction(min(kept), max(kept), median, spread, len(offsets))


def classify(
    observed: float | None,
    prediction: Prediction | None,
    *,
    target: float | None = None,
    now: float | None = None,
) -> Lateness:
    """The class of an offset ``observed`` (or, not observed yet, of ``now``) against the
    prediction and the destination's target (offsets in seconds after the base time)."""
    if prediction is None and target is None:
        return Lateness.NO_DATA
    value = observed if observed is not None else now
    if value is None:
        return Lateness.NO_DATA
    by_history = _by_history(value, prediction) if prediction is not None else None
    by_target = _by_target(value, target, prediction) if target is not None else None
    if observed is None:
        # nothing yet: only late once the prediction (or the target) has passed
        due = prediction.predicted if prediction is not None else target
        assert due is not None
        if value <= due:
            return Lateness.NO_DATA
    found = [c for c in (by_history, by_target) if c is not None]
    return max(found, key=_RANK.__getitem__)


_ORDER = (
    Lateness.NO_DATA,
    Lateness.WELL_AHEAD,
    Lateness.ON_TIME,
    Lateness.SLIGHTLY_LATE,
    Lateness.LATE,
    Lateness.VERY_LATE,
    Lateness.CRITICAL,
)
_RANK = {c: i for i, c in enumerate(_ORDER)}


def rank(lateness: Lateness) -> int:
    """Severity of a class (NO_DATA 0 ... CRITICAL 6)."""
    return _RANK[lateness]


def _by_history(value: float, p: Prediction) -> Lateness:
    late = value - p.predicted
    if late < -WELL_AHEAD:
        return Lateness.WELL_AHEAD
    usual = max(p.latest - p.predicted, MIN_SPREAD)
    for times, lateness in ((1, Lateness.ON_TIME), (2, Lateness.SLIGHTLY_LATE)):
        if late <= times * usual:
            return lateness
    if late <= 4 * usual:
        return Lateness.LATE
    return Lateness.VERY_LATE if late <= 6 * usual else Lateness.CRITICAL


def _by_target(value: float, target: float, p: Prediction | None) -> Lateness | None:
    if value <= target:
        return None if p is not None else Lateness.ON_TIME
    if p is not None:
        return Lateness.LATE  # past the promise: at least late, history may say worse
    slack = max(target, MIN_SPREAD)
    if value <= target + slack:
        return Lateness.LATE
    return Lateness.VERY_LATE if value <= target + 2 * slack else Lateness.CRITICAL


class History:
    """The offsets of the last ``window`` cycles per (destination, product, measure), updated
    as files arrive and are delivered: the one thing updated per delivered file.

    One offset per cycle: a later observation of the same cycle replaces it when later (a
    product is complete at a destination once its last file is there)."""

    __slots__ = ("_cycles", "_window")

    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._cycles: dict[tuple[str, ProductKey, str], deque[tuple[datetime, float]]] = {}

    def observe(
        self, destination: str, product: ProductKey, measure: str, base: datetime, at: datetime
    ) -> None:
        """Record that ``measure`` of the cycle ``base`` happened ``at``."""
        key = (destination, product, measure)
        cycles = self._cycles.get(key)
        if cycles is None:
            cycles = self._cycles[key] = deque(maxlen=self._window)
        offset = (at - base).total_seconds()
        if cycles and cycles[-1][0] == base:
            if offset > cycles[-1][1]:
                cycles[-1] = (base, offset)
            return
        cycles.append((base, offset))

    def offsets(
        self, destination: str, product: ProductKey, measure: str, before: datetime | None = None
    ) -> list[float]:
        """The offsets kept, of cycles before ``before`` when given (a cycle is not predicted
        from itself)."""
        cycles = self._cycles.get((destination, product, measure), ())
        return [o for b, o in cycles if before is None or b < before]

    def prediction(
        self, destination: str, product: ProductKey, measure: str, before: datetime | None = None
    ) -> Prediction | None:
        """The prediction of a cycle from the cycles before it."""
        return predict(self.offsets(destination, product, measure, before))


def offsets_of(cycles: Iterable[tuple[datetime, datetime]]) -> list[float]:
    """Offsets in seconds of (base time, observed time) pairs."""
    return [(at - base).total_seconds() for base, at in cycles]
