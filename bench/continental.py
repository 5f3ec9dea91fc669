"""Continental movers benchmark: delivering from a pre-staged regional replica vs reading the
central store across the long link, in the same run.

The central store is a ``RemoteStore`` over SFTP (a private OpenSSH sshd, ``bench/sftp.py``)
reached through Toxiproxy (``var/cache/bin``, built by ``infra/install.sh``) with a latency toxic
each way (``LINK_MS``, default 40 ms: an intercontinental round trip of ~80 ms) and a bandwidth
cap (``LINK_KBPS``, default 20,000 KB/s); the site the files go to is a local folder (``file``
module): it is near the region. ``FILES`` (default 24) objects of ``SIZE`` bytes (default 1 MiB)
are put in the central store (directly, not through the link).

- ``central``: each object delivered by the mover's own ``deliver`` reading the central store
  through the link (what a mover of the region does without a replica, and what the fallback
  to the central group costs when the central movers are far from the site);
- ``staged``: the objects pre-staged first into a local replica (the replicator's
  ``adapters.copy`` through the link: done ahead of the scheduled time, off the delivery
  path, timed apart), then each delivered from the replica (``store.staged.StagedStore``, what
  a regional mover reads).

Deliveries run ``CONCURRENCY`` (4) at a time; reported: files/s and per-file latency (median,
p90) of each, and the staging time. ``ROUNDS`` (2) alternating rounds. No Kafka: the point is
the read path of a delivery, the part the region changes. Kept well under 2 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _infra import emit
from sftp import Sshd

from bus.events import envelope
from bus.events.config import Host, HostType
from bus.events.orders import TransferOrdered
from consumers.movers import core
from consumers.movers.delivery import Meter, deliver
from consumers.replicator import adapters
from consumers.replicator.core import ReplicationJob
from protocols.location import location_for
from protocols.pool import ConnectionPool
from store.local import LocalStore
from store.objects import ObjectMeta, ObjectSpec, new_object_id
from store.ports import ObjectStore
from store.remote import RemoteStore
from store.staged import StagedStore
from tests.chaos.toxiproxy import SERVER, toxiproxy_server

FILES = int(os.environ.get("ECPDS_BENCH_CONTINENTAL_FILES", "24"))
SIZE = int(os.environ.get("ECPDS_BENCH_CONTINENTAL_SIZE", str(1024 * 1024)))
LINK_MS = int(os.environ.get("ECPDS_BENCH_CONTINENTAL_LINK_MS", "40"))
LINK_KBPS = int(os.environ.get("ECPDS_BENCH_CONTINENTAL_LINK_KBPS", "20000"))
CONCURRENCY = 4
ROUNDS = int(os.environ.get("ECPDS_BENCH_CONTINENTAL_ROUNDS", "2"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _bytes(size: int) -> AsyncIterator[bytes]:
    block = os.urandom(256 * 1024)
    for start in range(0, size, len(block)):
        yield block[: min(len(block), size - start)]


def _order(meta: ObjectMeta, store: str, site: Path, name: str) -> TransferOrdered:
    transfer_id = uuid.uuid4().hex
    host = Host(
        id="far-site",
        nickname="the site near the region",
        type=HostType.DISSEMINATION,
        protocol="file",
        address="localhost",
        directory=f"{site}/",
    )
    return TransferOrdered(
        envelope=envelope("bench", transfer_id),
        transfer_id=transfer_id,
        destination="far",
        data_file_id=str(meta.id),
        attempt=1,
        transfer_group="asia",
        host=host,
        target=name,
        guid=str(meta.id),
        store=store,
        location=str(meta.id),
        size=meta.size,
        checksums=meta.checksums,
        priority=50,
        expiry_time=datetime.now(UTC) + timedelta(days=1),
    )


async def _deliveries(
    orders: list[TransferOrdered], store: ObjectStore, pool: ConnectionPool
) -> tuple[float, list[float]]:
    """Deliver every order from ``store``, CONCURRENCY at a time: (wall seconds, latencies)."""
    slots = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []

    async def one(order: TransferOrdered) -> None:
        async with slots:
            started = time.monotonic()
            location = location_for(order.host, None)
            path = core.target_path(order, "bench", datetime.now(UTC))
            await deliver(order, location, path, store, pool, Meter(None, lambda _: None))
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(one(o) for o in orders))
    return time.monotonic() - started, latencies


async def _timed(step: Callable[[], Awaitable[object]]) -> float:
    started = time.monotonic()
    await step()
    return time.monotonic() - started


def _summary(wall: float, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "files_per_s": round(len(latencies) / wall, 2),
        "latency_median_ms": round(statistics.median(ordered) * 1000, 1),
        "latency_p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
    }


async def _round(
    far: RemoteStore, work: Path, metas: list[ObjectMeta], index: int
) -> dict[str, object]:
    site = work / f"site-{index}"
    site.mkdir()
    pool = ConnectionPool(per_key=CONCURRENCY)
    replica = LocalStore(work / f"replica-{index}", durable=False)
    try:
        orders = [_order(m, far.name, site, f"central-{i}.bin") for i, m in enumerate(metas)]
        central_wall, central_lat = await _deliveries(orders, far, pool)

        async def stage() -> None:
            jobs = [
                ReplicationJob(
                    data_file_id=str(m.id),
                    guid=str(m.id),
                    source=far.name,
                    transfer_group="asia",
                    candidates=("replica",),
                    wanted=1,
                    done=(),
                    size=m.size,
                    adler32=m.checksums.adler32,
                    causation_id="bench",
                )
                for m in metas
            ]
            slots = asyncio.Semaphore(CONCURRENCY)

            async def copy(job: ReplicationJob) -> None:
                async with slots:
                    await adapters.copy(far, replica, job)

            await asyncio.gather(*(copy(j) for j in jobs))

        staging = await _timed(stage)
        staged = StagedStore(replica, far.name)
        orders = [
            replace(o, target=f"staged-{i}.bin", transfer_id=uuid.uuid4().hex)
            for i, o in enumerate(orders)
        ]
        staged_wall, staged_lat = await _deliveries(orders, staged, pool)
        for i, data in enumerate(metas):  # what arrived is what was stored, both ways
            assert (site / f"central-{i}.bin").stat().st_size == data.size
            assert (site / f"staged-{i}.bin").read_bytes() == (
                site / f"central-{i}.bin"
            ).read_bytes()
        return {
            "central": _summary(central_wall, central_lat),
            "staged": _summary(staged_wall, staged_lat),
            "staging_s": round(staging, 2),
            "speedup_files_per_s": round(central_wall / staged_wall, 1),
        }
    finally:
        await pool.close()
        await replica.close()
        shutil.rmtree(site, ignore_errors=True)


async def main() -> None:
    if not SERVER.exists():
        sys.exit(f"no {SERVER}: run infra/install.sh (it builds Toxiproxy)")
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-continental-"))
    sshd = Sshd(work / "sshd")
    started = time.monotonic()
    try:
        with toxiproxy_server(_free_port(), work / "toxiproxy.log") as toxi:
            link = _free_port()
            toxi.create("link", link, sshd.port)
            for stream in ("downstream", "upstream"):
                toxi.add_toxic("link", "latency", {"latency": LINK_MS}, stream=stream)
                toxi.add_toxic("link", "bandwidth", {"rate": LINK_KBPS}, stream=stream)
            base = str(work / "central")
            os.makedirs(base)
            near = RemoteStore(sshd.location(base))  # puts the objects, not timed
            far = RemoteStore(replace(sshd.location(base), port=link))
            try:
                metas = [
                    await near.put(_bytes(SIZE), ObjectSpec(name=f"far/f{i}", id=new_object_id()))
                    for i in range(FILES)
                ]
                rounds = [await _round(far, work, metas, i) for i in range(ROUNDS)]
            finally:
                await near.close()
                await far.close()
    finally:
        sshd.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    emit(
        {
            "benchmark": "continental",
            "files": FILES,
            "size": SIZE,
            "link": {"latency_ms_each_way": LINK_MS, "bandwidth_kb_s": LINK_KBPS},
            "concurrency": CONCURRENCY,
            "rounds": rounds,
            "elapsed_s": round(time.monotonic() - started, 1),
            "bytes_checked": "every delivered file, both ways",
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
