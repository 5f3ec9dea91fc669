"""The mover loop against real Kafka: concurrency within limits, commits only after outcomes,
graceful shutdown reporting interrupted transfers, a SIGKILLed mover's order completed by
another mover of the same group, and poison records dead-lettered once and passed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import codec
from bus.config.source import FixedConfig
from bus.config.view import ConfigView
from bus.events.config import Host, HostType, TransferGroup
from bus.events.deadletter import DeadLettered, DeadLetterReason
from bus.events.movers import MoverHeartbeat, MoverStopped, TransferAbortRequested
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    Fault,
    TransferFailed,
    TransferInterrupted,
    TransferStarted,
    TransferSucceeded,
)
from bus.publisher import Publisher
from consumers.movers.ports import GroupReplicas
from protocols.base import from_bytes
from store.local import LocalStore
from store.named import NamedStores
from store.objects import ObjectId, ObjectSpec
from store.ports import ObjectStore
from tests.movers.support import (
    Outcomes,
    Topics,
    host,
    order,
    publish_orders,
    running_mover,
    spawn_mover,
    stored,
)

pytestmark = pytest.mark.kafka

MIB = 1024 * 1024


async def committed(kafka: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed position of each partition (-1 when none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for p in range(partitions):
            value = await consumer.committed(TopicPartition(topic, p))
            out[p] = -1 if value is None else value
        return out
    finally:
        await consumer.stop()


async def end_offsets(kafka: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def assert_all_committed(done: dict[int, int], ends: dict[int, int]) -> None:
    """Every partition that received orders is committed up to its end."""
    assert any(ends.values())
    assert {p: done[p] for p, end in ends.items() if end} == {p: e for p, e in ends.items() if e}


async def fresh(kafka: str, order_partitions: int = 2) -> tuple[Topics, Outcomes, Outcomes]:
    topics = Topics.unique()
    await topics.create(kafka, order_partitions)
    transfers, movers = Outcomes(kafka, topics.transfers), Outcomes(kafka, topics.movers)
    await transfers.start()
    await movers.start()
    return topics, transfers, movers


async def test_poison_is_dead_lettered_once_and_counts_as_done_for_the_commit(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """Undecodable bytes and an event that is no order on the orders topic are each
    dead-lettered once for the movers' group, with reason and origin; a poison record on the
    movers topic is skipped by the abort feed; the order sent after them is delivered, and the
    partition is committed to its end (past the poison)."""
    topics, transfers, movers = await fresh(kafka, order_partitions=1)
    letters = Outcomes(kafka, topics.deadletter)
    await letters.start()
    try:
        obj = await stored(store, size=1000)
        good = order(obj, host("file", "", directory=f"{tmp_path}/"), target="after-poison.bin")
        beat = MoverHeartbeat(
            envelope=good.envelope, mover_id="m", transfer_group="g", capacity=1, running=0,
            started_at=good.envelope.occurred_at,
        )  # fmt: skip
        abort_type = [("event-type", TransferAbortRequested.AVRO_NAME.encode())]
        config = topics.config(kafka, key_file)
        async with running_mover(config, store.root), Publisher(kafka) as publisher:
            await publisher.publish_raw(topics.movers, b"m", b"not an abort", abort_type)
            garbage = await publisher.publish_raw(topics.orders, b"a", b"not an avro event", [])
            stray = await publisher.publish_raw(
                topics.orders, b"a", codec.encode(beat), codec.headers(beat)
            )
            await publisher.publish(topics.orders, good.destination, good)
            await transfers.wait(good.transfer_id, (TransferSucceeded,))
            await letters.wait_for(DeadLettered, 2)
            await asyncio.sleep(0.6)  # one more poll loop: the last commit, a wrong letter
            done = await committed(kafka, config.group, topics.orders, 1)
        assert_all_committed(done, await end_offsets(kafka, topics.orders, 1))
        assert (tmp_path / "after-poison.bin").read_bytes() == obj.data
        found = sorted(
            (d.reason, d.origin_topic, d.origin_partition, d.origin_offset, d.consumer_group,
             d.original_value)
            for d in letters.events
            if isinstance(d, DeadLettered)
        )  # fmt: skip
        assert found == [
            (DeadLetterReason.TYPE_NOT_ALLOWED, topics.orders, 0, stray.offset, config.group,
             codec.encode(beat)),
            (DeadLetterReason.UNDECODABLE, topics.orders, 0, garbage.offset, config.group,
             b"not an avro event"),
        ]  # fmt: skip
    finally:
        for tail in (letters, transfers, movers):
            await tail.stop()


async def test_many_orders_run_concurrently_within_limits_and_all_get_committed(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """12 orders on two destinations (2 connections each, capacity 3) all succeed, never more
    than 2 at once per destination, and the group's offsets end at the topic's end."""
    topics, transfers, movers = await fresh(kafka)
    try:
        obj = await stored(store, size=MIB)
        target = host(
            "file", "", directory=f"{tmp_path}/$destination[name]/", max_connections=2,
            options={"upload.rateThrottling": "4MB"},
        )  # fmt: skip
        orders = [
            order(obj, target, destination=f"dest-{i % 2}", target=f"f{i}.bin") for i in range(12)
        ]
        async with running_mover(topics.config(kafka, key_file, capacity=3), store.root):
            await publish_orders(kafka, topics.orders, *orders)
            for sent in orders:
                await transfers.wait(sent.transfer_id, (TransferSucceeded,), timeout=90)
            await asyncio.sleep(0.6)  # one more poll loop: the last commit
            done = await committed(kafka, f"ecpds-movers-{topics.group}", topics.orders, 2)
        assert_all_committed(done, await end_offsets(kafka, topics.orders, 2))
        for dest in ("dest-0", "dest-1"):
            assert sorted(p.name for p in (tmp_path / dest).iterdir()) == sorted(
                f"f{i}.bin" for i in range(12) if f"dest-{i % 2}" == dest
            )
        # intervals [started, succeeded] of one destination overlap at most 2 deep
        for dest in ("dest-0", "dest-1"):
            marks = []
            for e in transfers.events:
                if getattr(e, "destination", None) != dest:
                    continue
                if isinstance(e, TransferStarted):
                    marks.append((e.envelope.occurred_at, 1))
                elif isinstance(e, TransferSucceeded):
                    marks.append((e.envelope.occurred_at, -1))
            depth = peak = 0
            for _, step in sorted(marks):
                depth += step
                peak = max(peak, depth)
            assert 1 <= peak <= 2
        beats = [e for e in movers.events if isinstance(e, MoverHeartbeat)]
        assert beats
        assert all(b.capacity == 3 and b.running <= 3 for b in beats)
        assert any(b.running > 0 and b.bytes_per_second > 0 for b in beats)
    finally:
        await transfers.stop()
        await movers.stop()


async def test_graceful_shutdown_reports_running_transfers_interrupted(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """Stopping a mover mid-transfer publishes TransferInterrupted (with the attempt) and
    MoverStopped, leaves nothing at the final name and commits past the interrupted order."""
    topics, transfers, movers = await fresh(kafka)
    try:
        obj = await stored(store, size=8 * MIB)
        target = host(
            "file", "", directory=f"{tmp_path}/", options={"upload.rateThrottling": "1MB"}
        )
        sent = order(obj, target, attempt=4)
        async with running_mover(topics.config(kafka, key_file), store.root) as mover:
            await publish_orders(kafka, topics.orders, sent)
            await transfers.wait(sent.transfer_id, (TransferStarted,))
            await asyncio.sleep(0.5)
            assert mover.running == [sent.transfer_id]
        interrupted = await transfers.wait(sent.transfer_id, (TransferInterrupted,))
        assert isinstance(interrupted, TransferInterrupted)
        assert interrupted.attempt == 4
        assert not transfers.of(sent.transfer_id, TransferSucceeded)
        await movers.wait_for(MoverStopped)
        assert not (tmp_path / "data" / "product.grib").exists()
        done = await committed(kafka, f"ecpds-movers-{topics.group}", topics.orders, 2)
        assert_all_committed(done, await end_offsets(kafka, topics.orders, 2))
    finally:
        await transfers.stop()
        await movers.stop()


async def test_a_sigkilled_movers_order_is_completed_by_another_mover(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """Kill the mover running a large transfer with SIGKILL: after the rebalance the other
    mover of the group takes the order and completes it; one final file with the right bytes,
    and the victim's temporary file (named in its TransferStarted) removed: nothing beside it."""
    topics, transfers, movers = await fresh(kafka, order_partitions=1)
    names = ("mover-a", "mover-b")
    procs = {name: spawn_mover(topics, name, store.root, key_file) for name in names}
    try:
        await movers.wait_for(MoverHeartbeat, count=4, timeout=60)
        await asyncio.sleep(4)  # let the group settle with both members
        obj = await stored(store, size=12 * MIB)
        target = host(
            "file", "", directory=f"{tmp_path}/", options={"upload.rateThrottling": "4MB"}
        )
        sent = order(obj, target)
        await publish_orders(kafka, topics.orders, sent)
        first = await transfers.wait(sent.transfer_id, (TransferStarted,))
        assert isinstance(first, TransferStarted)
        await asyncio.sleep(1.0)
        victim = procs[first.mover_id]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = "mover-b" if first.mover_id == "mover-a" else "mover-a"
        deadline = asyncio.get_running_loop().time() + 60
        done: TransferSucceeded | None = None
        while done is None and asyncio.get_running_loop().time() < deadline:
            for e in transfers.of(sent.transfer_id, TransferSucceeded):
                assert isinstance(e, TransferSucceeded)
                done = e
            await asyncio.sleep(0.2)
        assert done is not None, "the surviving mover did not complete the order"
        assert done.mover_id == survivor
        final = tmp_path / "data" / "product.grib"
        assert final.read_bytes() == obj.data
        assert first.temporary_path is not None
        assert first.temporary_path.startswith(f"{final.parent}/.product.grib.")
        assert [p.name for p in final.parent.iterdir()] == ["product.grib"]
        assert len(transfers.of(sent.transfer_id, TransferSucceeded)) == 1
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await transfers.stop()
        await movers.stop()


