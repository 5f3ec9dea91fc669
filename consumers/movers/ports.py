"""What a mover needs from outside: the object stores orders point at.

An order names its store (``ObjectStore.name``, e.g. ``file:///var/store``) and the object id;
``Stores`` gives the backend for a name; ``store.named.NamedStores`` resolves any store name
(local folders, any transfer module's URL, a host id). ``Replicas`` gives the other stores of an
order's transfer group (when it replicates), which a read falls back to when the copy in the
order's store is missing or corrupt; ``GroupReplicas`` takes them from the live configuration,
and for a regional (continental) group gives its store replica instead (``staged``).
"""

from __future__ import annotations

from typing import Protocol

from bus.config.source import ConfigSource
from bus.errors import ConfigurationError
from bus.events.orders import TransferOrdered
from bus.logging import get_logger
from store.named import NamedStores
from store.ports import ObjectStore
from store.staged import StagedStore

log = get_logger(__name__)


class Stores(Protocol):
    """Object stores by name."""

    def store_for(self, name: str) -> ObjectStore: ...

    async def close(self) -> None: ...


class Replicas(Protocol):
    """The stores that may hold replicas of an order's object (none: no fallback)."""

    def replicas(self, order: TransferOrdered) -> list[ObjectStore]: ...

    def staged(self, order: TransferOrdered) -> ObjectStore | None:
        """A regional group's store replica, read instead of the order's store (None: none)."""
        ...


class GroupReplicas:
    """The transfer group's stores other than the order's, when the group replicates."""

    def __init__(self, stores: NamedStores, config: ConfigSource) -> None:
        self._stores = stores
        self._config = config

    def staged(self, order: TransferOrdered) -> ObjectStore | None:
        """The store replica of a regional (continental) group, as its movers read it
        (``store.staged``), or None for a group that has none."""
        group = self._config.view.transfer_groups.get(order.transfer_group)
        if group is None or group.replica_store is None:
            return None
        return StagedStore(self._stores.store_for(group.replica_store), order.store)

    def replicas(self, order: TransferOrdered) -> list[ObjectStore]:
        group = self._config.view.transfer_groups.get(order.transfer_group)
        if group is None or not group.replicate:
            return []
        found = []
        for name in group.stores:
            if self._stores.same(name, order.store):
                continue
            try:
                found.append(self._stores.store_for(name))
            except ConfigurationError as error:  # one bad store name must not fail the transfer
                log.warning("replica store skipped", store=name, error=str(error))
        return found
