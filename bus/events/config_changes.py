"""Configuration events (topic ``ecpds.config``, compacted, key ``kind/id``).

Each Defined/Changed event carries the entity's full definition, so the latest event per key
is the current state and compaction keeps it; Changed also names the fields that changed
(the audit trail).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from bus.events.base import Event
from bus.events.config import (
    Association,
    DataUser,
    Destination,
    Host,
    HostKey,
    Policy,
    TransferGroup,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationDefined(Event):
    """A destination was defined (created); carries its full definition."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.DestinationDefined"

    destination: Destination
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationChanged(Event):
    """A destination was changed; carries its full new definition and the names of the fields that
    changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.DestinationChanged"

    destination: Destination
    changed_fields: tuple[str, ...] = ()
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationRemoved(Event):
    """A destination was removed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.DestinationRemoved"

    name: str
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class HostDefined(Event):
    """A host was defined (created); carries its full definition."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.HostDefined"

    host: Host
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class HostChanged(Event):
    """A host was changed; carries its full new definition and the names of the fields that
    changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.HostChanged"

    host: Host
    changed_fields: tuple[str, ...] = ()
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRemoved(Event):
    """A host was removed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.HostRemoved"

    id: str
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationDefined(Event):
    """A association was defined (created); carries its full definition."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.AssociationDefined"

    association: Association
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationChanged(Event):
    """A association was changed; carries its full new definition and the names of the fields that
    changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.AssociationChanged"

    association: Association
    changed_fields: tuple[str, ...] = ()
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationRemoved(Event):
    """A association was removed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.AssociationRemoved"

    destination: str
    host: str
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferGroupDefined(Event):
    """A transfer group was defined (created); carries its full definition."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.TransferGroupDefined"

    transfer_group: TransferGroup
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferGroupChanged(Event):
    """A transfer group was changed; carries its full new definition and the names of the fields
    that changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.TransferGroupChanged"

    transfer_group: TransferGroup
    changed_fields: tuple[str, ...] = ()
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferGroupRemoved(Event):
    """A transfer group was removed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.TransferGroupRemoved"

    name: str
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class DataUserDefined(Event):
    """A data user was defined (created); carries its full definition."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.DataUserDefined"

    data_user: DataUser
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class DataUserChanged(Event):
    """A data user was changed; carries its full new definition and the names of the fields that
    changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.DataUserChanged"

    data_user: DataUser
    changed_fields: tuple[str, ...] = ()
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class DataUserRemoved(Event):
    """A data user was removed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.DataUserRemoved"

    login: str
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDefined(Event):
    """A policy was defined (created); carries its full definition."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.PolicyDefined"

    policy: Policy
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyChanged(Event):
    """A policy was changed; carries its full new definition and the names of the fields that
    changed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.PolicyChanged"

    policy: Policy
    changed_fields: tuple[str, ...] = ()
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRemoved(Event):
    """A policy was removed."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.PolicyRemoved"

    id: str
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class HostKeyLearned(Event):
    """A host's SSH host key was seen on the first connection to its address and is pinned
    from now on (a key learnt later for the same address changes nothing: the first wins)."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.HostKeyLearned"

    key: HostKey


@dataclass(frozen=True, slots=True, kw_only=True)
class HostKeyTrusted(Event):
    """An operator accepted a host key for a host (``ecpds host trust-key``); it is pinned
    from now on, replacing the one learnt or trusted before."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.HostKeyTrusted"

    key: HostKey
    actor: str | None = None  # operator who made the change; null = the system


@dataclass(frozen=True, slots=True, kw_only=True)
class HostKeyRefused(Event):
    """A connection was refused because the host offered another key than the pinned one;
    it stays refused until an operator trusts the new key."""

    AVRO_NAME: ClassVar[str] = "ecpds.config.HostKeyRefused"

    key: HostKey  # the key the host offered
    expected: str  # fingerprint of the pinned key


EVENTS: tuple[type[Event], ...] = (
    DestinationDefined,
    DestinationChanged,
    DestinationRemoved,
    HostDefined,
    HostChanged,
    HostRemoved,
    AssociationDefined,
    AssociationChanged,
    AssociationRemoved,
    TransferGroupDefined,
    TransferGroupChanged,
    TransferGroupRemoved,
    DataUserDefined,
    DataUserChanged,
    DataUserRemoved,
    PolicyDefined,
    PolicyChanged,
    PolicyRemoved,
    HostKeyLearned,
    HostKeyTrusted,
    HostKeyRefused,
)
NAMED_TYPES: Mapping[str, type] = {}
