"""The replicator against the real Kafka, the real ingest service with a local primary store,
and a real SFTP server holding the transfer group's secondary store."""

from __future__ import annotations

import asyncio
import os
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bus.config.secrets import encrypt
from bus.errors import TransientError
from bus.events import Event, envelope
from bus.events.config import HostType
from bus.events.datafiles import Checksums, DataFileReplicated, DataFileStored
from bus.events.deadletter import DeadLettered, DeadLetterReason
from bus.events.transfers import DataFileStaged
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.stage import Stage
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.replicator.runner import Replicator, replicator_stage
from producers.api.app import create_app
from producers.api.ingest import ApiState
from protocols import registry
from protocols.base import Connection, Location, from_bytes
from store.named import Connector, NamedStores
from store.objects import ObjectId, ObjectSpec
from store.replicated import Fallback, ReplicatedStore
from tests.bus.deadletters import dead_letters, publish_poison
from tests.config import factories as f
from tests.ingest.conftest import define, read_topic
from tests.replicator.conftest import PASSWORD, TOKEN, USER, Names, SftpServer

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Put:
    """A data file put through the ingest API."""

    data_file_id: str
    destination: str
    data: bytes


@dataclass(frozen=True)
class FirstRun:
    """What the first replicator run was given and what it did."""

    replicated: tuple[Put, ...]  # destination in the replicating group
    plain: Put  # destination in a group that does not replicate
    broken: Put  # destination in a group whose secondary store is not defined
    copied: int
    dead_lettered: int


@pytest.fixture(scope="module")
async def configured(stack: ApiState, publisher: Publisher, names: Names, sftp: SftpServer) -> None:
    archive = f.host(
        "archive",
        type=HostType.REPLICATION,
        protocol="sftp",
        address=f"127.0.0.1:{sftp.port}",
        login=USER,
        credentials=encrypt(PASSWORD, names.key_file),
        directory="/replicas",
        options={"sftp.fingerPrint": sftp.fingerprint, "sftp.connectTimeOut": "2s"},
    )
    disk = f.host(
        "disk",
        type=HostType.REPLICATION,
        protocol="file",
        address="localhost",
        directory=str(names.store),
    )
    await define(
        stack,
        publisher,
        names.config,
        archive,
        disk,
        f.group("eu", stores=("disk", "archive"), replicate=True),
        f.group("plain", stores=("disk",)),
        f.group("broken", stores=("disk", "nowhere"), replicate=True),
        f.host("flaky", type=HostType.REPLICATION, protocol="memory", address="flaky-replicas"),
        f.group("shaky", stores=("disk", "flaky"), replicate=True),
        f.destination("site-a", transfer_group="eu"),
        f.destination("site-b", transfer_group="plain"),
        f.destination("site-c", transfer_group="broken"),
        f.destination("site-d", transfer_group="shaky"),
    )


@pytest.fixture(scope="module")
async def client(stack: ApiState, configured: None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(stack))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://ingest.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


def stores(stack: ApiState, names: Names, connect: Connector = registry.connect) -> NamedStores:
    return NamedStores(
        names.store, config=stack.config, key_file=names.key_file, durable=False, connect=connect
    )


def runner(
    kafka: str, stack: ApiState, names: Names, named: NamedStores, **kw: object
) -> Stage[Replicator]:
    return replicator_stage(
        kafka,
        named,
        stack.config,
        datafiles_topic=names.topics.datafiles,
        deadletter_topic=names.deadletter,
        group_id=f"test-replicator-{uuid.uuid4().hex[:8]}",
        retry=RetryPolicy(max_attempts=2, initial=0.1, maximum=0.2),
        source="replicator/test",
        **kw,  # type: ignore[arg-type]
    )


