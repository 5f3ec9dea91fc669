"""The replicator's one effect: put a verified copy of an object into another store.

Rules kept: the copy streams from the object's store and is checked against the size and
ADLER32 recorded in ``DataFileStored`` (``ReplicatedStore.replicate`` checks it against the
source's own metadata; this checks the source still is what the log recorded); a copy that
does not match is deleted and ``ObjectCorrupt`` (retriable) raised. A replica that already
holds the object with the recorded size and ADLER32 is left alone (a redelivery), so copying
is idempotent.
"""

from __future__ import annotations

import contextlib

from bus.errors import EcpdsError
from consumers.replicator.core import ReplicationJob
from store.errors import ObjectCorrupt, ObjectNotFound
from store.objects import ObjectId, object_id
from store.ports import ObjectStore
from store.replicated import ReplicatedStore


async def holds(replica: ObjectStore, oid: ObjectId, job: ReplicationJob) -> bool:
    """Whether ``replica`` already has the object with the recorded size and ADLER32."""
    try:
        meta = await replica.stat(oid)
    except ObjectNotFound:
        return False
    return meta.size == job.size and meta.checksums.adler32 == job.adler32


async def copy(source: ObjectStore, replica: ObjectStore, job: ReplicationJob) -> bool:
    """Put ``job``'s object into ``replica``; False if it was there already."""
    oid = object_id(job.guid)
    if await holds(replica, oid, job):
        return False
    meta = await ReplicatedStore(source).replicate(oid, to=replica)
    if meta.size != job.size or meta.checksums.adler32 != job.adler32:
        with contextlib.suppress(EcpdsError):
            await replica.delete(oid)
        raise ObjectCorrupt(
            f"object {oid} in {job.source} no longer matches its recorded size and ADLER32"
            f" ({job.size} bytes, {job.adler32})"
        )
    with contextlib.suppress(EcpdsError):  # the copy lists every location too
        await replica.update(meta)
    return True
