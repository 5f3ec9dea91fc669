"""Benchmark: the ``ecpds put`` path — files registered and stored through the ingest API.

- 1,000 files of 100 KiB are put through ``POST /api/v1/datafiles`` by 32 concurrent clients
  against the real runner process (``python -m producers.api.runner``: Kafka events with
  acks=all, bytes fsynced in the local store, ADLER32 + MD5). Figure: files/s registered and
  stored (a 201 means Registered, bytes durable, Stored and the TransferQueued published).
  Baseline in the same run: ``cp`` of the same 1,000 files into a folder (the floor; ``cp``
  does not fsync, so ``cp`` + ``sync`` is reported beside it), and the same files put straight
  into a durable local store by 8 tasks (no HTTP, no Kafka: what the store alone allows).
  Target: >= 300 files/s. The CPU each process used per file is reported (API, broker, this
  load generator): on 2 cores it bounds the rate. 32 clients (``ECPDS_BENCH_CLIENTS``), as
  many producers at once would: with 8 the broker handles ~3 produce requests per file
  (4 ms of broker CPU per file measured), with 32 they batch (~0.5 ms).
- Growth: the time per file of puts with ~1,000 files already stored, and again after 19,000
  more have been pre-loaded (events on the topics and objects in the store, the runner
  restarted so its index is rebuilt from the log): the ratio should stay ~1. Each is the
  faster of two half batches. Beside it, the CPU cost of decide() + index updates per put with
  1,000 vs 21,000 files in the index (in-process, no I/O: the part that could grow).

Everything lives under var/bench (own topics per run, a store folder deleted at the end).
``ECPDS_BENCH_API_ROOT=DIR`` runs the API from another tree (a checkout of an earlier commit)
to compare before/after in the same conditions. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop

# bench/store.py would shadow the store package: the repo root goes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _infra import emit, service, settings

from bus.config.apply import events_for, plan
from bus.config.view import ConfigView, config_spec
from bus.events.base import Envelope, Event, TransferStatus
from bus.events.config import Destination, DestinationType
from bus.events.datafiles import Checksums, DataFileRegistered, DataFileStored
from bus.events.transfers import TransferQueued
from bus.publisher import Publisher
from bus.settings import ROOT, Settings
from bus.tokens import token_digest
from bus.topics import apply_topics
from producers.ingest.core import Accepted, Submission, decide
from producers.ingest.index import IngestIndex
from store.local import LocalStore
from store.objects import ObjectId, ObjectSpec, new_object_id

FILES = int(os.environ.get("ECPDS_BENCH_FILES", "1000"))
SIZE = 100 * 1024
CLIENTS = int(os.environ.get("ECPDS_BENCH_CLIENTS", "32"))
PRELOAD = int(os.environ.get("ECPDS_BENCH_PRELOAD", "19000"))
TOKEN = "bench-token"
# the tree the API runner is started from: another checkout (e.g. the previous commit) gives a
# before/after comparison of the API under the same load generator and broker
API_ROOT = Path(os.environ.get("ECPDS_BENCH_API_ROOT", str(ROOT)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid(s: Settings) -> int | None:
    """The bench broker's pid (kafka.sh keeps it beside the data), if known."""
    pid_file = s.var_dir / "kafka" / "kafka.pid"
    with contextlib.suppress(OSError, ValueError):
        return int(pid_file.read_text().strip())
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Runner:
    """The ingest API process."""

    def __init__(self, s: Settings, u: str, store: Path, tokens: Path) -> None:
        self.port = free_port()
        self.argv = [
            sys.executable, "-m", "producers.api.runner", "--port", str(self.port),
            "--config-topic", f"bench.{u}.config", "--datafiles-topic", f"bench.{u}.datafiles",
            "--transfers-topic", f"bench.{u}.transfers", "--store-root", str(store),
            "--tokens-file", str(tokens),
        ]  # fmt: skip
        self.env = {**os.environ, **s.infra_env(), "ECPDS_LOG_LEVEL": "WARNING"}
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> float:
        started = time.perf_counter()
        self.process = subprocess.Popen(  # noqa: ASYNC220 - starts at once, never waited on
            self.argv, cwd=API_ROOT, env=self.env, stdout=subprocess.DEVNULL
        )
        async with httpx.AsyncClient() as client:
            while time.perf_counter() - started < 300:
                if self.process.poll() is not None:
                    sys.exit(f"ingest runner exited with {self.process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"http://127.0.0.1:{self.port}/api/v1/openapi.json")
                    if r.status_code == 200:
                        return time.perf_counter() - started
                await asyncio.sleep(0.1)
        sys.exit("ingest runner did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


async def put_all(port: int, files: list[Path], tag: str) -> dict[str, float]:
    """Put every file with CLIENTS concurrent clients; wall time and per-request latency."""
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for path in files:
        queue.put_nowait(path)
    latencies: list[float] = []
    url = f"http://127.0.0.1:{port}/api/v1/datafiles"

    async def client() -> None:
        # aiohttp: a lighter client than httpx, so the load generator takes less of the CPU
        # the server needs (both share this 2-core machine)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            while not queue.empty():
                path = queue.get_nowait()
                data = path.read_bytes()
                begun = time.perf_counter()
                params = {"destination": "bench", "target": f"{tag}/{path.name}"}
                async with c.post(url, params=params, data=data) as r:
                    if r.status != 201:
                        raise RuntimeError(f"put failed: {r.status} {await r.text()}")
                    await r.read()
                latencies.append(time.perf_counter() - begun)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "files": len(files),
        "seconds": round(wall, 3),
        "files_per_s": round(len(files) / wall, 1),
        "ms_per_file_wall": round(wall / len(files) * 1000, 3),
        "latency_ms_p50": round(latencies[len(latencies) // 2] * 1000, 2),
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


async def best_of(port: int, files: list[Path], tag: str) -> dict[str, float]:
    """The faster of two half batches: a neighbour's burst on this shared machine should not
    decide the growth ratio."""
    half = len(files) // 2
    runs = [
        await put_all(port, files[:half], f"{tag}1"),
        await put_all(port, files[half:], f"{tag}2"),
    ]
    return min(runs, key=lambda run: run["ms_per_file_wall"])


def index_cost(stored: int, rounds: int = 2_000) -> float:
    """Microseconds per submission spent in decide() + applying its events to an index that
    already holds ``stored`` files (the part of a put whose cost could grow with the store)."""
    index, now = IngestIndex(), datetime.now(UTC)
    dest = Destination(
        name="bench", type=DestinationType.DISSEMINATION, transfer_group="default",
        max_pending=10**9,
    )  # fmt: skip
    view = ConfigView(destinations={"bench": dest})

    def fold(target: str) -> None:
        decision = decide(Submission(destination="bench", target=target), view, index, now)
        assert isinstance(decision, Accepted)
        dfid = new_object_id()
        env = Envelope(event_id=dfid, occurred_at=now, source="b", correlation_id=dfid)
        index.apply(
            DataFileRegistered(
                envelope=env, data_file_id=dfid, destination="bench", target=target,
                transfer_group="default", expiry_time=decision.plan.expiry_time,
            )
        )  # fmt: skip
        index.apply(
            TransferQueued(
                envelope=env, transfer_id=f"{dfid}-bench", destination="bench",
                data_file_id=dfid, target=target, status=TransferStatus.WAIT, priority=99,
                queue_time=now, expiry_time=decision.plan.expiry_time, size=1,
            )
        )  # fmt: skip

    for i in range(stored):
        fold(f"pre/{i}")
    best = float("inf")
    for attempt in range(3):  # best of three: the CPU is shared with the neighbours
        started = time.perf_counter()
        for i in range(rounds):
            fold(f"new{attempt}/{i}")
        best = min(best, time.perf_counter() - started)
    return best / rounds * 1e6


def cp_baseline(files: list[Path], dest: Path) -> dict[str, float]:
    dest.mkdir()
    started = time.perf_counter()
    subprocess.run(["cp", *map(str, files), str(dest)], check=True)
    cp = time.perf_counter() - started
    subprocess.run(["sync"], check=True)
    cp_sync = time.perf_counter() - started
    return {
        "cp_files_per_s": round(len(files) / cp, 1),
        "cp_sync_files_per_s": round(len(files) / cp_sync, 1),
    }


async def store_baseline(files: list[Path], root: Path) -> dict[str, float]:
    """The same files put straight into a durable LocalStore by CLIENTS concurrent tasks
    (ADLER32 + MD5, as the API does): what the store alone allows, no HTTP, no Kafka."""
    store = LocalStore(root, durable=True, max_puts=16)
    queue = list(files)

    async def body(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async def worker() -> None:
        while queue:
            path = queue.pop()
            await store.put(body(path.read_bytes()), ObjectSpec(name=path.name, md5=True))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    wall = time.perf_counter() - started
    await store.close()
    return {"store_put_files_per_s": round(len(files) / wall, 1)}


async def _tiny() -> AsyncIterator[bytes]:
    yield b"x"


async def preload(s: Settings, u: str, store_root: Path, count: int) -> float:
    """Pre-load ``count`` stored files: objects in the store, events on the topics."""
    started = time.perf_counter()
    store = LocalStore(store_root, durable=False)
    now = datetime.now(UTC)
    events: list[tuple[str, str, Event]] = []

    def env(dfid: str) -> Envelope:
        return Envelope(
            event_id=uuid.uuid4().hex, occurred_at=now, source="bench", correlation_id=dfid
        )

    async def one(i: int) -> None:
        dfid = new_object_id()
        meta = await store.put(_tiny(), ObjectSpec(name=f"pre/{i}", id=ObjectId(dfid)))
        expiry = now + timedelta(days=2)
        events.extend(
            [
                (f"bench.{u}.datafiles", dfid, DataFileRegistered(
                    envelope=env(dfid), data_file_id=dfid, destination="bench",
                    target=f"pre/{i}", transfer_group="default", expiry_time=expiry,
                )),
                (f"bench.{u}.datafiles", dfid, DataFileStored(
                    envelope=env(dfid), data_file_id=dfid, guid=meta.id, store=store.name,
                    location=meta.id, size=1, checksums=Checksums(adler32=meta.checksums.adler32),
                    duration_ms=0,
                )),
                (f"bench.{u}.transfers", "bench", TransferQueued(
                    envelope=env(dfid), transfer_id=f"{dfid}-bench", destination="bench",
                    data_file_id=dfid, target=f"pre/{i}", status=TransferStatus.WAIT,
                    priority=99, queue_time=now, expiry_time=expiry, size=1,
                )),
            ]
        )  # fmt: skip

    for start in range(0, count, 64):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 64))))
    await store.close()
    async with Publisher(s.kafka_bootstrap) as publisher:
        for start in range(0, len(events), 6000):
            await publisher.publish_many(events[start : start + 6000])
    return time.perf_counter() - started


async def main() -> dict[str, Any]:
    s = settings()
    service(s, "kafka/kafka.sh")
    u = uuid.uuid4().hex[:8]
    (s.var_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ingest-", dir=s.var_dir))
    try:
        sources = work / "sources"
        sources.mkdir()
        files = []
        for i in range(FILES):
            path = sources / f"f{i:05d}.bin"
            path.write_bytes(os.urandom(SIZE))
            files.append(path)
        tokens = work / "api-tokens"
        tokens.write_text(f"bench:{token_digest(TOKEN)}\n")
        await apply_topics(s.kafka_bootstrap, [config_spec(f"bench.{u}.config")])
        dest = Destination(
            name="bench",
            type=DestinationType.DISSEMINATION,
            transfer_group="default",
            max_pending=10_000_000,
        )
        async with Publisher(s.kafka_bootstrap) as publisher:
            for key, event in events_for(plan(ConfigView(), [dest]), source="bench"):
                await publisher.publish(f"bench.{u}.config", key, event)
        baseline = cp_baseline(files, work / "cp")
        baseline.update(await store_baseline(files, work / "store-baseline"))
        store_root = work / "store"
        runner = Runner(s, u, store_root, tokens)
        await runner.start()
        assert runner.process is not None
        pids = {"api": runner.process.pid, "kafka broker": broker_pid(s)}
        try:
            before = {n: cpu_seconds(p) for n, p in pids.items() if p is not None}
            own = time.process_time()
            first = await put_all(runner.port, files, "a")  # into an empty store
            # where a put's CPU goes (2 cores): what the target is bounded by on this machine
            cpu_ms = {n: round((cpu_seconds(p) - before[n]) * 1000 / FILES, 3)
                      for n, p in pids.items() if p is not None}  # fmt: skip
            cpu_ms["load generator (this process)"] = round(
                (time.process_time() - own) * 1000 / FILES, 3
            )
            at_1k = await best_of(runner.port, files, "b")  # ~1,000 already stored
        finally:
            runner.stop()
        preload_s = await preload(s, u, store_root, PRELOAD)
        runner = Runner(s, u, store_root, tokens)
        restart_s = await runner.start()
        try:
            at_20k = await best_of(runner.port, files, "c")  # ~21,000 already stored
        finally:
            runner.stop()
        return {
            "benchmark": "ingest",
            "files": FILES,
            "file_size": SIZE,
            "clients": CLIENTS,
            "api_root": str(API_ROOT),
            "put": first,
            "cpu_ms_per_file": cpu_ms,
            "files_per_s": first["files_per_s"],
            **baseline,
            "ratio_to_cp": round(first["files_per_s"] / baseline["cp_files_per_s"], 3),
            "ratio_to_cp_sync": round(first["files_per_s"] / baseline["cp_sync_files_per_s"], 3),
            "ratio_to_store_put": round(
                first["files_per_s"] / baseline["store_put_files_per_s"], 3
            ),
            "target_files_per_s": 300,
            "meets_target": first["files_per_s"] >= 300,
            "growth": {
                "stored_before_small": FILES,
                "ms_per_file_small": at_1k["ms_per_file_wall"],
                "stored_before_large": 2 * FILES + PRELOAD,
                "ms_per_file_large": at_20k["ms_per_file_wall"],
                "ratio_large_to_small": round(
                    at_20k["ms_per_file_wall"] / at_1k["ms_per_file_wall"], 3
                ),
                "batch_small": at_1k,
                "batch_large": at_20k,
                "preload_seconds": round(preload_s, 1),
                "index_us_per_put_small": round(index_cost(FILES), 2),
                "index_us_per_put_large": round(index_cost(2 * FILES + PRELOAD), 2),
                "restart_with_index_rebuild_seconds": round(restart_s, 2),
            },
            "load_average": os.getloadavg(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    emit(uvloop.run(main()))
