"""End-to-end dissemination benchmark: N small files put through the ingest API and delivered to
one SFTP destination on loopback, beside ``rclone copy --transfers 16`` in the same run.

``python bench/dissemination.py [N]`` (default 5,000 files of 10 KiB; ``ECPDS_BENCH_E2E_FILES``)
starts, as ``ecpds up`` does, the ingest API, the scheduler and one mover as subprocesses on
private topics of the bench Kafka (``bench/_infra.py``) and a private OpenSSH sshd (key auth,
``bench/sftp.py``), and the projector (``python -m projections.runner``) on those topics into a
fresh read-model schema of the bench PostgreSQL (dropped at the end); the monitor is not part of
the run. One warm-up file goes through first (groups joined, connections open). Then the N files
are POSTed to ``/api/v1/datafiles`` (32 at a time) and the run ends at the last
``TransferSucceeded``: files/s is N over first put -> last DONE; latency is each file's
``DataFileStored`` -> ``TransferSucceeded`` (event times), p50/p99. The delivered files are
checked on the server (count, sizes), and the CPU each component used per file is reported (the
machine has 2 cores: it says where a file's cost goes). The clock stops at the last DONE event,
not when the read model has it: the projection lag at that moment (last DONE -> the read model
shows every transfer DONE, polled every 50 ms) is reported beside it. Baselines, same files,
same server, components stopped: ``rclone copy --transfers 16 --sftp-disable-hashcheck`` (the
ratio's baseline), and rclone's default mode, which runs ``md5sum`` over an ssh exec channel per
file, on a 200-file sample. Target >= 200 files/s; ratio = ours / rclone (goal >= 0.5).
Everything binds 127.0.0.1; the work directory is removed at the end; one JSON object is
printed.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import aiohttp
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _infra import emit, service, settings
from sftp import Sshd

# bench/projections.py would shadow the projections package while bench/ leads sys.path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from bus.events import Event  # noqa: E402
from bus.events.datafiles import DataFileStored  # noqa: E402
from bus.events.transfers import (  # noqa: E402
    TransferQueued,
    TransferScheduled,
    TransferStarted,
    TransferSucceeded,
)
from projections.db import connect  # noqa: E402
from tests.e2e.conftest import Stack, Tail, create_topics  # noqa: E402

FILES = (
    int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("ECPDS_BENCH_E2E_FILES", "5000"))
)
SIZE = 10 * 1024
PUTS_AT_ONCE = 32
TRANSFERS = 16  # rclone's --transfers
# the destination's and host's max connections: as rclone's --transfers unless told
CONNECTIONS = int(os.environ.get("ECPDS_BENCH_E2E_CONNECTIONS", str(TRANSFERS)))
PLAIN_SAMPLE = min(FILES, 200)  # files for rclone's default (hash-checking) mode


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU time (user + system) used so far by each component process, and each one's system
    time under ``<name> (system)`` (the kernel's share: syscalls, fsync, sockets)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, process in stack.processes.items():
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[name] = (int(fields[11]) + int(fields[12])) / tick
        used[f"{name} (system)"] = int(fields[12]) / tick
    return used


def infra_cpu_seconds(sshd_pid: int) -> dict[str, float]:
    """CPU time used so far by the servers the components talk to: the bench Kafka broker, the
    PostgreSQL server (with its backends) and the sshd with its per-session children (a session
    that ended counts no more: the pooled ones last the run)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    command: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command[int(entry.name)] = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick

    def under(pid: int, root: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False

    bench_var = os.environ["ECPDS_VAR"].encode()
    pg = [p for p, c in command.items() if b"bin/postgres" in c and bench_var in c]
    used = {"kafka broker": 0.0, "postgresql": 0.0, "sshd": 0.0}
    for pid, seconds in cpu.items():
        if b"kafka.Kafka" in command[pid] and bench_var in command[pid]:
            used["kafka broker"] += seconds
        elif pg and under(pid, pg[0]):
            used["postgresql"] += seconds
        elif under(pid, sshd_pid):
            used["sshd"] += seconds
    return used


def machine_busy_seconds() -> float:
    """CPU time (all cores, everything but idle and iowait) used so far on this machine."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def hops(events: list[Event], dest: str) -> dict[str, dict[str, float]]:
    """Times (ms: p50, p90, p99, max, mean) of each step of the order -> outcome loop, from event
    times: scheduled -> started (the order reaching a mover), started -> succeeded (the
    delivery), succeeded -> the next scheduled (the scheduler freeing the slot and ordering
    the next file)."""
    scheduled: dict[str, float] = {}
    started: dict[str, float] = {}
    steps: dict[str, list[float]] = {"scheduled_to_started": [], "started_to_succeeded": []}
    done_times: list[float] = []
    order_times: list[float] = []
    for e in events:
        if getattr(e, "destination", None) != dest:
            continue
        at = e.envelope.occurred_at.timestamp() * 1000
        tid = getattr(e, "transfer_id", "")
        if isinstance(e, TransferScheduled):
            scheduled.setdefault(tid, at)
            order_times.append(at)
        elif isinstance(e, TransferStarted) and tid in scheduled:
            started.setdefault(tid, at)
            steps["scheduled_to_started"].append(at - scheduled[tid])
        elif isinstance(e, TransferSucceeded) and tid in started:
            steps["started_to_succeeded"].append(at - started[tid])
            done_times.append(at)
    order_times.sort()
    gaps = []
    for at in done_times:
        i = bisect.bisect_left(order_times, at)
        if i < len(order_times):
            gaps.append(order_times[i] - at)
    steps["succeeded_to_next_scheduled"] = gaps
    return {
        name: {
            "p50": round(percentile(values, 0.5), 1),
            "p90": round(percentile(values, 0.9), 1),
            "p99": round(percentile(values, 0.99), 1),
            "max": round(max(values), 1),
            "mean": round(sum(values) / len(values), 1),
        }
        for name, values in steps.items()
        if values
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def config(stack: Stack, sshd: Sshd, remote: Path) -> str:
    name = f"bench-{stack.tag}"
    return (
        f"transfer_groups:\n  - name: {stack.group}\n"
        f"hosts:\n  - id: {name}\n    nickname: bench sftp\n    type: dissemination\n"
        f"    protocol: sftp\n    address: 127.0.0.1:{sshd.port}{remote}\n    login: root\n"
        f"    max_connections: {CONNECTIONS}\n    options:\n"
        f'      sftp.privateKeyFile: "{sshd.key}"\n      sftp.fingerPrint: "{sshd.fingerprint}"\n'
        f"destinations:\n  - name: {name}\n    type: dissemination\n"
        f"    transfer_group: {stack.group}\n    max_connections: {CONNECTIONS}\n"
        # far above N: the ingest index over-counts pending transfers under concurrent puts
        # (producers/ingest/index.py _queued/_move add pending() that includes open uploads)
        f"    max_pending: 100000000\n"
        f"associations:\n  - {{destination: {name}, host: {name}, priority: 0}}\n"
    )


async def put_all(stack: Stack, dest: str, files: dict[str, bytes]) -> None:
    """POST every file, ``PUTS_AT_ONCE`` at a time (aiohttp: a lighter client than httpx, so
    the load generator takes less of the shared CPU)."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    url = f"{stack.url}/api/v1/datafiles"
    connector = aiohttp.TCPConnector(limit=PUTS_AT_ONCE)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        todo = iter(files.items())

        async def worker() -> None:
            for name, data in todo:
                params = {"destination": dest, "target": name}
                async with session.post(url, params=params, data=data) as response:
                    if response.status != 201:
                        raise SystemExit(f"put {name}: {response.status} {await response.text()}")

        await asyncio.gather(*(worker() for _ in range(PUTS_AT_ONCE)))


def start_projector(stack: Stack, schema: str) -> None:
    """The projector on this run's private topics (``e2e.<tag>.*``) into ``schema``."""
    stack._spawn(
        "projector",
        [
            "-m", "projections.runner", "--schema", schema, "--name", f"bench-{stack.tag}",
            "--pattern", rf"^e2e\.{stack.tag}\..+$",
        ],
    )  # fmt: skip


async def projected_at(dsn: str, schema: str, dest: str, count: int, timeout: float) -> float:
    """The wall time at which the read model first shows ``count`` DONE transfers of ``dest``
    (polled every 50 ms on one connection; a cheap indexed count)."""
    deadline = time.time() + timeout
    conn = await connect(dsn, schema, autocommit=True)
    try:
        while time.time() < deadline:
            try:
                cur = await conn.execute(
                    "SELECT count(*) FROM transfers WHERE destination = %s AND status = 'DONE'",
                    (dest,),
                )
                row = await cur.fetchone()
            except psycopg.errors.UndefinedTable:  # the projector has not migrated yet
                row = None
            if row is not None and int(row[0]) >= count:
                return time.time()
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise SystemExit(f"the read model did not show {count} DONE transfers within {timeout} s")


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await connect(dsn, "public", autocommit=True)
    try:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
    finally:
        await conn.close()


def rclone(source: Path, sshd: Sshd, remote: Path, work: Path, *extra: str) -> float:
    """Seconds ``rclone copy --transfers 16 [extra]`` takes for ``source`` to ``remote``."""
    empty = work / "rclone.conf"
    empty.write_text("")
    remote.mkdir()
    argv = [
        "rclone", "copy", str(source), f":sftp:{remote}", "--transfers", str(TRANSFERS),
        "--sftp-host", "127.0.0.1", "--sftp-port", str(sshd.port), "--sftp-user", "root",
        "--sftp-key-file", str(sshd.key), "--config", str(empty), *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    assert len(list(remote.iterdir())) == len(list(source.iterdir()))
    return elapsed


async def run(work: Path) -> dict[str, object]:
    bench = settings()
    service(bench, "kafka/kafka.sh")
    service(bench, "pg/pg.sh")
    os.environ.setdefault("ECPDS_LOG_LEVEL", "WARNING")
    sshd = Sshd(work / "sshd")
    ours_dir, source, sample = work / "sshd" / "ours", work / "src", work / "sample"
    for folder in (ours_dir, source, sample):
        folder.mkdir()
    stack = Stack(bench.kafka_bootstrap, work / "stack", uuid.uuid4().hex[:8])
    (stack.root / "secrets").mkdir(parents=True)
    dest = f"bench-{stack.tag}"
    schema = f"bench_e2e_{stack.tag}"
    files = {f"p{i:05}.bin": os.urandom(SIZE) for i in range(FILES)}
    for name, data in files.items():
        (source / name).write_bytes(data)
    for name in list(files)[:PLAIN_SAMPLE]:
        (sample / name).write_bytes(files[name])
    tail = Tail(bench.kafka_bootstrap, [stack.topic("transfers"), stack.topic("datafiles")])
    try:
        await create_topics(stack)
        await asyncio.to_thread(stack.start_api)
        stack.start_scheduler()
        stack.start_mover(capacity=2 * CONNECTIONS)
        start_projector(stack, schema)
        stack.tail = tail
        await tail.start()
        await stack.apply(config(stack, sshd, ours_dir))
        await put_all(stack, dest, {"warm-up.bin": b"w" * SIZE})
        await tail.all_done(dest, 1, timeout=120)
        await projected_at(bench.pg_dsn, schema, dest, 1, timeout=120)
        await tail.stop()  # not decoding events while the run takes the CPU; read them after

        cpu_before, own_before = cpu_seconds(stack), time.process_time()
        infra_before, busy_before = infra_cpu_seconds(sshd.process.pid), machine_busy_seconds()
        first_put = time.time()
        projected = asyncio.create_task(
            projected_at(bench.pg_dsn, schema, dest, FILES + 1, timeout=120 + FILES / 10)
        )
        await put_all(stack, dest, files)
        puts_s = time.time() - first_put
        # the end is seen on the read model (a cheap count every 50 ms); the events are read
        # afterwards, so decoding them does not take CPU from the run
        projected_s = await projected
        cpu_after, own_after = cpu_seconds(stack), time.process_time()
        infra_after, busy_after = infra_cpu_seconds(sshd.process.pid), machine_busy_seconds()
        tail = Tail(bench.kafka_bootstrap, [stack.topic("transfers"), stack.topic("datafiles")])
        await tail.start()
        await tail.all_done(dest, FILES + 1, timeout=60 + FILES / 20)
        cpu_ms = {n: round((cpu_after[n] - cpu_before[n]) * 1000 / FILES, 2) for n in cpu_after}
        cpu_ms["load generator (this process)"] = round((own_after - own_before) * 1000 / FILES, 2)
        for name, seconds in infra_after.items():
            cpu_ms[name] = round((seconds - infra_before[name]) * 1000 / FILES, 2)
        cpu_ms["whole machine"] = round((busy_after - busy_before) * 1000 / FILES, 2)
        loop_ms = hops(tail.events, dest)
        succeeded: dict[str, TransferSucceeded] = {}
        for e in tail.of(TransferSucceeded, dest):
            succeeded.setdefault(e.transfer_id, e)
        last_done = max(e.envelope.occurred_at for e in succeeded.values()).timestamp()
        ours_s = last_done - first_put
        projection_lag_s = max(0.0, projected_s - last_done)
        file_of = {e.transfer_id: e.data_file_id for e in tail.of(TransferQueued, dest)}
        stored: dict[str, datetime] = {
            e.data_file_id: e.envelope.occurred_at
            for e in tail.events
            if isinstance(e, DataFileStored)
        }
        latencies = [
            (e.envelope.occurred_at - stored[file_of[tid]]).total_seconds() * 1000
            for tid, e in succeeded.items()
            if file_of.get(tid) in stored
        ]
        delivered = [p for p in ours_dir.iterdir() if not p.name.startswith(".")]
        assert len(delivered) == FILES + 1, f"{len(delivered)} files on the server"
        assert all(p.stat().st_size == SIZE for p in delivered)
        for name in ("projector", "mover", "scheduler", "api"):  # a quiet machine for rclone
            await asyncio.to_thread(stack.stop, name)
        # rclone verifies each file by running md5sum over an ssh exec channel unless told
        # not to: ~7 files/s here; the fast variant is the baseline, the default is sampled
        rclone_s = await asyncio.to_thread(
            rclone, source, sshd, work / "sshd" / "rclone", work, "--sftp-disable-hashcheck"
        )
        plain_s = await asyncio.to_thread(rclone, sample, sshd, work / "sshd" / "plain", work)
    finally:
        # processes first, synchronously: an interrupted loop must not leave them running
        for name in ("projector", "mover", "scheduler", "api"):
            stack.stop(name)
        sshd.stop()
        with contextlib.suppress(Exception):
            await drop_schema(bench.pg_dsn, schema)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await tail.stop()
    ours_rate, rclone_rate = FILES / ours_s, FILES / rclone_s
    return {
        "benchmark": "dissemination_end_to_end_sftp",
        "files": FILES,
        "file_bytes": SIZE,
        "connections": CONNECTIONS,
        "puts_at_once": PUTS_AT_ONCE,
        "first_put_to_last_done_s": round(ours_s, 2),
        "puts_only_s": round(puts_s, 2),
        "files_per_s": round(ours_rate, 1),
        "latency_stored_to_done_ms": {
            "p50": round(percentile(latencies, 0.50), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
            "count": len(latencies),
        },
        "order_loop_ms": loop_ms,
        "projection_lag_at_last_done_s": round(projection_lag_s, 2),
        "cpu_ms_per_file": cpu_ms,
        "cores": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "rclone_copy_transfers_16_disable_hashcheck_s": round(rclone_s, 2),
        "rclone_files_per_s": round(rclone_rate, 1),
        "rclone_default_hashcheck_sample_files": PLAIN_SAMPLE,
        "rclone_default_hashcheck_files_per_s": round(PLAIN_SAMPLE / plain_s, 1),
        "ratio_vs_rclone": round(ours_rate / rclone_rate, 3),
        "target_files_per_s": 200,
        "target_ratio": 0.5,
        "meets_target": ours_rate >= 200,
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-e2e-"))
    try:
        emit(asyncio.run(run(work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
