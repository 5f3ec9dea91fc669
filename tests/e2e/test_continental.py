"""Continental movers end to end: a destination served through a regional transfer group (its
own orders topic, mover process and store replica) with the central group as its fallback.
Files go in through the ingest API, the replicator pre-stages them into the region's replica,
the scheduler orders them to the region once staged, and the region's mover delivers them to a
real FTP server (pyftpdlib) from the replica; when the region fails a transfer
``fallback_after`` times, or has no live mover, the central group's mover delivers it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bus.events import envelope
from bus.events.transfers import (
    DataFileStaged,
    TransferFailed,
    TransferFellBack,
    TransferQueued,
    TransferScheduled,
    TransferSucceeded,
)
from bus.publisher import Publisher
from bus.topics import DAY_MS, TopicSpec, apply_topics
from store.local import LocalStore
from store.objects import ObjectId
from tests.conftest import free_port
from tests.e2e.conftest import Stack
from tests.protocols.ftpserver import FtpServer

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Region:
    """The regional group of this module, its replica store and its destination."""

    group: str
    store: str  # the replica's store host id
    replica: Path  # the replica's folder
    destination: str
    mover: str  # the regional mover's process name


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    server = FtpServer(tmp_path_factory.mktemp("ftp-far"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
async def region(stack: Stack, ftp: FtpServer) -> Region:
    """The regional group ``asia<tag>`` (replica store, falls back to the module's group after
    2 failed attempts), an FTP destination of it, and one mover of it."""
    tag = stack.tag
    made = Region(
        f"asia{tag}", f"asia-store-{tag}", stack.root / "asia-replica", f"far-{tag}", "asia"
    )
    await stack.apply(
        f"transfer_groups:\n"
        f"  - name: {made.group}\n    replica_store: {made.store}\n"
        f"    fallback_group: {stack.group}\n    fallback_after: 2\n"
        f"hosts:\n"
        f"  - id: {made.store}\n    nickname: asia replica\n    type: replication\n"
        f"    protocol: file\n    address: localhost\n    directory: {made.replica}\n"
        f"  - id: far-ftp-{tag}\n    nickname: far site\n    type: dissemination\n"
        f"    protocol: ftp\n    address: 127.0.0.1:{ftp.port}\n    login: {ftp.user}\n"
        f"    password: {ftp.password}\n    max_connections: 4\n"
        f"destinations:\n  - name: {made.destination}\n    type: dissemination\n"
        f"    transfer_group: {made.group}\n    max_connections: 4\n"
        # the staging wait and the pace of retries: 2 x 2.5 s; room for the regional starts
        f"    retry_frequency: 2500ms\n    max_start: 10\n"
        f"associations:\n"
        f"  - {{destination: {made.destination}, host: far-ftp-{tag}, priority: 0}}\n"
    )
    orders = f"{stack.topic('orders')}.{made.group}"
    await apply_topics(
        stack.kafka, [TopicSpec(orders, "destination", 2, "delete", DAY_MS, (), "e2e orders")]
    )
    stack.start_mover(made.mover, group=made.group)
    stack.start_replicator()
    # a first file through the region: the replicator's group is joined (seconds) before the
    # tests count on a staging within the destination's staging wait
    async with httpx.AsyncClient(timeout=60) as client:
        await stack.put(client, made.destination, "warm-up.bin", b"warm-up")
    assert stack.tail is not None

    def staged(_: object) -> bool:
        return bool(stack.tail.of(DataFileStaged, made.destination))  # type: ignore[union-attr]

    await stack.tail.until(staged, 90)
    return made


def story(stack: Stack, transfer_id: str) -> list[object]:
    """Every event of one transfer (and its data file's staging), in log order."""
    assert stack.tail is not None
    (queued,) = [
        e
        for e in stack.tail.events
        if isinstance(e, TransferQueued) and e.transfer_id == transfer_id
    ]
    return [
        e
        for e in stack.tail.events
        if getattr(e, "transfer_id", None) == transfer_id
        or (isinstance(e, DataFileStaged) and e.data_file_id == queued.data_file_id)
    ]


async def delivered(stack: Stack, transfer_id: str, timeout: float = 90) -> TransferSucceeded:
    assert stack.tail is not None

    def done(_: object) -> bool:
        return any(
            isinstance(e, TransferSucceeded) and e.transfer_id == transfer_id
            for e in stack.tail.events  # type: ignore[union-attr]
        )

    try:
        await stack.tail.until(done, timeout)
    except TimeoutError:
        lines = "\n".join(repr(e) for e in story(stack, transfer_id))
        pytest.fail(f"{transfer_id} not delivered:\n{lines}\n{stack.log('scheduler')}")
    (success,) = [e for e in story(stack, transfer_id) if isinstance(e, TransferSucceeded)]
    return success


async def test_a_regional_destination_is_pre_staged_then_delivered_by_the_regional_mover(
    stack: Stack, region: Region, ftp: FtpServer, client: httpx.AsyncClient
) -> None:
    """The replicator copies the file into the region's replica before the scheduler orders it
    (DataFileStaged precedes TransferScheduled); the order goes to the regional group, whose
    mover delivers the replica's bytes to the FTP server; nothing falls back."""
    data = os.urandom(64 * 1024)
    tid = await stack.put(client, region.destination, "staged.bin", data)
    success = await delivered(stack, tid)
    events = story(stack, tid)  # staged before ordered: its DataFileStaged is in already
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("DataFileStaged") < kinds.index("TransferScheduled"), kinds
    (scheduled,) = [e for e in events if isinstance(e, TransferScheduled)]
    assert scheduled.transfer_group == region.group
    assert success.mover_id == stack.mover_id(region.mover)
    assert not [e for e in events if isinstance(e, TransferFellBack | TransferFailed)]
    assert (ftp.root / "staged.bin").read_bytes() == data
    (staged,) = [e for e in events if isinstance(e, DataFileStaged)]
    replica = LocalStore(region.replica, durable=False)
    try:
        copy = b"".join([c async for c in replica.get(ObjectId(staged.data_file_id))])
    finally:
        await replica.close()
    assert copy == data


async def test_after_n_regional_failures_the_central_group_delivers(
    stack: Stack, region: Region, ftp: FtpServer, client: httpx.AsyncClient
) -> None:
    """The region's copy is lost (recorded as staged, not in the replica; no replicator runs):
    the regional mover fails the transfer twice (NotStaged), the third attempt is ordered to
    the central group (TransferFellBack, 2 failures) and its mover delivers the file."""
    stack.stop("replicator")  # nobody stages: the recorded copy stays missing
    assert stack.tail is not None
    data = os.urandom(32 * 1024)
    tid = await stack.put(client, region.destination, "lost.bin", data)

    def queued(_: object) -> bool:
        return any(
            isinstance(e, TransferQueued) and e.transfer_id == tid
            for e in stack.tail.events  # type: ignore[union-attr]
        )

    await stack.tail.until(queued, 30)
    (q,) = [e for e in stack.tail.events if isinstance(e, TransferQueued) and e.transfer_id == tid]
    lost = DataFileStaged(
        envelope=envelope("e2e-test", q.data_file_id),
        data_file_id=q.data_file_id,
        destination=region.destination,
        transfer_group=region.group,
        store=region.store,
        from_store="",
        size=len(data),
        duration_ms=1,
    )
    async with Publisher(stack.kafka, client_id="e2e-test") as publisher:
        await publisher.publish(stack.topic("transfers"), region.destination, lost)
    success = await delivered(stack, tid)
    events = story(stack, tid)
    failures = [e for e in events if isinstance(e, TransferFailed)]
    assert [(f.error_class, f.mover_id) for f in failures] == [
        ("NotStaged", stack.mover_id(region.mover))
    ] * 2
    (fell,) = [e for e in events if isinstance(e, TransferFellBack)]
    assert (fell.from_group, fell.to_group, fell.failures) == (region.group, stack.group, 2)
    groups = [e.transfer_group for e in events if isinstance(e, TransferScheduled)]
    assert groups == [region.group, region.group, stack.group]
    assert success.mover_id == stack.mover_id("mover")
    assert (ftp.root / "lost.bin").read_bytes() == data


async def test_a_stopped_regional_mover_sends_the_next_transfer_to_the_central_group(
    stack: Stack, region: Region, ftp: FtpServer, client: httpx.AsyncClient
) -> None:
    """With the region's only mover stopped, the next transfer is ordered to the central group
    at once ("No Transfer Server available"), without waiting for failures."""
    stack.stop(region.mover)
    data = os.urandom(8 * 1024)
    tid = await stack.put(client, region.destination, "nobody.bin", data)
    success = await delivered(stack, tid)
    events = story(stack, tid)
    (fell,) = [e for e in events if isinstance(e, TransferFellBack)]
    assert "No Transfer Server available" in fell.reason
    assert not [e for e in events if isinstance(e, TransferFailed)]
    assert success.mover_id == stack.mover_id("mover")
    assert (ftp.root / "nobody.bin").read_bytes() == data
