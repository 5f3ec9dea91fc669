"""The registry of projection handlers: Avro event type -> pure function returning SQL writes.

Every type in ``bus.events.EVENT_TYPES`` has exactly one handler (a test keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from projections.handlers import (
    acquisition,
    config,
    datafiles,
    deadletter,
    destinations,
    movers,
    notifications,
    orders,
    portal,
    products,
    requests,
    timeline,
    transfers,
)
from projections.handlers.base import Handler, Write

_MODULES = (
    config,
    datafiles,
    acquisition,
    transfers,
    destinations,
    requests,
    orders,
    portal,
    notifications,
    movers,
    deadletter,
    products,
)


def _registry() -> Mapping[str, Handler]:
    found: dict[str, Handler] = {}
    for module in _MODULES:
        for name, handler in module.HANDLERS.items():
            if name in found:
                raise ValueError(f"two handlers for {name}")
            found[name] = timeline.with_history(handler)
    return MappingProxyType(found)


HANDLERS: Mapping[str, Handler] = _registry()
"""The handler of every event type, by Avro full name."""

__all__ = ["HANDLERS", "Handler", "Write"]
