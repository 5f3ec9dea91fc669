"""Transfer lifecycle events (topic ``ecpds.transfers``, key: destination): outcomes, scheduler
decisions, destination status and host changes. Operator requests are in ``requests``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from bus.events.base import Compression, DestinationStatus, Event, TransferStatus
from bus.events.datafiles import Checksums


class Verification(StrEnum):
    """How a mover verified a delivered file; ``FOUND_*``: an earlier attempt had delivered it
    (its outcome unknown) and this one found it at the final name instead of sending it again."""

    NONE = "NONE"
    SIZE = "SIZE"
    CHECKSUM = "CHECKSUM"
    SIZE_AND_CHECKSUM = "SIZE_AND_CHECKSUM"
    FOUND_SIZE = "FOUND_SIZE"
    FOUND_SIZE_AND_CHECKSUM = "FOUND_SIZE_AND_CHECKSUM"


class Fault(StrEnum):
    """Whose problem a failed attempt was (``protocols.base.FAULTS`` says it per error class)."""

    HOST = "HOST"  # the host's: counts against its retries, fails over, may hold the destination
    FILE = "FILE"  # the file itself (its object missing at the store): ends the transfer
    TRANSIENT = "TRANSIENT"  # neither: requeued later without counting against the host


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferQueued(Event):
    """A transfer of a data file to a destination was queued (WAIT, or HOLD when standby)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferQueued"

    transfer_id: str
    destination: str
    data_file_id: str
    target: str
    status: TransferStatus
    priority: int
    queue_time: datetime
    expiry_time: datetime
    size: int
    scheduled_time: datetime | None = None
    alias_of: str | None = None  # the destination this one aliases
    identity: str | None = None
    file_instance: int = 1
    notify: bool = False
    asap: bool = False
    # where the bytes are, so the scheduler can order a mover without joining another topic
    guid: str | None = None  # object id of the stored bytes (null until stored)
    store: str | None = None
    location: str | None = None
    checksums: Checksums | None = None
    original: str | None = None  # original file name
    transfer_group: str | None = None  # null = the destination's group
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferScheduled(Event):
    """The scheduler chose a host and ordered an attempt of a transfer."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferScheduled"

    transfer_id: str
    destination: str
    attempt: int
    host_id: str
    transfer_group: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferStarted(Event):
    """A mover started an attempt (EXEC)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferStarted"

    transfer_id: str
    destination: str
    attempt: int
    host_id: str
    mover_id: str
    # where this attempt writes before its rename; null = no temporary name
    temporary_path: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSucceeded(Event):
    """A mover delivered a file (DONE)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferSucceeded"

    transfer_id: str
    destination: str
    attempt: int
    host_id: str
    mover_id: str
    remote_path: str
    bytes_sent: int
    duration_ms: int
    bytes_per_second: float
    verification: Verification
    md5: str | None = None
    compression: Compression = Compression.NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferFailed(Event):
    """An attempt of a transfer failed at a mover."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferFailed"

    transfer_id: str
    destination: str
    attempt: int
    host_id: str
    mover_id: str
    error_class: str
    message: str
    retriable: bool
    bytes_sent: int = 0
    duration_ms: int = 0
    # null from movers older than this field: the scheduler reads retriable as HOST, else FILE
    fault: Fault | None = None
    # the attempt's temporary name, removed by the next attempt if still there
    temporary_path: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRequeued(Event):
    """A transfer was put back in the queue (RETR): automatic retry, delay after max starts, or
    operator requeue."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferRequeued"

    transfer_id: str
    destination: str
    reason: str
    requeue_count: int
    queue_time: datetime  # new ordering time
    actor: str | None = None  # operator; null = the scheduler


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferHeld(Event):
    """A transfer was put on standby (HOLD)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferHeld"

    transfer_id: str
    destination: str
    reason: str
    actor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferReleased(Event):
    """A held transfer was released into the queue (WAIT)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferReleased"

    transfer_id: str
    destination: str
    actor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferStopped(Event):
    """A transfer was stopped (STOP): by an operator or an unrecoverable error."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferStopped"

    transfer_id: str
    destination: str
    reason: str
    actor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferDownloaded(Event):
    """A data user downloaded a held (portal) transfer through the portal, which makes it DONE."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferDownloaded"

    transfer_id: str
    destination: str
    user: str
    protocol: str
    bytes_sent: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferInterrupted(Event):
    """An attempt was interrupted (INTR): mover gone, shutdown, or immediate hold; it will be
    requeued."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferInterrupted"

    transfer_id: str
    destination: str
    attempt: int
    reason: str
    mover_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferExpired(Event):
    """A transfer's lifetime passed before it was delivered (FAIL)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferExpired"

    transfer_id: str
    destination: str
    expiry_time: datetime
    reason: str = "not transferred before expiration"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferAbandoned(Event):
    """The scheduler gave up on a transfer (FAIL), e.g. max requeue reached or permanent error."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferAbandoned"

    transfer_id: str
    destination: str
    reason: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferPriorityChanged(Event):
    """A transfer's priority changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferPriorityChanged"

    transfer_id: str
    destination: str
    old_priority: int
    new_priority: int
    actor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferLifetimeExtended(Event):
    """A transfer's expiry time was moved later."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferLifetimeExtended"

    transfer_id: str
    destination: str
    old_expiry_time: datetime
    new_expiry_time: datetime
    actor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationStatusChanged(Event):
    """A destination's status changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.DestinationStatusChanged"

    destination: str
    new_status: DestinationStatus
    old_status: DestinationStatus | None = None
    reason: str = ""
    actor: str | None = None
    # when the status ends by itself (e.g. end of the sleep between retry cycles)
    until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSwitched(Event):
    """The scheduler switched a destination to another host (failover or reset to primary)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.HostSwitched"

    destination: str
    to_host: str
    reason: str
    from_host: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferFellBack(Event):
    """The scheduler ordered the next attempt of a transfer of a regional (continental) transfer
    group to the group's fallback group instead (OpenECPDS's proxy fallback): after
    fallback_after failed attempts on the regional group, or because none of its movers is
    alive."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.TransferFellBack"

    transfer_id: str
    destination: str
    attempt: int  # the attempt ordered to the fallback group
    from_group: str  # the regional transfer group
    to_group: str  # the fallback (central) transfer group
    failures: int  # consecutive failed attempts of the transfer on from_group
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileStaged(Event):
    """A destination's data file was pre-staged into the store replica of the destination's
    regional (continental) transfer group, ahead of its transfers' scheduled time: the
    regional movers read it there. Keyed by destination on the transfers topic, so the
    scheduler orders the transfer to the region once its copy is there (the copy itself is
    also a ``DataFileReplicated``)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.DataFileStaged"

    data_file_id: str
    destination: str
    transfer_group: str  # the regional transfer group
    store: str  # the group's replica_store (configured store name)
    from_store: str  # the store the object was copied from (DataFileStored.store)
    size: int
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestDeclined(Event):
    """The scheduler's answer to an operator request that found nothing to do (requeue-failed
    with nothing failed, release of a transfer that is not held, an unknown transfer ...); its
    causation id names the request."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.RequestDeclined"

    destination: str
    request: str  # the request's event type, e.g. ecpds.transfers.RequeueFailedRequested
    transfer_id: str | None = None
    host_id: str | None = None
    requested_by: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostActivated(Event):
    """A host was put back in use for a destination."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.HostActivated"

    destination: str
    host_id: str
    actor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostDeactivated(Event):
    """A host was taken out of use for a destination."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.HostDeactivated"

    destination: str
    host_id: str
    reason: str = ""
    actor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPriorityChanged(Event):
    """A host's priority in a destination's host list changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.HostPriorityChanged"

    destination: str
    host_id: str
    old_priority: int
    new_priority: int
    actor: str | None = None


EVENTS: tuple[type[Event], ...] = (
    TransferQueued,
    TransferScheduled,
    TransferStarted,
    TransferSucceeded,
    TransferFailed,
    TransferRequeued,
    TransferHeld,
    TransferReleased,
    TransferStopped,
    TransferDownloaded,
    TransferInterrupted,
    TransferExpired,
    TransferAbandoned,
    TransferPriorityChanged,
    TransferLifetimeExtended,
    RequestDeclined,
    DestinationStatusChanged,
    HostSwitched,
    TransferFellBack,
    DataFileStaged,
    HostActivated,
    HostDeactivated,
    HostPriorityChanged,
)
NAMED_TYPES: Mapping[str, type] = {
    "ecpds.transfers.Verification": Verification,
    "ecpds.transfers.Fault": Fault,
}