async def run_until(
    job: Stage[Replicator], check: Callable[[], Awaitable[bool]], timeout: float = 40
) -> None:
    task = asyncio.create_task(job.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await check():
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
            await asyncio.sleep(0.3)
    finally:
        job.stop()
        await asyncio.wait_for(task, 20)


async def put(client: httpx.AsyncClient, destination: str, size: int) -> Put:
    data = os.urandom(size)
    response = await client.post(
        "/api/v1/datafiles",
        params={"destination": destination, "target": f"in/{uuid.uuid4().hex}.bin"},
        content=data,
    )
    assert response.status_code == 201, response.text
    return Put(response.json()["data_file_id"], destination, data)


async def events(kafka: str, topic: str) -> list[Event]:
    return [event for _, _, event in await read_topic(kafka, topic)]


def replications(found: list[Event]) -> list[DataFileReplicated]:
    return [e for e in found if isinstance(e, DataFileReplicated)]


@pytest.fixture(scope="module")
async def first_run(
    kafka: str, stack: ApiState, names: Names, client: httpx.AsyncClient
) -> FirstRun:
    replicated = tuple([await put(client, "site-a", 200_000 + i) for i in range(3)])
    plain = await put(client, "site-b", 1000)
    broken = await put(client, "site-c", 1000)
    named = stores(stack, names)
    job = runner(kafka, stack, names, named)

    async def finished() -> bool:
        copies = replications(await events(kafka, names.topics.datafiles))
        dead = await events(kafka, names.deadletter)
        return len(copies) >= len(replicated) and len(dead) >= 1

    try:
        await run_until(job, finished)
    finally:
        await named.close()
    return FirstRun(replicated, plain, broken, job.handler.copied, job.dead_lettered)


async def test_stored_files_are_copied_to_the_secondary_store_with_identical_bytes(
    kafka: str, stack: ApiState, names: Names, sftp: SftpServer, first_run: FirstRun
) -> None:
    """Each file of the replicating group gets one DataFileReplicated and an identical copy on
    the SFTP store, with the ADLER32 recorded at storage."""
    found = await events(kafka, names.topics.datafiles)
    stored = {e.data_file_id: e for e in found if isinstance(e, DataFileStored)}
    copies = {e.data_file_id: e for e in replications(found)}
    assert set(copies) == {p.data_file_id for p in first_run.replicated}
    assert first_run.copied == len(first_run.replicated)
    named = stores(stack, names)
    try:
        archive = named.store_for("archive")
        for p in first_run.replicated:
            event = copies[p.data_file_id]
            assert (event.to_store, event.guid, event.size) == (
                "archive",
                p.data_file_id,
                len(p.data),
            )
            assert event.from_store == stored[p.data_file_id].store
            assert event.envelope.causation_id == stored[p.data_file_id].envelope.event_id
            meta = await archive.stat(ObjectId(event.guid))
            assert meta.checksums.adler32 == stored[p.data_file_id].checksums.adler32
            assert meta.checksums.adler32 == f"{zlib.adler32(p.data):08x}"
            copy = b"".join([c async for c in archive.get(ObjectId(event.guid))])
            assert copy == p.data
            on_disk = sftp_path(sftp, event.guid)
            assert on_disk.read_bytes() == p.data
    finally:
        await named.close()


def sftp_path(sftp: SftpServer, guid: str) -> Path:
    """Where the SFTP store keeps an object's bytes (under the chroot's /replicas)."""
    return sftp.root / "replicas" / guid[-2:] / guid[-4:-2] / guid


async def test_files_outside_a_replicating_group_are_skipped_and_an_unmet_policy_dead_letters(
    kafka: str, names: Names, first_run: FirstRun
) -> None:
    """A non-replicating group's file gets no copy; a group whose store is undefined ends
    in a PERMANENT_FAILURE dead letter naming the store and its reason."""
    copied = {e.data_file_id for e in replications(await events(kafka, names.topics.datafiles))}
    assert first_run.plain.data_file_id not in copied
    assert first_run.broken.data_file_id not in copied
    dead = [e for e in await events(kafka, names.deadletter) if isinstance(e, DeadLettered)]
    assert len(dead) == 1
    assert first_run.dead_lettered == 1
    letter = dead[0]
    assert letter.reason == DeadLetterReason.PERMANENT_FAILURE
    assert letter.origin_topic == names.topics.datafiles
    assert letter.event_type == "ecpds.datafiles.DataFileStored"
    assert first_run.broken.data_file_id in letter.message
    assert "nowhere" in letter.message
    assert "no such host" in letter.message


async def test_a_redelivered_file_is_not_copied_again_and_its_event_keeps_its_id(
    kafka: str, stack: ApiState, names: Names, first_run: FirstRun
) -> None:
    """A fresh consumer group reading one record at a time (Stored before its Replicated) finds
    the copies in place, copies nothing and republishes the same event ids."""
    before = replications(await events(kafka, names.topics.datafiles))
    named = stores(stack, names)
    job = runner(kafka, stack, names, named, max_records=1)

    async def again() -> bool:
        now = replications(await events(kafka, names.topics.datafiles))
        return len(now) >= 2 * len(before)

    try:
        await run_until(job, again)
    finally:
        await named.close()
    after = replications(await events(kafka, names.topics.datafiles))
    assert job.handler.copied == 0
    assert job.handler.reused == len(first_run.replicated)
    assert sorted(e.envelope.event_id for e in after) == sorted(
        e.envelope.event_id for e in before for _ in range(2)
    )


async def test_a_read_falls_back_to_the_replica_when_the_primary_copy_is_gone(
    stack: ApiState, names: Names, first_run: FirstRun
) -> None:
    """With the primary copy deleted, ReplicatedStore over the group's stores serves the
    replica's bytes and reports the missing primary."""
    named = stores(stack, names)
    fallbacks: list[Fallback] = []
    try:
        p = first_run.replicated[0]
        oid = ObjectId(p.data_file_id)
        primary, replica = named.store_for("disk"), named.store_for("archive")
        await primary.delete(oid)
        assert not await primary.exists(oid)
        reader = ReplicatedStore(primary, [replica], on_fallback=fallbacks.append)
        data = b"".join([c async for c in reader.get(oid)])
        assert data == p.data
        assert [(x.failed, x.reason) for x in fallbacks] == [(primary.name, "missing")]
    finally:
        await named.close()


async def test_a_stored_file_without_its_registration_in_sight_finds_its_group_from_the_object(
    kafka: str, stack: ApiState, names: Names, publisher: Publisher, first_run: FirstRun
) -> None:
    """A DataFileStored whose DataFileRegistered the runner never saw (a restart in between)
    is placed by its object's name <destination>/<target> and replicated all the same."""
    data = os.urandom(5000)
    named = stores(stack, names)
    try:
        disk = named.store_for("disk")
        meta = await disk.put(from_bytes(data), ObjectSpec(name="site-a/orphan.bin"))
        event = DataFileStored(
            envelope=envelope("test", meta.id),
            data_file_id=meta.id,
            guid=meta.id,
            store=disk.name,
            location=meta.id,
            size=meta.size,
            checksums=Checksums(adler32=meta.checksums.adler32),
            duration_ms=1,
        )
        await publisher.publish(names.topics.datafiles, meta.id, event)
        job = runner(kafka, stack, names, named)

        async def copied() -> bool:
            found = replications(await events(kafka, names.topics.datafiles))
            return any(e.data_file_id == meta.id for e in found)

        await run_until(job, copied)
        assert job.handler.copied == 1
        replica = named.store_for("archive")
        assert b"".join([c async for c in replica.get(meta.id)]) == data
    finally:
        await named.close()


async def test_a_retriable_failure_is_retried_and_the_copy_then_made(
    kafka: str, stack: ApiState, names: Names, client: httpx.AsyncClient, first_run: FirstRun
) -> None:
    """A secondary store whose first connection fails with a retriable error gets its copy on
    the next attempt, and the file is recorded as replicated once."""
    attempts: list[str] = []

    async def flaky(location: Location) -> Connection:
        attempts.append(location.host)
        if len(attempts) == 1:
            raise TransientError("connection reset (injected)")
        return await registry.connect(location)

    p = await put(client, "site-d", 3000)
    named = stores(stack, names, connect=flaky)
    job = runner(kafka, stack, names, named)

    async def copied() -> bool:
        found = replications(await events(kafka, names.topics.datafiles))
        return any(e.data_file_id == p.data_file_id for e in found)

    try:
        await run_until(job, copied)
        assert attempts == ["flaky-replicas", "flaky-replicas"]
        assert job.handler.copied == 1
        replica = named.store_for("flaky")
        assert b"".join([c async for c in replica.get(ObjectId(p.data_file_id))]) == p.data
    finally:
        await named.close()
    found = replications(await events(kafka, names.topics.datafiles))
    assert [e.to_store for e in found if e.data_file_id == p.data_file_id] == ["flaky"]


async def test_a_poison_record_is_dead_lettered_once_and_the_next_file_replicated(
    kafka: str,
    stack: ApiState,
    names: Names,
    client: httpx.AsyncClient,
    publisher: Publisher,
    first_run: FirstRun,
) -> None:
    """An undecodable record on the datafiles topic becomes one dead letter of the
    replicator's group, and a file stored after it is still replicated."""
    deadletter = f"{names.deadletter}.poison"
    await apply_topics(
        kafka, [TopicSpec(deadletter, "origin", 1, "delete", DAY_MS, ("ecpds.deadletter",), "")]
    )
    poison = await publish_poison(publisher, names.topics.datafiles)
    p = await put(client, "site-a", 2000)
    named = stores(stack, names)
    group = f"test-replicator-poison-{uuid.uuid4().hex[:8]}"
    job = replicator_stage(
        kafka,
        named,
        stack.config,
        datafiles_topic=names.topics.datafiles,
        deadletter_topic=deadletter,
        group_id=group,
        retry=RetryPolicy(max_attempts=2, initial=0.1, maximum=0.2),
        source="replicator/test",
    )

    async def of_poison() -> list[DeadLetterReason]:
        letters = await dead_letters(kafka, deadletter, names.topics.datafiles, group)
        at = (poison.partition, poison.offset)
        return [d.reason for d in letters if (d.origin_partition, d.origin_offset) == at]

    async def replicated() -> bool:
        found = replications(await events(kafka, names.topics.datafiles))
        copied = any(e.data_file_id == p.data_file_id for e in found)
        return copied and bool(await of_poison())

    try:
        await run_until(job, replicated)
    finally:
        await named.close()
    assert await of_poison() == [DeadLetterReason.UNDECODABLE]


async def test_a_regional_groups_file_is_pre_staged_into_its_replica(
    kafka: str,
    stack: ApiState,
    names: Names,
    client: httpx.AsyncClient,
    publisher: Publisher,
    first_run: FirstRun,
    tmp_path: Path,
) -> None:
    """A file of a regional (continental) group is copied into the group's replica store as
    soon as it is stored: identical bytes there, a DataFileReplicated on the datafiles topic
    and a DataFileStaged for its destination on the transfers topic."""
    replica = tmp_path / "asia-replica"
    await define(
        stack,
        publisher,
        names.config,
        f.host(
            "asia-store",
            type=HostType.REPLICATION,
            protocol="file",
            address="localhost",
            directory=str(replica),
        ),
        f.group("central"),
        f.group("asia", replica_store="asia-store", fallback_group="central", fallback_after=2),
        f.destination("site-r", transfer_group="asia"),
    )
    p = await put(client, "site-r", 50_000)
    named = stores(stack, names)
    job = runner(kafka, stack, names, named, transfers_topic=names.topics.transfers)

    async def staged() -> list[DataFileStaged]:
        found = await events(kafka, names.topics.transfers)
        return [e for e in found if isinstance(e, DataFileStaged)]

    async def done() -> bool:
        return any(e.data_file_id == p.data_file_id for e in await staged())

    try:
        await run_until(job, done)
        copy = named.store_for("asia-store")
        assert b"".join([c async for c in copy.get(ObjectId(p.data_file_id))]) == p.data
    finally:
        await named.close()
    (event,) = [e for e in await staged() if e.data_file_id == p.data_file_id]
    assert (event.destination, event.transfer_group, event.store) == (
        "site-r",
        "asia",
        "asia-store",
    )
    assert event.size == len(p.data)
    found = replications(await events(kafka, names.topics.datafiles))
    assert [e.to_store for e in found if e.data_file_id == p.data_file_id] == ["asia-store"]
