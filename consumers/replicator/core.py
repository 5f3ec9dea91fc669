"""The replicator's pure core: which stores need a copy of a stored data file, in what order,
and the outcome events.

Rules kept (ECPDS-REFERENCE.md §6.1, ReplicateScheduler of §2.6):

- A stored data file (``DataFileStored``) is replicated when its transfer group (the one it was
  registered in, else its destination's) is active and has ``replicate`` set.
- The group's ``stores`` are primary first. The candidates are the stores listed *after* the
  one the object is in; an object stored outside the list (e.g. the default local store when
  the group names only remote ones) is copied to every listed store.
- ``min_replication_count`` is how many secondary copies the policy wants; 0 means one in
  every candidate. Candidates are taken in list order; a store that fails for good is
  replaced by the next candidate, so a dead replica does not leave the file under-replicated
  while another store is available.
- Stores already known to hold a copy count as done: a file replicated enough is skipped.
- Retries: a failure whose error is ``retriable`` is tried again under
  ``bus.retry.RetryPolicy`` (doubling, capped) until its ``max_attempts``; then, or at once for
  a permanent failure, the store has failed.
- Each copy is recorded by one ``DataFileReplicated`` whose event id is derived from the file
  and the store, so a copy recorded twice after a redelivery is recognisably the same fact.
- Pre-staging (continental movers): a file of a regional group (one naming a ``replica_store``)
  is copied into that replica as soon as it is stored, ahead of its transfers' scheduled time,
  first of the candidates; the copy is also recorded by a ``DataFileStaged`` keyed by the
  destination (the scheduler orders the transfer to the region once it is there). A group
  may both replicate and stage.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from bus.config.view import ConfigView
from bus.events.base import Envelope
from bus.events.datafiles import DataFileReplicated, DataFileStored
from bus.events.transfers import DataFileStaged

_NAMESPACE = uuid.UUID("3f0c2a57-9d1e-4b8a-a6c4-51e0f8d2b7a9")


@dataclass(frozen=True, slots=True)
class ReplicationJob:
    """Copy one stored object to ``wanted`` of the ``candidates`` stores (in order)."""

    data_file_id: str
    guid: str  # object id, the same in every store
    source: str  # the store the object is in (``DataFileStored.store``)
    transfer_group: str
    candidates: tuple[str, ...]  # configured store names, in policy order
    wanted: int
    done: tuple[str, ...]  # candidates already holding a copy
    size: int
    adler32: str
    causation_id: str
    staging: str | None = None  # the regional replica among the candidates, if any
    destination: str = ""  # whose transfers the staged copy is for


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a stored data file is not replicated."""

    reason: str


def destination_of(object_name: str) -> str:
    """The destination of a stored object named ``<destination>/<target>`` by the ingest."""
    return object_name.split("/", 1)[0]


def group_of(destination: str, view: ConfigView) -> str | None:
    """The transfer group of ``destination`` in the current configuration."""
    found = view.destinations.get(destination)
    return found.transfer_group if found is not None else None


def replicating(view: ConfigView) -> bool:
    """Whether any active transfer group replicates or stages (else nothing needs a look)."""
    return any(
        (g.replicate or g.replica_store is not None) and g.active
        for g in view.transfer_groups.values()
    )


