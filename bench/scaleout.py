"""Scale-out benchmark: files/s delivered to 20 SFTP destinations by 1, 2 and 4 mover processes
under 1 and 2 schedulers, the CPU each component spends per file, and where 2 cores plateau;
beside OpenSSH ``sftp -b`` uploading the same files over one connection in the same run.

``python bench/scaleout.py [N]`` (default 3,000 files of 10 KiB, ``ECPDS_BENCH_SCALEOUT_FILES``;
shapes ``ECPDS_BENCH_SCALEOUT_SHAPES``, default ``1x1 2x1 4x1 1x2 2x2 4x2``: movers x schedulers).
Each shape gets a fresh e2e ``Stack`` (private topics ``e2e.<tag>.*`` on the bench Kafka,
``bench/_infra.py``; transfers and orders with 4 partitions) and 20 destinations on one private
OpenSSH sshd (``bench/sftp.py``), each its own host with ``max_connections`` 4, named so that
five fall in each partition (the schedulers and movers get equal shares). The ingest API alone
takes the N files first (a destination's share after another, 32 puts at once); then the
schedulers and the movers (capacity 16 each) start as processes, as ``ecpds up`` runs them, and
drain that backlog. The clock is at the server: the files in the 20 folders, counted every
50 ms; files/s is over the middle 80% of the drain, the 10% file -> the 90% file (not the group
joins and a late member's rebalance at the start, nor the tail; ``startup_s``, processes
started -> first file, is the joins and the replay; ``drain_s`` first file -> last). CPU per
file per component is read from ``/proc/<pid>/stat`` of each process (and of the broker and
sshd) over the same window; the projector (one, into a fresh read-model schema of the bench
PostgreSQL, dropped at the end) is charged its whole cost of a file instead: from before the
puts until its read model shows every file DONE. The 2 cores are shared with whatever else
runs: ``machine_busy_fraction`` and the load average say how busy the machine was.
Baseline, same files, same server, components stopped: ``sftp -b`` with one ``put`` per file
(one connection, one file at a time), and the ratio of each shape to it. One JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _infra import emit, service, settings
from dissemination import (
    cpu_seconds,
    drop_schema,
    infra_cpu_seconds,
    machine_busy_seconds,
    projected_at,
    put_all,
    start_projector,
)
from sftp import Sshd

# bench/projections.py would shadow the projections package while bench/ leads sys.path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from bus.topics import DAY_MS, TopicSpec, apply_topics  # noqa: E402
from tests.cluster.conftest import named_in  # noqa: E402
from tests.e2e.conftest import Stack  # noqa: E402

FILES = (
    int(sys.argv[1])
    if len(sys.argv) > 1
    else int(os.environ.get("ECPDS_BENCH_SCALEOUT_FILES", "3000"))
)
SHAPES = os.environ.get("ECPDS_BENCH_SCALEOUT_SHAPES", "1x1 2x1 4x1 1x2 2x2 4x2").split()
SIZE = 10 * 1024
DESTINATIONS = 20
PARTITIONS = 4  # of the transfers and the orders topics: room for 4 movers, 2 schedulers
CONNECTIONS = 4  # each host's and destination's max_connections
CAPACITY = 16  # transfers a mover runs at once


def config(stack: Stack, sshd: Sshd, names: list[str]) -> str:
    """The transfer group, and per name a host (its own folder on the sshd) and destination."""
    hosts, dests, links = [], [], []
    for name in names:
        hosts.append(
            f"  - id: {name}\n    nickname: bench sftp\n    type: dissemination\n"
            f"    protocol: sftp\n    address: 127.0.0.1:{sshd.port}{sshd.root / name}\n"
            f"    login: root\n    max_connections: {CONNECTIONS}\n    options:\n"
            f'      sftp.privateKeyFile: "{sshd.key}"\n'
            f'      sftp.fingerPrint: "{sshd.fingerprint}"\n'
        )
        dests.append(
            f"  - name: {name}\n    type: dissemination\n    transfer_group: {stack.group}\n"
            f"    max_connections: {CONNECTIONS}\n    max_pending: 100000000\n"
        )
        links.append(f"  - {{destination: {name}, host: {name}, priority: 0}}\n")
    return (
        f"transfer_groups:\n  - name: {stack.group}\nhosts:\n{''.join(hosts)}"
        f"destinations:\n{''.join(dests)}associations:\n{''.join(links)}"
    )


def arrived(folders: list[Path]) -> int:
    return sum(1 for f in folders for e in os.scandir(f) if not e.name.startswith("."))


def cpu_now(stack: Stack, sshd: Sshd) -> dict[str, float]:
    """CPU seconds so far: each component process, the broker, the sshd, the machine."""
    used = {k: v for k, v in cpu_seconds(stack).items() if not k.endswith("(system)")}
    infra = infra_cpu_seconds(sshd.process.pid)
    return {
        **used,
        "kafka broker": infra["kafka broker"],
        "sshd": infra["sshd"],
        "whole machine": machine_busy_seconds(),
    }


async def shape(work: Path, sshd: Sshd, movers: int, schedulers: int) -> dict[str, Any]:
    """One run: the backlog of FILES put, then drained by ``movers`` x ``schedulers``."""
    bench = settings()
    stack = Stack(
        bench.kafka_bootstrap, work / f"stack-{movers}x{schedulers}", uuid.uuid4().hex[:8]
    )
    (stack.root / "secrets").mkdir(parents=True)
    names = [named_in(i % PARTITIONS, f"so{i}-{stack.tag}") for i in range(DESTINATIONS)]
    folders = [sshd.root / n for n in names]
    for folder in folders:
        folder.mkdir()
    specs = [
        TopicSpec(stack.orders, "destination", PARTITIONS, "delete", DAY_MS, (), "bench orders"),
        # as the catalogue has it: schedulers starting together then find nothing to align
        # (bus/topics.py's alignment raced between two of them, and one exited)
        TopicSpec(stack.topic("movers"), "mover id", PARTITIONS, "delete", DAY_MS, (), "movers"),
    ]
    await apply_topics(stack.kafka, specs)
    schema = f"bench_so_{stack.tag}"
    try:
        await asyncio.to_thread(stack.start_api)
        start_projector(stack, schema)
        await stack.apply(config(stack, sshd, names))
        await asyncio.sleep(3)  # the projector migrated and joined before the files
        projector_before = cpu_seconds(stack)["projector"]
        files = {f"f{i:05}.bin": os.urandom(SIZE) for i in range(FILES)}
        per_dest: dict[str, dict[str, bytes]] = {}
        for i, (target, data) in enumerate(files.items()):
            per_dest.setdefault(names[i % DESTINATIONS], {})[target] = data
        for destination, its_files in per_dest.items():  # 32 puts at once, not 32 per destination
            await put_all(stack, destination, its_files)

        started = time.monotonic()
        for n in range(schedulers):
            stack.start_scheduler()  # one consumer group: the same app id, another process
            stack.processes[f"scheduler-{n + 1}"] = stack.processes.pop("scheduler")
        for n in range(movers):
            stack.start_mover(f"mover-{n + 1}", capacity=CAPACITY)
        # the window: from the 10% to the 90% file at the server (not the joins and the
        # rebalance a late member causes at the start, nor the last destinations' tail)
        low, high = FILES // 10, FILES - FILES // 10
        first = 0.0
        marks: dict[int, tuple[float, dict[str, float]]] = {}
        deadline = started + 120 + FILES / 5
        while (count := await asyncio.to_thread(arrived, folders)) < FILES:
            first = first or (time.monotonic() if count else 0.0)
            for mark in (low, high):
                if count >= mark and mark not in marks:
                    marks[mark] = (time.monotonic(), cpu_now(stack, sshd))
            if time.monotonic() > deadline:
                raise SystemExit(f"{movers}x{schedulers}: {count}/{FILES} delivered in time")
            await asyncio.sleep(0.05)
        ended = time.monotonic()
        dead = {n: p.returncode for n, p in stack.processes.items() if p.poll() is not None}
        if dead:  # a shape that lost a process measures another shape
            raise SystemExit(f"{movers}x{schedulers}: exited {dead}: {stack.log(min(dead))}")
        for mark in (low, high):  # crossed between the last two looks
            marks.setdefault(mark, (ended, cpu_now(stack, sshd)))
        (t_low, before), (t_high, after) = marks[low], marks[high]
        # the projector's whole cost of a file: its registration, queueing and delivery events
        for name in names:
            await projected_at(bench.pg_dsn, schema, name, len(per_dest[name]), 120)
        projector_ms = (cpu_seconds(stack)["projector"] - projector_before) * 1000 / FILES
        counted = high - low
        cpu_ms = {k: round((after[k] - before[k]) * 1000 / counted, 2) for k in after}
        cpu_ms.pop("projector")  # its share of the window only: its whole cost is below
        cpu_ms["projector (whole file)"] = round(projector_ms, 2)
        for kind in ("scheduler", "mover"):
            cpu_ms[f"{kind}s (all)"] = round(
                sum(v for k, v in cpu_ms.items() if k.startswith(f"{kind}-")), 2
            )
        return {
            "movers": movers,
            "schedulers": schedulers,
            "files_per_s": round(counted / (t_high - t_low), 1),
            "startup_s": round((first or ended) - started, 1),
            "drain_s": round(ended - (first or ended), 2),
            "cpu_ms_per_file": cpu_ms,
            "machine_busy_fraction": round(
                (after["whole machine"] - before["whole machine"])
                / ((t_high - t_low) * (os.cpu_count() or 1)),
                2,
            ),
        }
    finally:
        await asyncio.gather(*(asyncio.to_thread(stack.stop, n) for n in list(stack.processes)))
        with contextlib.suppress(Exception):
            await drop_schema(bench.pg_dsn, schema)


def baseline(sshd: Sshd, work: Path) -> float:
    """Files/s of OpenSSH ``sftp -b`` putting FILES of the same size over one connection."""
    source, remote = work / "baseline-src", sshd.root / "baseline"
    source.mkdir()
    remote.mkdir()
    for i in range(FILES):
        (source / f"f{i:05}.bin").write_bytes(os.urandom(SIZE))
    batch = "".join(f"put {source}/f{i:05}.bin {remote}/f{i:05}.bin\n" for i in range(FILES))
    seconds = sshd.sftp_batch(batch)
    assert len(list(remote.iterdir())) == FILES
    return FILES / seconds


async def run(work: Path) -> dict[str, Any]:
    bench = settings()
    service(bench, "kafka/kafka.sh")
    service(bench, "pg/pg.sh")
    os.environ.setdefault("ECPDS_LOG_LEVEL", "WARNING")
    os.environ["ECPDS_TOPIC_PARTITIONS"] = str(PARTITIONS)
    sshd = Sshd(work / "sshd")
    try:
        sftp_rate = await asyncio.to_thread(baseline, sshd, work)
        shapes = []
        for each in SHAPES:
            movers, schedulers = (int(n) for n in each.split("x"))
            result = await shape(work, sshd, movers, schedulers)
            result["ratio_vs_sftp_batch"] = round(result["files_per_s"] / sftp_rate, 2)
            print(f"{each}: {result['files_per_s']} files/s", file=sys.stderr)
            shapes.append(result)
    finally:
        sshd.stop()
    best = max(shapes, key=lambda r: r["files_per_s"])
    return {
        "benchmark": "scaleout_sftp",
        "files": FILES,
        "file_bytes": SIZE,
        "destinations": DESTINATIONS,
        "connections_per_host": CONNECTIONS,
        "mover_capacity": CAPACITY,
        "partitions": PARTITIONS,
        "cores": os.cpu_count(),
        "sftp_batch_one_connection_files_per_s": round(sftp_rate, 1),
        "shapes": shapes,
        "best": f"{best['movers']} movers x {best['schedulers']} schedulers",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-scaleout-"))
    try:
        emit(asyncio.run(run(work)))
    finally:
        with contextlib.suppress(Exception):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
