"""Mover benchmark: one large file to SFTP through a mover process, end to end, beside OpenSSH.

A file of ``argv[1]`` bytes (or ``ECPDS_BENCH_MOVER_SIZE``; default 1 GiB) is put in a
LocalStore; a mover process (``python -m consumers.movers.runner``) of a private transfer group
gets a ``TransferOrdered`` for it to a private OpenSSH sshd (aes128-gcm@openssh.com, key auth);
the time is from publishing the order to reading its ``TransferSucceeded`` (the mover streams
from the store verifying ADLER32, writes a temporary name, renames and checks the size; the
order carries the MD5 the store computed at ingest, as in production, so an uncompressed
delivery reports it without hashing again). In the same
run OpenSSH ``sftp -c aes128-gcm@openssh.com`` uploads the same stored file. ``ROUNDS`` (3)
alternating rounds; the machine is shared, so the ratio is the median of the rounds' ratios
(each round runs both back to back), with the best-of-each ratio and the CPU seconds of each
side per file (the mover process from /proc; ``sftp`` with its ``ssh``) beside it, since load
disturbs CPU time less than wall time. Target: ratio >= 0.85.
Kafka is the bench instance (``bench/_infra.py``); everything binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _infra import emit, service, settings
from sftp import CIPHER, Sshd

from bus.events import envelope
from bus.events.config import Host, HostType
from bus.events.datafiles import Checksums
from bus.events.movers import MoverHeartbeat
from bus.events.orders import TransferOrdered
from bus.events.transfers import TransferFailed, TransferSucceeded
from bus.publisher import Publisher
from bus.settings import ROOT
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.janitor.feed import EventFeed
from store.local import LocalStore
from store.objects import ObjectSpec, new_object_id

GIB = 1024**3
CHUNK = 1024 * 1024
ROUNDS = int(os.environ.get("ECPDS_BENCH_MOVER_ROUNDS", "3"))


async def _generated(size: int) -> object:
    block = os.urandom(CHUNK)
    for start in range(0, size, CHUNK):
        yield block[: min(CHUNK, size - start)]


def _order(
    oid: str, store: LocalStore, sums: Checksums, size: int, sshd: Sshd, remote: Path
) -> TransferOrdered:
    transfer_id = uuid.uuid4().hex
    host = Host(
        id="bench-sftp",
        nickname="bench sftp",
        type=HostType.DISSEMINATION,
        protocol="sftp",
        address=f"127.0.0.1:{sshd.port}",
        login="root",
        directory=f"{remote}/",
        options={
            "sftp.privateKeyFile": str(sshd.key),
            "sftp.fingerPrint": sshd.fingerprint,
            "sftp.cipher": CIPHER,
        },
    )
    return TransferOrdered(
        envelope=envelope("bench", transfer_id),
        transfer_id=transfer_id,
        destination="bench",
        data_file_id=oid,
        attempt=1,
        transfer_group="bench",
        host=host,
        target="mover.bin",
        guid=oid,
        store=store.name,
        location=oid,
        size=size,
        checksums=sums,
        priority=50,
        expiry_time=datetime.now(UTC) + timedelta(days=1),
    )


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _wait(feed: EventFeed, transfer_id: str, timeout: float = 600) -> TransferSucceeded:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in await feed.poll(0.05):
            if getattr(event, "transfer_id", None) != transfer_id:
                continue
            if isinstance(event, TransferFailed):
                raise SystemExit(f"mover failed: {event.error_class}: {event.message}")
            if isinstance(event, TransferSucceeded):
                return event
    raise SystemExit("no outcome from the mover in time")


async def main() -> None:
    size = (
        int(sys.argv[1])
        if len(sys.argv) > 1
        else int(os.environ.get("ECPDS_BENCH_MOVER_SIZE", str(GIB)))
    )
    config = settings()
    service(config, "kafka/kafka.sh")
    bootstrap = config.kafka_bootstrap
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-mover-"))
    sshd = Sshd(work / "sshd")
    tag = uuid.uuid4().hex[:8]
    orders, transfers, movers = f"bench.orders.{tag}", f"bench.transfers.{tag}", f"bench.m.{tag}"
    await apply_topics(
        bootstrap,
        [TopicSpec(t, "k", 1, "delete", DAY_MS, (), "bench") for t in (orders, transfers, movers)],
    )
    store = LocalStore(work / "store", durable=False)
    oid = new_object_id()
    meta = await store.put(_generated(size), ObjectSpec(name="big", id=oid, md5=True))  # type: ignore[arg-type]
    source = store.root / "/".join((oid[-2:], oid[-4:-2], oid))
    assert source.stat().st_size == meta.size == size
    # as ingest does: the store computed MD5 while storing, the order carries it
    sums = Checksums(adler32=meta.checksums.adler32, md5=meta.checksums.md5)
    remote = sshd.root / "remote"
    remote.mkdir()
    env = {
        **os.environ,
        "ECPDS_STORE_ROOT": str(store.root),
        "ECPDS_KEY_FILE": str(work / "key"),
        "ECPDS_LOG_LEVEL": "WARNING",
    }
    argv = [
        sys.executable, "-m", "consumers.movers.runner", "--group", f"bench-{tag}",
        "--capacity", "4", "--orders-topic", orders, "--transfers-topic", transfers,
        "--movers-topic", movers, "--heartbeat", "1",
    ]  # fmt: skip
    # started once before any timing: a blocking Popen costs nothing measured
    mover = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)  # noqa: ASYNC220
    feed = EventFeed(bootstrap, [transfers])
    beats = EventFeed(bootstrap, [movers])
    await feed.start()
    await beats.start()
    ours: list[float] = []
    native: list[float] = []
    reported: list[int] = []
    ours_cpu: list[float] = []
    native_cpu: list[float] = []
    try:
        while not any(isinstance(e, MoverHeartbeat) for e in await beats.poll(0.5)):
            if mover.poll() is not None:
                raise SystemExit("mover process exited")
        await asyncio.sleep(3)  # the consumer group is joined by now
        async with Publisher(bootstrap) as publisher:
            for _ in range(ROUNDS):
                order = _order(oid, store, sums, size, sshd, remote)
                cpu, start = _process_cpu(mover.pid), time.perf_counter()
                await publisher.publish(orders, order.destination, order)
                done = await _wait(feed, order.transfer_id)
                ours.append(time.perf_counter() - start)
                ours_cpu.append(_process_cpu(mover.pid) - cpu)
                reported.append(done.duration_ms)
                assert done.md5 == sums.md5
                assert (remote / "mover.bin").stat().st_size == size
                (remote / "mover.bin").unlink()
                cpu = _children_cpu()
                native.append(sshd.sftp_batch(f"put {source} {remote}/native.bin\n"))
                native_cpu.append(_children_cpu() - cpu)
                assert (remote / "native.bin").stat().st_size == size
                (remote / "native.bin").unlink()
    finally:
        await feed.stop()
        await beats.stop()
        mover.send_signal(signal.SIGTERM)
        try:
            mover.wait(30)
        except subprocess.TimeoutExpired:
            mover.kill()
        sshd.stop()
        await store.close()
        shutil.rmtree(work, ignore_errors=True)
    best, base = min(ours), min(native)
    ratios = [n / o for o, n in zip(ours, native, strict=True)]
    emit(
        {
            "benchmark": "mover_sftp_large_file",
            "size_bytes": size,
            "rounds": ROUNDS,
            "cipher": CIPHER,
            "mover_end_to_end_s": round(statistics.median(ours), 3),
            "mover_end_to_end_mb_s": round(size / 1e6 / statistics.median(ours), 1),
            "mover_reported_transfer_ms": statistics.median(reported),
            "sftp_put_s": round(statistics.median(native), 3),
            "sftp_put_mb_s": round(size / 1e6 / statistics.median(native), 1),
            "ratio": round(statistics.median(ratios), 3),
            "ratio_best": round(base / best, 3),
            "ratios": [round(r, 3) for r in ratios],
            "mover_cpu_s": round(statistics.median(ours_cpu), 2),
            "sftp_cpu_s": round(statistics.median(native_cpu), 2),
            "target_ratio": 0.85,
            "load_average": round(os.getloadavg()[0], 1),
            "all_rounds_s": {
                "mover": [round(t, 3) for t in ours],
                "sftp": [round(t, 3) for t in native],
            },
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
