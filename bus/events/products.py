"""Product timeliness events (topic ``ecpds.products``, key: the product ``stream/time/step/type``).

A product is what OpenECPDS's top monitoring display tracks: the files of one stream, base time,
step and type (metadata ``stream``, ``time``, ``step``, ``type`` of their data files). Its
generation status is set by an operator or the producing suite (``ecpds product expected|
started|completed|reset``); the timeliness watcher publishes ``ProductLate`` and
``TransferLate`` when a product or one of its transfers is later than history predicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from bus.events.base import Event


class ProductStatus(StrEnum):
    """Generation status of a product, OpenECPDS's: EXPECTED (INIT), STARTED (EXEC), COMPLETED
    (DONE); RESET clears it (``ecpds -reset``)."""

    EXPECTED = "EXPECTED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    RESET = "RESET"


class Lateness(StrEnum):
    """OpenECPDS's monitoring scale for an arrival or a transfer against its prediction: NO_DATA
    (no history and no target), WELL_AHEAD (more than 75 min early), ON_TIME, SLIGHTLY_LATE
    (within 2x the usual range), LATE, VERY_LATE (beyond 4x), CRITICAL (beyond 6x)."""

    NO_DATA = "NO_DATA"
    WELL_AHEAD = "WELL_AHEAD"
    ON_TIME = "ON_TIME"
    SLIGHTLY_LATE = "SLIGHTLY_LATE"
    LATE = "LATE"
    VERY_LATE = "VERY_LATE"
    CRITICAL = "CRITICAL"


class Measure(StrEnum):
    """What a lateness is measured on: ARRIVAL (the file reached the data store and was queued)
    or TRANSFER (the file was delivered to the destination)."""

    ARRIVAL = "ARRIVAL"
    TRANSFER = "TRANSFER"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductStatusChanged(Event):
    """A product's generation status was set (expected, started, completed) or reset."""

    AVRO_NAME: ClassVar[str] = "ecpds.products.ProductStatusChanged"

    stream: str
    time: str  # base time of the cycle, as in the metadata (e.g. 00, 12, 0600)
    step: str
    type: str
    status: ProductStatus
    at: datetime  # when the status holds from (``--at``; default when it was asked)
    requested_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductLate(Event):
    """A product's generation was later than history predicts (completed late, or not completed
    when its prediction passed)."""

    AVRO_NAME: ClassVar[str] = "ecpds.products.ProductLate"

    stream: str
    time: str
    step: str
    type: str
    base_time: datetime  # the cycle: date and base time of the product
    lateness: Lateness
    predicted_at: datetime
    observed_at: datetime | None = None  # null: not completed yet
    late_by_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferLate(Event):
    """A transfer of a product's file arrived or was delivered later than history or the
    destination's target predicts (or has not arrived or been delivered when it should have)."""

    AVRO_NAME: ClassVar[str] = "ecpds.products.TransferLate"

    destination: str
    transfer_id: str | None = None  # null: nothing arrived for this destination yet
    stream: str
    time: str
    step: str
    type: str
    base_time: datetime
    measure: Measure
    lateness: Lateness
    predicted_at: datetime
    target_at: datetime | None = None  # the destination's target (``monitor.target``)
    observed_at: datetime | None = None  # null: not arrived or delivered yet
    late_by_ms: int


EVENTS: tuple[type[Event], ...] = (ProductStatusChanged, ProductLate, TransferLate)

NAMED_TYPES: Mapping[str, type] = {
    "ecpds.products.ProductStatus": ProductStatus,
    "ecpds.products.Lateness": Lateness,
    "ecpds.products.Measure": Measure,
}
