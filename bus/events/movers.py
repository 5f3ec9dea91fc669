"""Mover events (topic ``ecpds.movers``, key: mover id): heartbeats with capacity and load."""

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


EVENTS: tuple[type[Event], ...] = (
    MoverHeartbeat,
    MoverStopped,
)
NAMED_TYPES: Mapping[str, type] = {}
