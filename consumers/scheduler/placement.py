"""Which scheduler worker decides for which destinations: all that share a host, one worker.

Rule kept here: a host's connection limit is counted by one worker only. ``ecpds.transfers``
is keyed by destination, so a partition holds many destinations and a host is shared by
destinations in many partitions. The partitions linked through a shared host form a *group*
(``groups``: union-find over the hosts' destinations); the scheduler's consumer group hands
out whole groups (``spread``), so the worker that owns one destination of a host owns every
destination of it, and its own count of the host's running attempts is the host's count.

Why this, over slot grants on a host-keyed topic or leases (README, "Scaling out"): nothing
new is on the order path (no request/grant round trip per file, no lease to renew or expire),
and the failure cases are the ones the single worker already handles: a worker that dies
holding slots is replaced by one that replays the same partitions and counts the same running
attempts; a rebalance is eager (every partition is revoked before any is assigned), so two
workers never decide for one group at once. The cost: a group is decided by one worker, so a
host shared by every destination caps the scheduling of those destinations at one worker's
pace (the movers still run in parallel); hosts are per site at an operational centre, and
groups stay small.

A configuration change can join two groups owned by different workers (a new association):
the worker that sees it owns part of a group (``whole`` is False), stops deciding and asks for
a rebalance, in which the leader regroups with the new configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

try:  # Kafka's key hash compiled (native/avro), as the publisher uses
    from ecpds_avro import murmur2
except ImportError:  # pragma: no cover - without the compiled module
    from aiokafka.partitioner import murmur2  # type: ignore[no-redef]


def partition_of(destination: str, partitions: int) -> int:
    """The partition of ``ecpds.transfers`` a destination's events go to (Kafka's default)."""
    return (murmur2(destination.encode()) & 0x7FFFFFFF) % partitions


def groups(host_destinations: Mapping[str, Iterable[str]], partitions: int) -> list[frozenset[int]]:
    """The partitions linked by shared hosts, every partition in exactly one group (sorted by
    their smallest partition)."""
    parent = list(range(partitions))

    def root(p: int) -> int:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for destinations in host_destinations.values():
        linked = {partition_of(d, partitions) for d in destinations}
        first = min(linked, default=None)
        for p in linked:
            a, b = root(first), root(p)  # type: ignore[arg-type]
            if a != b:
                parent[max(a, b)] = min(a, b)
    found: dict[int, set[int]] = {}
    for p in range(partitions):
        found.setdefault(root(p), set()).add(p)
    return sorted((frozenset(g) for g in found.values()), key=min)


def spread(found: Sequence[frozenset[int]], members: Sequence[str]) -> dict[str, set[int]]:
    """Whole groups to members: the largest group first, each to the member with the fewest
    partitions so far (ties: the member named first). The same input, the same answer."""
    owned: dict[str, set[int]] = {m: set() for m in sorted(members)}
    if not owned:
        return owned
    for group in sorted(found, key=lambda g: (-len(g), min(g))):
        member = min(owned, key=lambda m: (len(owned[m]), m))
        owned[member] |= group
    return owned


def whole(found: Sequence[frozenset[int]], owned: Iterable[int]) -> bool:
    """Whether ``owned`` is made of whole groups (no group split with another worker)."""
    mine = set(owned)
    return all(group <= mine or not group & mine for group in found)
