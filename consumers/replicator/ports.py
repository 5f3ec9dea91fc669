"""What the replicator needs from outside: stores by name (and the configuration, through
``bus.config.source.ConfigSource``).

``store.named.NamedStores`` is the production ``Stores``.
"""

from __future__ import annotations

from typing import Protocol

from store.ports import ObjectStore


class Stores(Protocol):
    """Object stores by name, and which name designates which backend."""

    def store_for(self, name: str) -> ObjectStore: ...

    def same(self, name: str, backend: str) -> bool:
        """Whether store ``name`` resolves to the backend called ``backend``."""
        ...

    async def close(self) -> None: ...
