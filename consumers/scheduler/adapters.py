"""Small adapters between the scheduler's core and Kafka: topic names, where each decision is
published, the orders topics created on first use, and the stored-file facts a queued event
carries.

Rule kept here: ``TransferOrdered`` goes to the orders topic of its transfer group, every other
decision to the transfers topic, all keyed by destination (one destination, one partition, in
order). The consumer group's assignment places whole groups of partitions (``placement``)
through ``place_whole_groups``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, replace

from faust.assignor import partition_assignor
from faust.assignor.client_assignment import CopartitionedAssignment
from faust.assignor.copartitioned_assignor import CopartitionedAssignor

from bus.errors import TransientError
from bus.events.base import Event
from bus.events.datafiles import Checksums
from bus.events.movers import TransferAbortRequested
from bus.events.orders import TransferOrdered
from bus.events.transfers import TransferQueued
from bus.topics import (
    CONFIG,
    MOVERS,
    ORDERS_PREFIX,
    SCHEDULER_SNAPSHOTS,
    TRANSFERS,
    TopicSpec,
    apply_topics,
    catalogue,
    orders_topic,
    partition_counts,
)
from consumers.scheduler.placement import spread
from consumers.scheduler.state import StoredFile


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics the scheduler reads and writes (tests use their own names)."""

    transfers: str = TRANSFERS
    config: str = CONFIG
    movers: str = MOVERS
    orders_prefix: str = ORDERS_PREFIX
    snapshots: str = SCHEDULER_SNAPSHOTS

    def orders(self, transfer_group: str) -> str:
        """The orders topic of a transfer group."""
        return f"{self.orders_prefix}{transfer_group}"

    def route(self, decision: Event) -> tuple[str, str]:
        """The topic and key a decision is published with."""
        key: str = decision.destination  # type: ignore[attr-defined]
        if isinstance(decision, TransferOrdered):
            return self.orders(decision.transfer_group), key
        if isinstance(decision, TransferAbortRequested):  # every mover reads them
            return self.movers, decision.mover_id or key
        return self.transfers, key

    def inputs(self, partitions: int) -> list[TopicSpec]:
        """The declarations of the topics the scheduler reads, under these names."""
        by_name = {s.name: s for s in catalogue(partitions)}
        pairs = ((TRANSFERS, self.transfers), (CONFIG, self.config), (MOVERS, self.movers))
        return [replace(by_name[default], name=name) for default, name in pairs]

    def snapshots_spec(self, partitions: int) -> TopicSpec:
        """The declaration of the snapshots topic, under this name."""
        spec = next(s for s in catalogue(partitions) if s.name == SCHEDULER_SNAPSHOTS)
        return replace(spec, name=self.snapshots)


class OrdersTopics:
    """Creates a transfer group's orders topic the first time it gets an order. An existing
    topic is left as it is: aligning it is ``ecpds up``'s job, and workers would race."""

    def __init__(
        self, bootstrap: str, topics: Topics, partitions: int, replication: int = 1
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._partitions = partitions
        self._replication = replication  # copies of a topic made here (a cluster's factor)
        self._ensured: set[str] = {topics.transfers, topics.movers}  # declared inputs

    async def ensure(self, names: Iterable[str]) -> None:
        """Make sure the named topics exist (``TransientError`` if that cannot be done now)."""
        missing = set(names) - self._ensured
        if not missing:
            return
        prefix = self._topics.orders_prefix
        try:
            existing = await partition_counts(self._bootstrap, sorted(missing))
            specs = [
                replace(orders_topic(t.removeprefix(prefix), self._partitions), name=t)
                for t in sorted(missing)
                if not existing.get(t)
            ]
            if specs:
                await apply_topics(self._bootstrap, specs, replication=self._replication)
        except Exception as error:
            raise TransientError(f"creating {sorted(missing)}: {error}") from error
        self._ensured |= missing


def stored_file(ev: TransferQueued) -> StoredFile | None:
    """Where a queued transfer's bytes are, when its event says so (the core takes stored
    files from ``DataFileStored``; a queued event that carries them spares that join)."""
    if ev.guid is None:
        return None
    return StoredFile(
        data_file_id=ev.data_file_id,
        guid=ev.guid,
        store=ev.store or "",
        location=ev.location or "",
        checksums=ev.checksums or Checksums(adler32=""),
        original=ev.original,
        metadata=dict(ev.metadata),
    )


# -- placement: whole groups of partitions per worker (``placement``) ---------------------------

Grouping = Callable[[int], Sequence[frozenset[int]]]  # partition count -> groups
_PLACED: dict[str, Grouping] = {}  # topic -> its current groups (the runner keeps them)
_installed = False


def place_whole_groups(topic: str, grouping: Grouping) -> None:
    """Make faust's assignor hand out ``topic``'s partitions in the whole groups ``grouping``
    returns for the topic's partition count (``placement.spread``), in every rebalance this
    process leads.

    faust's ``PartitionAssignor`` gives each set of co-partitioned topics to a
    ``CopartitionedAssignor`` (balanced and sticky); for a placed topic, the one its module
    uses is swapped (once per process) for one that places whole groups. ``grouping`` runs in
    the consumer's thread: it must read a snapshot, never the live state. faust is pinned
    (``tests/scheduler/test_placement.py`` runs two workers through it).
    """
    global _installed
    _PLACED[topic] = grouping
    if _installed:
        return

    class WholeGroups(CopartitionedAssignor):
        def get_assignment(self) -> MutableMapping[str, CopartitionedAssignment]:
            placed = [_PLACED[t] for t in self.topics if t in _PLACED]
            if len(self.topics) != 1 or not placed:
                return super().get_assignment()
            owned = spread(placed[0](self.num_partitions), list(self._client_assignments))
            for member, assignment in self._client_assignments.items():
                assignment.actives = set(owned[member])
                assignment.standbys = set()
            return self._client_assignments

    partition_assignor.CopartitionedAssignor = WholeGroups  # type: ignore[attr-defined]
    _installed = True
