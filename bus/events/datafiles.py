"""Data file events (topic ``ecpds.datafiles``, key: data file id): registration, storage,
replication, expiry, deletion, refusals and backup copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from bus.events.base import Event


class SubmissionMode(StrEnum):
    """How a registration treats an existing file with the same destination, target and version:
    refuse, requeue the existing one, or force a new file instance."""

    NORMAL = "NORMAL"
    REQUEUE = "REQUEUE"
    FORCE = "FORCE"


class RefusalReason(StrEnum):
    """Why a registration was refused."""

    UNKNOWN_DESTINATION = "UNKNOWN_DESTINATION"
    DUPLICATE = "DUPLICATE"
    TOO_MANY_PENDING = "TOO_MANY_PENDING"
    TOO_LARGE = "TOO_LARGE"
    ALREADY_EXPIRED = "ALREADY_EXPIRED"
    NOT_PERMITTED = "NOT_PERMITTED"
    INVALID = "INVALID"


@dataclass(frozen=True, slots=True, kw_only=True)
class Checksums:
    """Checksums of stored content (hex)."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.Checksums"

    adler32: str
    md5: str | None = None
    sha512: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileRegistered(Event):
    """A data file was accepted for storage; its bytes are not durable yet."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileRegistered"

    data_file_id: str
    destination: str
    target: str  # name relative to the destination
    transfer_group: str
    priority: int = 99  # 0-99, lower first
    expiry_time: datetime
    scheduled_time: datetime | None = None  # null = as soon as stored (delay/at)
    standby: bool = False
    asap: bool = False
    notify: bool = False  # publish a notification when delivered (--event)
    submission_mode: SubmissionMode = SubmissionMode.NORMAL
    file_instance: int = 1  # incremented on forced re-submission
    version: str | None = None
    original: str | None = None  # original name or URL
    expected_size: int | None = None
    content_type: str | None = None
    acquisition_host: str | None = None  # set when acquired from a provider
    requested_by: str | None = None  # user or component that submitted it
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileStored(Event):
    """The data file's bytes are durable in the object store."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileStored"

    data_file_id: str
    guid: str  # object id in the store
    store: str  # store name
    location: str  # URL or key of the object in that store
    size: int
    checksums: Checksums
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileReplicated(Event):
    """A copy of a stored data file was made in another store."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileReplicated"

    data_file_id: str
    guid: str
    from_store: str
    to_store: str
    location: str
    size: int
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileExpired(Event):
    """A data file's lifetime passed; its unfinished transfers fail."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileExpired"

    data_file_id: str
    expiry_time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileDeleted(Event):
    """The stored content of a data file was deleted from one store."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileDeleted"

    data_file_id: str
    guid: str
    store: str
    location: str
    reason: str  # on-expiration, on-success, operator, registration-failed


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileRegistrationRefused(Event):
    """A submission was refused before anything was stored."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileRegistrationRefused"

    destination: str
    target: str
    reason: RefusalReason
    message: str
    data_file_id: str | None = None
    size: int | None = None
    requested_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileRegistrationFailed(Event):
    """A registered data file could not be stored; no transfer will be queued for it."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileRegistrationFailed"

    data_file_id: str
    stage: str  # where it failed: receive, store, checksum, recovery
    error_class: str
    message: str
    retriable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileBackedUp(Event):
    """A data file was copied to the transfer group's backup host."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileBackedUp"

    data_file_id: str
    host: str
    remote_path: str
    size: int
    duration_ms: int
    transfer_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFileBackupFailed(Event):
    """A backup copy of a data file failed."""

    AVRO_NAME: ClassVar[str] = "ecpds.datafiles.DataFileBackupFailed"

    data_file_id: str
    host: str
    error_class: str
    message: str
    retriable: bool = True
    transfer_id: str | None = None


EVENTS: tuple[type[Event], ...] = (
    DataFileRegistered,
    DataFileStored,
    DataFileReplicated,
    DataFileExpired,
    DataFileDeleted,
    DataFileRegistrationRefused,
    DataFileRegistrationFailed,
    DataFileBackedUp,
    DataFileBackupFailed,
)
NAMED_TYPES: Mapping[str, type] = {
    "ecpds.datafiles.SubmissionMode": SubmissionMode,
    "ecpds.datafiles.RefusalReason": RefusalReason,
    "ecpds.datafiles.Checksums": Checksums,
}
