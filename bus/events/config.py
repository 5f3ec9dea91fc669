"""Configuration entities carried by the ``ecpds.config`` events, and their enums.

Credentials are ``EncryptedSecret`` and data-user passwords argon2 hashes: nothing here is
ever clear text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from bus.events.base import Compression


class DestinationType(StrEnum):
    """Category of a destination."""

    ACQUISITION = "ACQUISITION"
    DISSEMINATION = "DISSEMINATION"
    TIME_CRITICAL = "TIME_CRITICAL"


class HostType(StrEnum):
    """Role of a host."""

    DISSEMINATION = "DISSEMINATION"
    ACQUISITION = "ACQUISITION"
    REPLICATION = "REPLICATION"
    SOURCE = "SOURCE"
    BACKUP = "BACKUP"
    PROXY = "PROXY"


class OnHostFailure(StrEnum):
    """What the scheduler does after a failover once a transfer succeeds: stay on the next host,
    or retry the primary."""

    NEXT_AND_STAY = "NEXT_AND_STAY"
    NEXT_AND_RETRY = "NEXT_AND_RETRY"


class IfTargetExists(StrEnum):
    """What a mover does when the target already exists remotely."""

    OVERWRITE = "OVERWRITE"
    RESUME = "RESUME"


class DeleteFromSpool(StrEnum):
    """When stored content of a destination's files is deleted."""

    ON_EXPIRATION = "ON_EXPIRATION"
    ON_SUCCESS = "ON_SUCCESS"


class PortalOperation(StrEnum):
    """An operation a data user may perform through the portal."""

    DELETE = "DELETE"
    DIR = "DIR"
    GET = "GET"
    MKDIR = "MKDIR"
    MTIME = "MTIME"
    PUT = "PUT"
    RENAME = "RENAME"
    RMDIR = "RMDIR"
    SIZE = "SIZE"


class PortalService(StrEnum):
    """How a data user signs in to the portal."""

    STANDARD_LOGIN = "STANDARD_LOGIN"
    OPEN_ACCESS = "OPEN_ACCESS"
    SELF_SERVICE = "SELF_SERVICE"


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedSecret:
    """A credential encrypted with the operator's key; never clear text."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.EncryptedSecret"

    key_id: str  # which operator key encrypted it (for rotation)
    ciphertext: bytes  # the encrypted credential


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeWindow:
    """A UTC time window in which a destination may transfer."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.TimeWindow"

    start_minute: int  # minutes after midnight UTC, 0-1439
    end_minute: int  # minutes after midnight UTC, exclusive; smaller than start = crosses midnight
    weekdays: tuple[int, ...] = ()  # ISO weekdays 1-7 it applies to; empty = every day


