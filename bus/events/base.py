"""Shared event types: the envelope every event carries, the ``Event`` base and shared enums.

Rule kept here: the classes mirror ``schemas/ecpds.*.avsc`` exactly (a test keeps them in step);
the ``.avsc`` files are the contract, these are their Python face.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """Stamped on every event: identity, time, origin and the ids that chain events together."""

    AVRO_NAME: ClassVar[str] = "ecpds.Envelope"

    event_id: str  # UUID of this event
    occurred_at: datetime  # when it happened (UTC, microseconds)
    source: str  # component and instance that emitted it, e.g. scheduler/host-1
    correlation_id: str  # the data file or transfer this event concerns
    causation_id: str | None = None  # event_id of the event that caused this one


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: a past-tense fact with its envelope; ``AVRO_NAME`` is its full name."""

    AVRO_NAME: ClassVar[str]

    envelope: Envelope


class TransferStatus(StrEnum):
    """Status of a data transfer, OpenECPDS codes: INIT Arriving, SCHE Preset, FETC Fetching, HOLD
    StandBy, WAIT Queued, EXEC Transferring, DONE Done, RETR ReQueued, STOP Stopped, FAIL
    Failed, INTR Interrupted."""

    INIT = "INIT"
    SCHE = "SCHE"
    FETC = "FETC"
    HOLD = "HOLD"
    WAIT = "WAIT"
    EXEC = "EXEC"
    DONE = "DONE"
    RETR = "RETR"
    STOP = "STOP"
    FAIL = "FAIL"
    INTR = "INTR"


class DestinationStatus(StrEnum):
    """Status of a destination, OpenECPDS codes: INIT Initialized, EXEC Running, SCHE Waiting,
    FAIL NoHosts, INTR Interrupted, WAIT Idle, DONE Resending, RETR Retrying, RSTR
    Restarting, STOP Stopped, HOLD Failed (all hosts failed retry-count times), IDLE
    Sleeping."""

    INIT = "INIT"
    EXEC = "EXEC"
    SCHE = "SCHE"
    FAIL = "FAIL"
    INTR = "INTR"
    WAIT = "WAIT"
    DONE = "DONE"
    RETR = "RETR"
    RSTR = "RSTR"
    STOP = "STOP"
    HOLD = "HOLD"
    IDLE = "IDLE"


class Compression(StrEnum):
    """Compression applied to a file for a destination (none, lzma, zip, gzip, bzip2, lbzip2, lz4,
    snappy, zstd)."""

    NONE = "NONE"
    LZMA = "LZMA"
    ZIP = "ZIP"
    GZIP = "GZIP"
    BZIP2 = "BZIP2"
    LBZIP2 = "LBZIP2"
    LZ4 = "LZ4"
    SNAPPY = "SNAPPY"
    ZSTD = "ZSTD"


NAMED_TYPES: Mapping[str, type] = {
    "ecpds.Envelope": Envelope,
    "ecpds.TransferStatus": TransferStatus,
    "ecpds.DestinationStatus": DestinationStatus,
    "ecpds.Compression": Compression,
}
