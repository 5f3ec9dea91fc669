"""Transfer orders (topics ``ecpds.orders.<transfer-group>``, key: destination) for the movers.

An order carries everything a mover needs, and its attempt number: outcomes of a superseded
attempt are ignored by the scheduler. ``check_since`` makes a reissued attempt look at the
destination before sending (effectively once after a crash).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from bus.events.base import Compression, Event
from bus.events.config import Host, IfTargetExists
from bus.events.datafiles import Checksums


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferOrdered(Event):
    """An order for a mover of the transfer group to execute one attempt of a transfer."""

    AVRO_NAME: ClassVar[str] = "ecpds.orders.TransferOrdered"

    transfer_id: str
    destination: str
    data_file_id: str
    attempt: int
    transfer_group: str
    host: Host
    target: str
    guid: str
    store: str
    location: str
    size: int
    checksums: Checksums
    priority: int
    expiry_time: datetime
    compression: Compression = Compression.NONE
    if_target_exists: IfTargetExists = IfTargetExists.OVERWRITE
    # rendered target path; null = the mover renders the host directory
    remote_path: str | None = None
    original: str | None = None
    file_instance: int = 1
    metadata: Mapping[str, str] = field(default_factory=dict)
    # set when an earlier attempt may have delivered the file without a known outcome: the
    # mover looks at the final name first (see consumers.movers.delivery.found)
    check_since: datetime | None = None


EVENTS: tuple[type[Event], ...] = (TransferOrdered,)
NAMED_TYPES: Mapping[str, type] = {}