def plan(
    stored: DataFileStored,
    transfer_group: str | None,
    view: ConfigView,
    located_in: Callable[[str], bool],
    already: Collection[str] = (),
    destination: str = "",
) -> ReplicationJob | Skip:
    """The replication (and pre-staging) job for a stored file, or why there is none.

    ``located_in(name)`` says whether configured store ``name`` is the store the object is in;
    ``already`` names stores known to hold a copy; ``destination`` is whose file it is.
    """
    if transfer_group is None:
        return Skip(f"data file {stored.data_file_id} has no known transfer group")
    group = view.transfer_groups.get(transfer_group)
    if group is None:
        return Skip(f"unknown transfer group {transfer_group}")
    if not group.active:
        return Skip(f"transfer group {group.name} is not active")
    staging = group.replica_store
    if staging is not None and located_in(staging):
        staging = None  # stored in the region already
    if not group.replicate and staging is None:
        return Skip(f"transfer group {group.name} does not replicate")
    candidates: tuple[str, ...] = ()
    wanted = 0
    if group.replicate:
        position = next((i for i, s in enumerate(group.stores) if located_in(s)), None)
        after = group.stores if position is None else group.stores[position + 1 :]
        candidates = tuple(s for s in after if not located_in(s) and s != staging)
        wanted = len(candidates)
        if group.min_replication_count > 0:
            wanted = min(group.min_replication_count, len(candidates))
    if staging is not None:
        candidates, wanted = (staging, *candidates), wanted + 1
    if not candidates:
        return Skip(f"no store after {stored.store} in transfer group {group.name}")
    done = tuple(s for s in candidates if s in already)
    if len(done) >= wanted:
        return Skip(f"already replicated to {', '.join(done)}")
    return ReplicationJob(
        data_file_id=stored.data_file_id,
        guid=stored.guid or stored.data_file_id,
        source=stored.store,
        transfer_group=group.name,
        candidates=candidates,
        wanted=wanted,
        done=done,
        size=stored.size,
        adler32=stored.checksums.adler32,
        causation_id=stored.envelope.event_id,
        staging=staging,
        destination=destination,
    )


def next_targets(
    job: ReplicationJob, done: Collection[str], failed: Collection[str]
) -> tuple[str, ...]:
    """The stores to copy to now: enough untried candidates, in order, to reach ``wanted``."""
    missing = job.wanted - sum(1 for s in job.candidates if s in done)
    if missing <= 0:
        return ()
    untried = [s for s in job.candidates if s not in done and s not in failed]
    return tuple(untried[:missing])


def replicated(
    job: ReplicationJob, to_store: str, duration_ms: int, now: datetime, source: str
) -> DataFileReplicated:
    """The event recording the copy of ``job``'s object in ``to_store``.

    ``to_store`` is the configured store name (resolvable by ``store.named.NamedStores``);
    ``location`` is the object's key there, like ``DataFileStored.location``.
    """
    return DataFileReplicated(
        envelope=Envelope(
            # a redelivered file decided again gets the same id: consumers can tell a duplicate
            event_id=str(uuid.uuid5(_NAMESPACE, f"replicated/{job.data_file_id}/{to_store}")),
            occurred_at=now,
            source=source,
            correlation_id=job.data_file_id,
            causation_id=job.causation_id,
        ),
        data_file_id=job.data_file_id,
        guid=job.guid,
        from_store=job.source,
        to_store=to_store,
        location=job.guid,
        size=job.size,
        duration_ms=duration_ms,
    )


def staged(job: ReplicationJob, copy: DataFileReplicated) -> DataFileStaged:
    """The event telling the destination's scheduler that ``copy`` pre-staged ``job``'s object
    in its regional group's replica (its id derived like the copy's)."""
    return DataFileStaged(
        envelope=Envelope(
            event_id=str(uuid.uuid5(_NAMESPACE, f"staged/{job.data_file_id}/{copy.to_store}")),
            occurred_at=copy.envelope.occurred_at,
            source=copy.envelope.source,
            correlation_id=job.data_file_id,
            causation_id=copy.envelope.event_id,
        ),
        data_file_id=job.data_file_id,
        destination=job.destination,
        transfer_group=job.transfer_group,
        store=copy.to_store,
        from_store=copy.from_store,
        size=copy.size,
        duration_ms=copy.duration_ms,
    )


def failure_message(job: ReplicationJob, done: Collection[str], failed: Mapping[str, str]) -> str:
    """Why ``job`` ended short of its policy (the dead letter's message)."""
    reasons = "; ".join(f"{store}: {why}" for store, why in failed.items())
    return (
        f"data file {job.data_file_id}: {len(done)} of {job.wanted} copies wanted by transfer"
        f" group {job.transfer_group} were made ({reasons})"
    )
