"""Operator requests (topic ``ecpds.transfers``, key: destination).

A request is a fact that someone asked; the scheduler answers with the resulting transfer
or host events, so the log shows both what was asked and what happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from bus.events.base import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldRequested(Event):
    """An operator asked to hold a transfer, or a whole destination when transfer_id is null."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.HoldRequested"

    destination: str
    transfer_id: str | None = None
    immediate: bool = False  # interrupt running transfers instead of letting them finish
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartRequested(Event):
    """An operator asked to restart a transfer, or a whole destination when transfer_id is null."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.RestartRequested"

    destination: str
    transfer_id: str | None = None
    immediate: bool = False  # interrupt running transfers instead of letting them finish
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRequested(Event):
    """An operator asked to stop a transfer, or a whole destination when transfer_id is null."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.StopRequested"

    destination: str
    transfer_id: str | None = None
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequeueRequested(Event):
    """An operator asked to requeue one transfer."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.RequeueRequested"

    transfer_id: str
    destination: str
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequeueFailedRequested(Event):
    """An operator asked to requeue every failed transfer of a destination."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.RequeueFailedRequested"

    destination: str
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityChangeRequested(Event):
    """An operator asked to change a transfer's priority."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.PriorityChangeRequested"

    transfer_id: str
    destination: str
    priority: int
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LifetimeExtensionRequested(Event):
    """An operator asked to move a transfer's expiry time."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.LifetimeExtensionRequested"

    transfer_id: str
    destination: str
    expiry_time: datetime
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StandbyReleaseRequested(Event):
    """An operator asked to release a held transfer (or all held ones of the destination when
    transfer_id is null)."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.StandbyReleaseRequested"

    destination: str
    transfer_id: str | None = None
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostActivationRequested(Event):
    """An operator asked to use a host again for a destination."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.HostActivationRequested"

    destination: str
    host_id: str
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostDeactivationRequested(Event):
    """An operator asked to stop using a host for a destination."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.HostDeactivationRequested"

    destination: str
    host_id: str
    requested_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPriorityChangeRequested(Event):
    """An operator asked to change a host's priority for a destination."""

    AVRO_NAME: ClassVar[str] = "ecpds.transfers.HostPriorityChangeRequested"

    destination: str
    host_id: str
    priority: int
    requested_by: str
    reason: str | None = None


EVENTS: tuple[type[Event], ...] = (
    HoldRequested,
    RestartRequested,
    StopRequested,
    RequeueRequested,
    RequeueFailedRequested,
    PriorityChangeRequested,
    LifetimeExtensionRequested,
    StandbyReleaseRequested,
    HostActivationRequested,
    HostDeactivationRequested,
    HostPriorityChangeRequested,
)
NAMED_TYPES: Mapping[str, type] = {}
