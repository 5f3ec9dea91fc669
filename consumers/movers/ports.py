"""What a mover needs from outside: the object stores orders point at.

An order names its store (``ObjectStore.name``, e.g. ``file:///var/store``) and the object id;
``Stores`` gives the backend for a name. ``LocalStores`` is the adapter for local-disk stores
(and the in-memory-free default for tests and single-machine runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bus.errors import ConfigurationError
from store.local import LocalStore
from store.ports import ObjectStore


class Stores(Protocol):
    """Object stores by name."""

    def store_for(self, name: str) -> ObjectStore: ...

    async def close(self) -> None: ...


class LocalStores:
    """Local-disk stores: ``file://<root>`` names, and ``""`` for the default root."""

    def __init__(self, default_root: Path) -> None:
        self._default = default_root
        self._open: dict[Path, LocalStore] = {}

    def store_for(self, name: str) -> ObjectStore:
        if not name:
            root = self._default
        elif name.startswith("file://"):
            root = Path(name.removeprefix("file://"))
        else:
            raise ConfigurationError("store", f"this mover cannot read store {name!r}")
        store = self._open.get(root)
        if store is None:
            store = self._open[root] = LocalStore(root, durable=False)
        return store

    async def close(self) -> None:
        for store in self._open.values():
            await store.close()
        self._open.clear()