async def test_a_full_mover_keeps_polling_and_is_not_evicted(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """At capacity 1 with uploads longer than max.poll.interval, the mover pauses its
    partitions but keeps polling: no rebalance, each order started exactly once."""
    topics, transfers, movers = await fresh(kafka)
    try:
        obj = await stored(store, data=os.urandom(3 * MIB))
        target = host(
            "file", "", directory=f"{tmp_path}/", options={"upload.rateThrottling": "1MB"}
        )
        orders = [order(obj, target, target=f"slow{i}.bin") for i in range(2)]
        config = topics.config(kafka, key_file, capacity=1, max_poll_interval_ms=2000)
        async with running_mover(config, store.root) as mover:
            await publish_orders(kafka, topics.orders, *orders)
            await transfers.wait(orders[0].transfer_id, (TransferStarted,))
            await asyncio.sleep(1.0)
            assert mover.paused
            for sent in orders:
                await transfers.wait(sent.transfer_id, (TransferSucceeded,), timeout=60)
        for sent in orders:
            assert len(transfers.of(sent.transfer_id, TransferStarted)) == 1
            assert (tmp_path / sent.target).read_bytes() == obj.data
    finally:
        await transfers.stop()
        await movers.stop()


class ArchiveReplica:
    """The group's other store: one more local store (what ``GroupReplicas`` gives a mover)."""

    def __init__(self, archive: LocalStore) -> None:
        self.archive = archive

    def replicas(self, order: TransferOrdered) -> list[ObjectStore]:
        return [self.archive]

    def staged(self, order: TransferOrdered) -> ObjectStore | None:
        return None


async def test_an_object_missing_from_its_store_is_delivered_from_a_replica(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """The order's store lost the object, a replica in the group's other store has it: the
    transfer succeeds with the replica's bytes."""
    topics, transfers, movers = await fresh(kafka)
    archive = LocalStore(tmp_path / "archive", durable=False)
    try:
        obj = await stored(store, size=200_000)
        await archive.put(from_bytes(obj.data), ObjectSpec(name=obj.guid, id=ObjectId(obj.guid)))
        await store.delete(ObjectId(obj.guid))
        sent = order(obj, host("file", "", directory=f"{tmp_path}/out/"), target="p.bin")
        config = topics.config(kafka, key_file, capacity=1)
        async with running_mover(config, store.root, replicas=ArchiveReplica(archive)):
            await publish_orders(kafka, topics.orders, sent)
            done = await transfers.wait(sent.transfer_id, (TransferSucceeded, TransferFailed))
        assert isinstance(done, TransferSucceeded), done
        assert (tmp_path / "out" / "p.bin").read_bytes() == obj.data
    finally:
        await transfers.stop()
        await movers.stop()
        await archive.close()


async def test_a_regional_mover_reads_its_replica_and_says_not_staged_when_it_is_missing(
    kafka: str, store: LocalStore, key_file: Path, tmp_path: Path
) -> None:
    """A mover of a regional (continental) group reads the object from the group's replica
    store, not from the order's (central) store: an object only in the replica is delivered
    with the replica's bytes; one only in the central store fails as NotStaged, a transient
    fault, retriable (the scheduler retries it, then falls back to the central group)."""
    topics, transfers, movers = await fresh(kafka)
    replica_root = tmp_path / "asia-replica"
    replica = LocalStore(replica_root, durable=False)
    view = ConfigView(
        hosts={
            "asia-store": Host(
                id="asia-store",
                nickname="asia replica",
                type=HostType.REPLICATION,
                protocol="file",
                address="localhost",
                directory=str(replica_root),
            )
        },
        transfer_groups={
            "test": TransferGroup(name="test", replica_store="asia-store", fallback_group="eu")
        },
    )
    named = NamedStores(store.root, config=FixedConfig(view), durable=False)
    try:
        in_region = await stored(store, size=120_000)
        await replica.put(
            from_bytes(in_region.data), ObjectSpec(name=in_region.guid, id=ObjectId(in_region.guid))
        )
        await store.delete(ObjectId(in_region.guid))  # only the replica has it: read from there
        central_only = await stored(store, size=1_000)
        out = host("file", "", directory=f"{tmp_path}/out/")
        staged = order(in_region, out, target="staged.bin")
        missing = order(central_only, out, target="missing.bin")
        config = topics.config(kafka, key_file, capacity=2)
        async with running_mover(
            config, store.root, replicas=GroupReplicas(named, FixedConfig(view))
        ):
            await publish_orders(kafka, topics.orders, staged, missing)
            done = await transfers.wait(staged.transfer_id, (TransferSucceeded, TransferFailed))
            failed = await transfers.wait(missing.transfer_id, (TransferSucceeded, TransferFailed))
        assert isinstance(done, TransferSucceeded), done
        assert (tmp_path / "out" / "staged.bin").read_bytes() == in_region.data
        assert isinstance(failed, TransferFailed), failed
        assert (failed.error_class, failed.fault, failed.retriable) == (
            "NotStaged",
            Fault.TRANSIENT,
            True,
        )
        assert "not staged in the regional store" in failed.message
        assert not (tmp_path / "out" / "missing.bin").exists()
    finally:
        await transfers.stop()
        await movers.stop()
        await replica.close()
        await named.close()