@dataclass(frozen=True, slots=True, kw_only=True)
class Alias:
    """Whatever is queued to the destination is also queued to the aliased one."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.Alias"

    destination: str  # the aliased destination
    pattern: str | None = None  # regex on the target; null = every file


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    """How a destination publishes notifications."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.MqttSettings"

    publish: bool
    topic: str | None = None  # default <destination>/; trailing / appends the target
    qos: int = 1
    retain: bool = False
    expiry_interval_ms: int | None = None  # null = remaining transfer lifetime
    content_type: str | None = None
    payload: str | None = None  # static payload; null = WIS2 notification built by ecpds


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """A named queue and transfer scheduler delivering to one remote place (or a portal bucket)."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.Destination"

    name: str
    type: DestinationType
    transfer_group: str
    country: str | None = None  # ISO 3166 code
    owner: str | None = None
    comment: str = ""
    active: bool = True
    max_connections: int = 5  # parallel transfers; < 0 unlimited
    retry_count: int = -1  # host-list cycles before HOLD; -1 infinite
    retry_frequency_ms: int = 30000
    max_start: int = 2  # starts per transfer before it is delayed
    start_frequency_ms: int = 600000
    max_requeue: int = 0  # 0 unlimited
    max_pending: int = 10000
    max_file_size: int | None = None  # bytes; null = no limit
    on_host_failure: OnHostFailure = OnHostFailure.NEXT_AND_STAY
    reset_frequency_ms: int = 1200000  # back to the primary host after this
    max_inactivity_ms: int | None = None
    if_target_exists: IfTargetExists = IfTargetExists.OVERWRITE
    delete_from_spool: DeleteFromSpool = DeleteFromSpool.ON_EXPIRATION
    compression: Compression = Compression.NONE
    active_windows: tuple[TimeWindow, ...] = ()  # empty = always
    default_lifetime_ms: int = 172800000
    standby: bool = False
    aliases: tuple[Alias, ...] = ()
    backup: bool = False
    mqtt: MqttSettings | None = None
    source_host: str | None = None
    group_by_date: bool = False
    date_format: str = "yyyyMMdd"
    # extra options (scheduler.*, incoming.*, portal.*)
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """A connection profile: where and how to connect."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.Host"

    id: str
    nickname: str
    type: HostType
    # URL scheme of the transfer module: ftp, ftps, sftp, http, https, s3, az, gs, file, memory
    protocol: str
    address: str  # host[:port] (or bucket/container for cloud stores)
    login: str | None = None
    credentials: EncryptedSecret | None = None
    directory: str = ""  # Host Directory field (template / listing lines)
    options: Mapping[str, str] = field(default_factory=dict)  # protocol options, e.g. sftp.mkdirs
    max_connections: int = 5
    retry_count: int = 3
    retry_frequency_ms: int = 60000
    polling_frequency_ms: int | None = None  # acquisition hosts only
    active: bool = True
    transfer_group: str | None = None
    network_code: str | None = None
    comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Association:
    """Links a host to a destination; lower priority is tried first."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.Association"

    destination: str
    host: str
    priority: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferGroup:
    """A pool of movers (a region) sharing stores."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.TransferGroup"

    name: str
    region: str | None = None
    stores: tuple[str, ...] = ()  # store names, primary first
    backup_host: str | None = None
    backup: bool = False
    replicate: bool = False
    min_replication_count: int = 0
    active: bool = True
    comment: str = ""
    # a regional (continental) group: its movers read from this store, the replicator
    # pre-stages its destinations' objects into it
    replica_store: str | None = None
    # where a transfer's next attempt goes after ``fallback_after`` failed attempts here, or at
    # once when none of this group's movers is alive (OpenECPDS's proxy fallback)
    fallback_group: str | None = None
    fallback_after: int = 3
    # wis2.*: how its destinations' files are published on WIS2, key by key unless a
    # destination declares the key itself (``bus.config.wis2.settings_for``)
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def regional(self) -> bool:
        """Whether this is a regional (continental) group: it has a replica or a fallback."""
        return self.replica_store is not None or self.fallback_group is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class DataUser:
    """A remote site's portal account."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.DataUser"

    login: str
    # argon2 hash in clear: read from events written before hashes were encrypted, never written
    password_hash: str | None = None
    ssh_authorized_keys: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    operations: tuple[PortalOperation, ...] = ()
    portal_service: PortalService = PortalService.STANDARD_LOGIN
    active: bool = True
    country: str | None = None
    comment: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)  # portal.* options
    password_secret: EncryptedSecret | None = None  # the argon2 hash, encrypted (operator key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A data policy granting users access to destinations."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.Policy"

    id: str
    active: bool = True
    destinations: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    comment: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostKey:
    """A host's SSH host key, by its public fingerprint only (never key material)."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.HostKey"

    host_id: str
    address: str  # host[:port] of the host's address the key was seen at (base path cut off)
    key_type: str  # e.g. ssh-ed25519; empty when an operator trusted a fingerprint alone
    fingerprint: str  # SHA256:base64, as ssh-keygen -l prints it


NAMED_TYPES: Mapping[str, type] = {
    "ecpds.config.DestinationType": DestinationType,
    "ecpds.config.HostType": HostType,
    "ecpds.config.OnHostFailure": OnHostFailure,
    "ecpds.config.IfTargetExists": IfTargetExists,
    "ecpds.config.DeleteFromSpool": DeleteFromSpool,
    "ecpds.config.PortalOperation": PortalOperation,
    "ecpds.config.PortalService": PortalService,
    "ecpds.config.EncryptedSecret": EncryptedSecret,
    "ecpds.config.TimeWindow": TimeWindow,
    "ecpds.config.Alias": Alias,
    "ecpds.config.MqttSettings": MqttSettings,
    "ecpds.config.Destination": Destination,
    "ecpds.config.Host": Host,
    "ecpds.config.Association": Association,
    "ecpds.config.TransferGroup": TransferGroup,
    "ecpds.config.DataUser": DataUser,
    "ecpds.config.Policy": Policy,
    "ecpds.config.HostKey": HostKey,
}
