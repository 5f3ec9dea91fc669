"""Mover events (topic ``ecpds.movers``, key: mover id): heartbeats with capacity and load,
and the scheduler's requests to abandon a running transfer (every mover reads those)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from bus.events.base import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class MoverHeartbeat(Event):
    """A mover is alive; its capacity and current load."""

    AVRO_NAME: ClassVar[str] = "ecpds.movers.MoverHeartbeat"

    mover_id: str
    transfer_group: str
    capacity: int  # maximum concurrent transfers
    running: int
    started_at: datetime
    running_transfers: tuple[str, ...] = ()
    bytes_per_second: float = 0.0
    hostname: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MoverStopped(Event):
    """A mover shut down cleanly; its running transfers were reported interrupted."""

    AVRO_NAME: ClassVar[str] = "ecpds.movers.MoverStopped"

    mover_id: str
    transfer_group: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferAbortRequested(Event):
    """The scheduler interrupted or stopped a running attempt (immediate hold or restart, stop):
    the mover running it abandons the delivery (its temporary file removed, no outcome sent),
    and a mover that receives the order later skips it. Keyed by the mover id when the
    scheduler knows it (``TransferStarted`` seen), else by the destination."""

    AVRO_NAME: ClassVar[str] = "ecpds.movers.TransferAbortRequested"

    transfer_id: str
    destination: str
    attempt: int
    reason: str
    mover_id: str | None = None


EVENTS: tuple[type[Event], ...] = (
    MoverHeartbeat,
    MoverStopped,
    TransferAbortRequested,
)
NAMED_TYPES: Mapping[str, type] = {}
