"""Where the scheduler's snapshots live: the compacted topic ``ecpds.scheduler.snapshots``, and
the replay of a transfers partition from a snapshot's offset on.

Layout: the snapshot of transfers partition ``p`` is written to partition ``p`` of the
snapshots topic (a worker reads only the partitions it was assigned), one record per chunk,
keyed ``<transfers topic>/<p>/<slot>/<chunk>``, with headers naming the snapshot, its chunk
count and the offset it covers. Compaction keeps the last record of each key, so the latest
snapshot of each slot survives; a worker writes the slot it did not load from, so a write cut
short (a crash, a revocation that could not wait) leaves the previous snapshot whole in the
other slot. Reading takes the newest complete snapshot (every chunk present, same id) that
decodes; one that does not is passed over for the next.

Rule kept here: nothing here decides whether a snapshot is usable for the state, only whether
one can be read (``runner`` checks its topic, partition count and offset against the log).
Writes are acknowledged by every in-sync replica (``acks=all``), chunk by chunk, encoding
one chunk at a time with a yield to the loop between, so a large state is written without
holding the decider or the agent for more than one chunk's encoding (~ms).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from bus.errors import TransientError
from bus.kafka_access import kafka_options
from bus.logging import get_logger
from bus.topics import partition_counts
from consumers.scheduler import snapshots
from consumers.scheduler.snapshots import Snapshot, SnapshotError

log = get_logger(__name__)

SNAPSHOT_ID = "snapshot-id"
CHUNKS = "chunks"
OFFSET = "offset"


@dataclass(frozen=True, slots=True)
class Written:
    """What writing one snapshot cost."""

    partition: int
    slot: int
    chunks: int
    bytes: int
    entries: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Loaded:
    """The snapshot read for one partition (None: none usable, ``reason`` says why)."""

    snapshot: Snapshot | None
    slot: int = 0
    reason: str = ""
    chunks: int = 0
    bytes: int = 0


def _key(topic: str, partition: int, slot: int, chunk: int) -> bytes:
    return f"{topic}/{partition}/{slot}/{chunk}".encode()


def _slot_of(key: bytes | None) -> int:
    try:
        return int((key or b"").decode().split("/")[-2])
    except (ValueError, IndexError, UnicodeDecodeError):
        return -1


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace")
    return None


class SnapshotStore:
    """Writes and reads the snapshots of one transfers topic's partitions."""

    def __init__(self, bootstrap: str, topic: str, *, client_id: str) -> None:
        self._bootstrap = bootstrap
        self.topic = topic  # the snapshots topic
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            **kafka_options(),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            max_request_size=4 * 1024 * 1024,  # one chunk is well under 1 MB
            linger_ms=5,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def write(self, snapshot: Snapshot, slot: int) -> Written:
        """Write a snapshot to ``slot``; returns once every chunk is acknowledged
        (``TransientError`` if the broker refused or went away: the next one is tried later)."""
        assert self._producer is not None, "start() first"
        started = time.perf_counter()
        snapshot_id = str(uuid.uuid4())
        count = snapshots.chunk_count(snapshot)
        headers = [
            (SNAPSHOT_ID, snapshot_id.encode()),
            (CHUNKS, str(count).encode()),
            (OFFSET, str(snapshot.offset).encode()),
        ]
        size = 0
        futures = []
        try:
            for chunk in range(count):
                value = snapshots.encode_chunk(snapshot, snapshot_id, chunk)
                size += len(value)
                key = _key(snapshot.topic, snapshot.partition, slot, chunk)
                futures.append(
                    await self._producer.send(
                        self.topic, value, key=key, partition=snapshot.partition, headers=headers
                    )
                )
                await asyncio.sleep(0)  # one chunk's encoding at a time holds the loop
            for future in futures:
                await future
        except KafkaError as error:
            raise TransientError(f"writing a snapshot to {self.topic}: {error}") from error
        return Written(
            snapshot.partition,
            slot,
            count,
            size,
            len(snapshot.transfers),
            time.perf_counter() - started,
        )

    async def read(self, topic: str, partitions: Sequence[int]) -> dict[int, Loaded]:
        """The newest usable snapshot of each partition in ``partitions`` of the transfers
        topic ``topic`` (the snapshots of other transfers topics sharing it are skipped)."""
        prefix = f"{topic}/".encode()
        found: dict[int, Loaded] = {p: Loaded(None, reason="no snapshot") for p in partitions}
        if not partitions:
            return found
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            **kafka_options(),
            client_id=self._client_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        try:
            available = (await partition_counts(self._bootstrap, [self.topic])).get(self.topic, 0)
            tps = [TopicPartition(self.topic, p) for p in partitions if p < available]
            if not tps:
                return found
            await consumer.start()
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            # per partition: snapshot id -> (slot, chunks, offset, {chunk index: value}), only
            # the last snapshot met in each slot (compaction keeps older ones a while)
            seen: dict[int, dict[str, tuple[int, int, int, dict[int, bytes]]]] = {
                tp.partition: {} for tp in tps
            }
            left = {tp for tp in tps if ends[tp] > 0}
            while left:
                batches = await consumer.getmany(*left, timeout_ms=500, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        if (record.key or b"").startswith(prefix):
                            self._note(seen[tp.partition], record)
                for tp in list(left):
                    if await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
        except KafkaError as error:
            raise TransientError(f"reading snapshots from {self.topic}: {error}") from error
        finally:
            await consumer.stop()
        for p, candidates in seen.items():
            found[p] = self._newest(p, candidates)
        return found

    @staticmethod
    def _note(into: dict[str, tuple[int, int, int, dict[int, bytes]]], record: object) -> None:
        headers = getattr(record, "headers", ())
        snapshot_id = _header(headers, SNAPSHOT_ID)
        chunks, offset = _header(headers, CHUNKS), _header(headers, OFFSET)
        key: bytes | None = getattr(record, "key", None)
        parts = (key or b"").decode("utf-8", "replace").split("/")
        if snapshot_id is None or chunks is None or offset is None or not parts[-1].isdigit():
            return  # not one of ours: skipped
        if snapshot_id not in into:
            slot = _slot_of(key)
            try:
                fresh: tuple[int, int, int, dict[int, bytes]] = (slot, int(chunks), int(offset), {})
            except ValueError:
                return
            # a newer snapshot in this slot: the older one's chunks are no longer needed
            for older in [i for i, c in into.items() if c[0] == slot]:
                del into[older]
            into[snapshot_id] = fresh
        into[snapshot_id][3][int(parts[-1])] = getattr(record, "value", b"") or b""

    @staticmethod
    def _newest(
        partition: int, candidates: dict[str, tuple[int, int, int, dict[int, bytes]]]
    ) -> Loaded:
        reasons = []
        complete = [c for c in candidates.values() if len(c[3]) == c[1] and c[1] > 0]
        if not complete:
            return Loaded(None, reason="no complete snapshot" if candidates else "no snapshot")
        for slot, _, _, chunks in sorted(complete, key=lambda c: c[2], reverse=True):
            values = [chunks[i] for i in range(len(chunks)) if i in chunks]
            try:
                snapshot = snapshots.decode(snapshots.decode_chunk(v) for v in values)
            except SnapshotError as error:
                reasons.append(str(error))
                continue
            if snapshot.partition != partition:
                reasons.append(f"written for partition {snapshot.partition}")
                continue
            return Loaded(snapshot, slot, chunks=len(values), bytes=sum(map(len, values)))
        return Loaded(None, reason="; ".join(reasons))


async def bounds(
    bootstrap: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, tuple[int, int]]:
    """The first and the next offset of each partition (what a snapshot's offset must lie in)."""
    if not partitions:
        return {}  # aiokafka waits for ever on an empty list
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options())
    try:
        await consumer.start()
        first = await consumer.beginning_offsets(list(partitions))
        ends = await consumer.end_offsets(list(partitions))
    except KafkaError as error:
        raise TransientError(f"offsets of {sorted({tp.topic for tp in partitions})}") from error
    finally:
        await consumer.stop()
    return {tp: (first[tp], ends[tp]) for tp in partitions}
