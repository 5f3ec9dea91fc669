"""What the replicator needs from outside: the current configuration and stores by name.

``store.named.NamedStores`` is the production ``Stores``; ``FixedConfig`` holds a view that
never changes (tests, demos), ``bus.config.view.LiveConfig`` the live one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bus.config.view import ConfigView
from store.ports import ObjectStore


class ConfigSource(Protocol):
    """Holds the latest configuration view."""

    @property
    def view(self) -> ConfigView: ...


class Stores(Protocol):
    """Object stores by name, and which name designates which backend."""

    def store_for(self, name: str) -> ObjectStore: ...

    def same(self, name: str, backend: str) -> bool:
        """Whether store ``name`` resolves to the backend called ``backend``."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class FixedConfig:
    """A configuration that never changes (tests, demos)."""

    view: ConfigView
