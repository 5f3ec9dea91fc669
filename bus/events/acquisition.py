"""Acquisition events (topic ``ecpds.acquisition``, key: host id).

Listings (counts, duration, errors), discoveries and retrievals, each with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from bus.events.base import Event


class DiscoveryReason(StrEnum):
    """Why a listed file is (re)acquired: never seen, or rewritten at the provider per the requeue
    rule."""

    NEW = "NEW"
    REWRITTEN = "REWRITTEN"


class Completeness(StrEnum):
    """What vouched that a retrieved file was whole at the provider (``acquisition.stable``,
    ``fileage``, ``companion``; a WIS2 notification)."""

    STABLE = "STABLE"  # size and time unchanged across listings ``stableInterval`` apart
    AGE = "AGE"  # older than the lower bound of ``fileage``
    COMPANION = "COMPANION"  # its companion file was listed beside it
    NOTIFIED = "NOTIFIED"  # a notification announced it (WIS2)
    LISTED = "LISTED"  # nothing: taken as listed (``stable=no`` and no other rule)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListingCompleted(Event):
    """One poll of an acquisition host finished (successfully or not)."""

    AVRO_NAME: ClassVar[str] = "ecpds.acquisition.ListingCompleted"

    host_id: str
    destination: str
    started_at: datetime
    duration_ms: int
    entries_listed: int = 0
    files_matched: int = 0
    files_new: int = 0
    errors: tuple[str, ...] = ()
    timed_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FileDiscovered(Event):
    """A listing or a notification found a file to acquire."""

    AVRO_NAME: ClassVar[str] = "ecpds.acquisition.FileDiscovered"

    host_id: str
    destination: str
    path: str  # remote path or URL
    name: str
    size: int | None = None
    modified_at: datetime | None = None
    reason: DiscoveryReason = DiscoveryReason.NEW
    data_file_id: str | None = None
    target: str | None = None
    data_id: str | None = None  # WIS2 data_id when notification-driven
    checksum_method: str | None = None  # WIS2 integrity method
    checksum_value: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrievalSucceeded(Event):
    """A discovered file was retrieved into the store."""

    AVRO_NAME: ClassVar[str] = "ecpds.acquisition.RetrievalSucceeded"

    host_id: str
    destination: str
    path: str
    data_file_id: str
    size: int
    duration_ms: int
    deleted_original: bool = False
    completeness: Completeness | None = None  # null: written before the rule was recorded


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrievalFailed(Event):
    """A discovered file could not be retrieved."""

    AVRO_NAME: ClassVar[str] = "ecpds.acquisition.RetrievalFailed"

    host_id: str
    destination: str
    path: str
    error_class: str
    message: str
    retriable: bool
    duration_ms: int
    data_file_id: str | None = None
    expected_size: int | None = None
    received_size: int | None = None


EVENTS: tuple[type[Event], ...] = (
    ListingCompleted,
    FileDiscovered,
    RetrievalSucceeded,
    RetrievalFailed,
)
NAMED_TYPES: Mapping[str, type] = {
    "ecpds.acquisition.DiscoveryReason": DiscoveryReason,
    "ecpds.acquisition.Completeness": Completeness,
}
