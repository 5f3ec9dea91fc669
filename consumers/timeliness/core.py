"""The timeliness watcher's pure core: follows transfers and product statuses, learns each
product's timing per destination (``bus.timeliness.History``) and says when something is late.

Rules kept here:

- ``Watcher.evolve(event, targets)`` folds one event and returns the lateness events it calls
  for: a file that arrives (``TransferQueued``) or is delivered (``TransferSucceeded``) later
  than its cycle's prediction (or past the destination's target), a product completed
  (``ProductStatusChanged`` COMPLETED) later than its past completions. A cycle is predicted
  from the cycles before it only.
- ``Watcher.due(now, targets)`` says what is late by *absence*: a product whose next cycle's
  predicted arrival (or delivery, or the destination's target) has passed with nothing of it
  seen. Its only input from outside the log is ``now``.
- Only ``ALERT`` and worse is published, once per (destination, product, cycle, measure)
  and class: a cycle already reported late is reported again only when it gets worse.
- Event ids are derived from what they report (uuid5), so a replay publishes the same ids.

No I/O, no clock: times come from the events or from ``now``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    WINDOW,
    History,
    Prediction,
    ProductKey,
    base_time,
    classify,
    product_of,
    rank,
)

ALERT = Lateness.LATE  # slightly late is within twice the usual range: not worth a mail
CYCLE = timedelta(days=1)  # the product key holds the time of day: one cycle a day
COMPLETION = "*"  # the "destination" under which product completions are learnt
SOURCE = "timeliness"
_IDS = uuid.UUID("3f0c2d1e-17a4-4f55-9a51-6c1f1b0c9e17")


@dataclass(frozen=True, slots=True)
class _Pending:
    """A queued transfer of a product, until it is delivered."""

    destination: str
    product: ProductKey
    base: datetime


class Watcher:
    """The state: history, transfers in flight, what was already reported."""

    def __init__(self, window: int = WINDOW, source: str = SOURCE) -> None:
        self.history = History(window)
        self._pending: dict[str, _Pending] = {}
        self._reported: dict[tuple[str, ProductKey, datetime, str], Lateness] = {}
        self._last: dict[tuple[str, ProductKey, str], datetime] = {}  # newest cycle seen
        self._source = source

    def evolve(self, event: Event, targets: Mapping[str, float | None]) -> list[Event]:
        """Fold ``event``; the lateness events it calls for (``targets``: seconds after the
        base time per destination, from ``monitor.target``)."""
        if isinstance(event, TransferQueued):
            return self._queued(event)
        if isinstance(event, TransferSucceeded):
            return self._delivered(event, targets.get(event.destination))
        if isinstance(event, ProductStatusChanged) and event.status is ProductStatus.COMPLETED:
            return self._completed(event)
        return []

    def _queued(self, event: TransferQueued) -> list[Event]:
        product = product_of(event.metadata)
        at = event.envelope.occurred_at
        base = base_time(product, event.metadata, at) if product is not None else None
        if product is None or base is None:
            return []
        self._pending[event.transfer_id] = _Pending(event.destination, product, base)
        return self._observe(
            event, event.destination, product, Measure.ARRIVAL, base, at, None, event.transfer_id
        )

    def _delivered(self, event: TransferSucceeded, target: float | None) -> list[Event]:
        pending = self._pending.pop(event.transfer_id, None)
        if pending is None:
            return []
        at = event.envelope.occurred_at
        return self._observe(
            event,
            pending.destination,
            pending.product,
            Measure.TRANSFER,
            pending.base,
            at,
            target,
            event.transfer_id,
        )

    def _completed(self, event: ProductStatusChanged) -> list[Event]:
        product = ProductKey(event.stream, event.time, event.step, event.type)
        base = base_time(product, {}, event.at)
        if base is None:
            return []
        return self._observe(event, COMPLETION, product, "COMPLETED", base, event.at, None, None)

    def _observe(
        self,
        cause: Event,
        destination: str,
        product: ProductKey,
        measure: str,
        base: datetime,
        at: datetime,
        target: float | None,
        transfer_id: str | None,
    ) -> list[Event]:
        prediction = self.history.prediction(destination, product, measure, before=base)
        offset = (at - base).total_seconds()
        lateness = classify(offset, prediction, target=target)
        self.history.observe(destination, product, measure, base, at)
        key = (destination, product, measure)
        if key not in self._last or self._last[key] < base:
            self._last[key] = base
        return self._report(
            cause, destination, product, measure, base, lateness, prediction, target, at,
            transfer_id,
        )  # fmt: skip

    def due(self, now: datetime, targets: Mapping[str, float | None]) -> list[Event]:
        """What is late by absence at ``now``: a next cycle not seen by its prediction."""
        found: list[Event] = []
        for (destination, product, measure), last in list(self._last.items()):
            due = last + CYCLE
            if now <= due:
                continue
            prediction = self.history.prediction(destination, product, measure)
            target = targets.get(destination) if measure == Measure.TRANSFER else None
            if prediction is None and target is None:
                continue
            lateness = classify(None, prediction, target=target, now=(now - due).total_seconds())
            found += self._report(
                None, destination, product, measure, due, lateness, prediction, target, None,
                None, now=now,
            )  # fmt: skip
        return found

    def _report(
        self,
        cause: Event | None,
        destination: str,
        product: ProductKey,
        measure: str,
        base: datetime,
        lateness: Lateness,
        prediction: Prediction | None,
        target: float | None,
        observed: datetime | None,
        transfer_id: str | None,
        *,
        now: datetime | None = None,
    ) -> list[Event]:
        if rank(lateness) < rank(ALERT):
            return []
        seen = (destination, product, base, measure)
        before = self._reported.get(seen)
        if before is not None and rank(before) >= rank(lateness):
            return []
        self._reported[seen] = lateness
        when = observed or now
        assert when is not None
        due = prediction.at(base) if prediction is not None else None
        target_at = base + timedelta(seconds=target) if target is not None else None
        predicted_at = due or target_at or when
        late_by = int((when - predicted_at).total_seconds() * 1000)
        name = f"{destination}|{product.text()}|{base.isoformat()}|{measure}|{lateness}"
        envelope = Envelope(
            event_id=str(uuid.uuid5(_IDS, name)),
            occurred_at=when,
            source=self._source,
            correlation_id=transfer_id or product.text(),
            causation_id=cause.envelope.event_id if cause is not None else None,
        )
        if destination == COMPLETION:
            return [
                ProductLate(
                    envelope=envelope,
                    stream=product.stream,
                    time=product.time,
                    step=product.step,
                    type=product.type,
                    base_time=base,
                    lateness=lateness,
                    predicted_at=predicted_at,
                    observed_at=observed,
                    late_by_ms=max(late_by, 0),
                )
            ]
        return [
            TransferLate(
                envelope=envelope,
                destination=destination,
                transfer_id=transfer_id,
                stream=product.stream,
                time=product.time,
                step=product.step,
                type=product.type,
                base_time=base,
                measure=Measure(measure),
                lateness=lateness,
                predicted_at=predicted_at,
                target_at=target_at,
                observed_at=observed,
                late_by_ms=max(late_by, 0),
            )
        ]

    def forget_before(self, horizon: datetime) -> None:
        """Drop reports of cycles older than ``horizon`` (memory stays bounded)."""
        self._reported = {k: v for k, v in self._reported.items() if k[2] >= horizon}
