"""Event types of ecpds: frozen dataclasses mirroring ``schemas/*.avsc``, and their registry.

Conventions (kept by ``tests/bus/test_schemas.py``): snake_case fields named as in the schema;
``timestamp-micros`` -> UTC-aware ``datetime``; enums -> ``StrEnum``; nullable -> ``X | None``
defaulting to ``None``; arrays -> ``tuple[X, ...]``; maps -> ``Mapping[str, X]`` (a ``dict``).
Every event class has ``AVRO_NAME``, its Avro full name, and an ``envelope``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType

from bus.events import (
    acquisition,
    base,
    config,
    config_changes,
    datafiles,
    deadletter,
    movers,
    notifications,
    orders,
    portal,
    products,
    requests,
    transfers,
)
from bus.events.base import Envelope, Event

_MODULES = (
    base,
    config,
    config_changes,
    datafiles,
    acquisition,
    transfers,
    requests,
    orders,
    portal,
    notifications,
    movers,
    deadletter,
    products,
)

EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType(
    {cls.AVRO_NAME: cls for module in _MODULES for cls in getattr(module, "EVENTS", ())}
)
"""Every event class by its Avro full name."""

NAMED_TYPES: Mapping[str, type] = MappingProxyType(
    {name: cls for module in _MODULES for name, cls in module.NAMED_TYPES.items()}
)
"""Shared records and enums (not events themselves) by their Avro full name."""


def envelope(source: str, correlation_id: str, causation_id: str | None = None) -> Envelope:
    """A new envelope: a fresh uuid4 event id, stamped now (UTC)."""
    return Envelope(
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        source=source,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


__all__ = ["EVENT_TYPES", "NAMED_TYPES", "Envelope", "Event", "envelope"]
