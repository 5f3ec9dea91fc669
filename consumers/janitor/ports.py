"""What the janitor needs from outside: the current configuration, the stores and a clock.

The object store is ``store.ports.ObjectStore``; replicas in other stores are reached by name
through ``Stores`` (``store.named.NamedStores`` in production); the configuration is a
``bus.config.source.ConfigSource``; temporary files movers left on hosts are removed through
``HostFileRemover``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from bus.events.config import Host
from store.ports import ObjectStore


class Stores(Protocol):
    """Object stores by name (the transfer group's stores holding replicas)."""

    def store_for(self, name: str) -> ObjectStore: ...


class HostFileRemover(Protocol):
    """Removes one file on a destination host (a path already gone counts as removed);
    ``consumers.janitor.hosts.HostFiles`` in production."""

    async def remove(self, host: Host, path: str) -> None: ...


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, UTC (the runner's only source of ``now``)."""
    return datetime.now(UTC)
