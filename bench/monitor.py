"""Monitor pages under load: 2,000 destinations and 1,000,000 transfers in the read model,
overview and destination page latency (p50/p95/p99) measured by ``wrk`` from a second process,
beside a static asset served by the same server in the same run (the baseline).

The read model is filled directly with SQL (``generate_series``) in a schema of its own: this
measures the monitor, not the projector (bench/projections.py does that). The monitor runs as
its own process (``python -m projections.monitor.runner``) on a free port, authenticated by a
script token. Target: overview and destination page p95 under 150 ms.

    .venv/bin/python bench/monitor.py [--destinations 2000] [--transfers 1000000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from _infra import emit, service, settings

from bus.settings import ROOT

# bench/projections.py would shadow the projections package while bench/ leads sys.path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from projections.db import connect  # noqa: E402
from projections.migrate import migrate  # noqa: E402

SCHEMA = "bench_monitor"
TOKEN = "bench-monitor-token"
LUA = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""

FILL = [
    "ALTER TABLE transfers DISABLE TRIGGER transfers_counted",
    """INSERT INTO destinations (name, defined, type, transfer_group, country, status,
           current_host, last_success_at, last_error_at, last_error)
       SELECT 'dest-' || lpad(i::text, 4, '0'), true, 'DISSEMINATION', 'europe', 'fr',
              (ARRAY['EXEC','WAIT','RETR','HOLD','STOP','SCHE','RSTR'])[1 + i % 7],
              'host-' || i, timestamptz '2026-03-01' + i * interval '1 s',
              timestamptz '2026-03-01' + i * interval '2 s', 'connection refused'
         FROM generate_series(0, %(d)s - 1) i""",
    """INSERT INTO hosts (id, defined, protocol, address, active, transfers_done)
       SELECT 'host-' || i, true, 'sftp', '127.0.0.1:22', true, 500
         FROM generate_series(0, %(d)s - 1) i""",
    """INSERT INTO associations (destination, host, defined, priority)
       SELECT 'dest-' || lpad(i::text, 4, '0'), 'host-' || i, true, 0
         FROM generate_series(0, %(d)s - 1) i""",
    """INSERT INTO transfers (transfer_id, destination, data_file_id, target, status, priority,
           queue_time, size, attempt, host_id, started_at, finished_at, updated_at, bytes_sent,
           bytes_per_second, verification)
       SELECT 'transfer-' || i, 'dest-' || lpad((i % %(d)s)::text, 4, '0'), 'file-' || i,
              'data/' || i || '.grib',
              CASE WHEN i % 50 = 0 THEN 'WAIT' WHEN i % 97 = 0 THEN 'FAIL'
                   WHEN i % 101 = 0 THEN 'EXEC' WHEN i % 103 = 0 THEN 'RETR' ELSE 'DONE' END,
              i % 100, timestamptz '2026-03-01' + i * interval '10 ms', 1000 + i % 100000, 1,
              'host-' || (i % %(d)s), timestamptz '2026-03-01' + i * interval '10 ms',
              timestamptz '2026-03-01' + i * interval '11 ms',
              timestamptz '2026-03-01' + i * interval '11 ms', 1000 + i % 100000, 1e6, 'SIZE'
         FROM generate_series(0, %(n)s - 1) i""",
    """INSERT INTO destination_status_counts (destination, status, count)
       SELECT destination, status, count(*) FROM transfers GROUP BY 1, 2""",
    "ALTER TABLE transfers ENABLE TRIGGER transfers_counted",
    """INSERT INTO transfer_history (event_id, transfer_id, occurred_at, event_type,
           destination, status, attempt, host_id, mover_id, message, bytes, source)
       SELECT gen_random_uuid(), 'transfer-' || i, timestamptz '2026-03-01' + k * interval '1 s',
              (ARRAY['TransferQueued','TransferScheduled','TransferStarted','TransferSucceeded'])[k],
              'dest-' || lpad((i % %(d)s)::text, 4, '0'), NULL, 1, 'host-0', 'mover-0', NULL,
              1000, 'bench'
         FROM generate_series(0, 20000 - 1) i, generate_series(1, 4) k""",
    """INSERT INTO destination_minutes (destination, minute, files, bytes, errors)
       SELECT 'dest-' || lpad(i::text, 4, '0'), timestamptz '2026-03-01' + m * interval '1 min',
              5 + (i + m) % 20, 1000000 * (1 + m % 7), m % 3
         FROM generate_series(0, %(d)s - 1) i, generate_series(0, 59) m""",
    "ANALYZE",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def fill(dsn: str, destinations: int, transfers: int) -> float:
    conn = await connect(dsn, "public", autocommit=True)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    finally:
        await conn.close()
    await migrate(dsn, SCHEMA)
    started = time.perf_counter()
    conn = await connect(dsn, SCHEMA, autocommit=True)
    try:
        for statement in FILL:
            await conn.execute(
                statement.replace("%(d)s", str(destinations)).replace(  # type: ignore[arg-type]
                    "%(n)s", str(transfers)
                )
            )
    finally:
        await conn.close()
    return time.perf_counter() - started


def commits(dsn: str, stop: threading.Event) -> None:
    """Stand in for a live projector: one committed position change per second, so every
    version-keyed rendering goes stale once a second, as with events flowing."""
    with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={SCHEMA}") as conn:
        offset = 0
        while not stop.wait(1.0):
            offset += 1
            conn.execute(
                "INSERT INTO projection_position VALUES ('bench', 'bench', 0, %s)"
                ' ON CONFLICT (projection, topic, "partition") DO UPDATE SET "offset" = %s',
                (offset, offset),
            )


def wrk(url: str, seconds: int, script: Path) -> dict[str, Any]:
    time.sleep(3.0)  # let the previous run's last requests drain
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c8",
            f"-d{seconds}s",
            "-s",
            str(script),
            "-H",
            f"Authorization: Bearer {TOKEN}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    found = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    if not found:
        sys.exit(f"wrk gave no result: {out}")
    n, errors, p50, p95, p99 = found.groups()
    return {
        "requests": int(n),
        "errors": int(errors),
        "rps": round(int(n) / seconds, 1),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--destinations", type=int, default=2000)
    parser.add_argument("--transfers", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    s = settings()
    service(s, "pg/pg.sh")
    fill_seconds = asyncio.run(fill(s.pg_dsn, args.destinations, args.transfers))
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        var = Path(tmp)
        (var / "secrets").mkdir(mode=0o700)
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        (var / "secrets" / "api-tokens").write_text(f"bench:{digest}\n")
        script = var / "p95.lua"
        script.write_text(LUA)
        port = free_port()
        env = {**os.environ, **s.infra_env(), "ECPDS_VAR": str(var), "ECPDS_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "projections.monitor.runner",
                "--schema",
                SCHEMA,
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{base}/static/monitor.css", timeout=1)  # noqa: S310
                    break
                except OSError:
                    time.sleep(0.1)
            middle = f"dest-{args.destinations // 2 + 1:04d}"
            stop = threading.Event()
            bumper = threading.Thread(target=commits, args=(s.pg_dsn, stop), daemon=True)
            bumper.start()
            results = {
                "static_baseline": wrk(f"{base}/static/monitor.css", args.seconds, script),
                "overview": wrk(f"{base}/", args.seconds, script),
                "destination": wrk(f"{base}/destinations/{middle}", args.seconds, script),
                "transfer": wrk(f"{base}/transfers/transfer-4242", args.seconds, script),
                "api_destinations": wrk(f"{base}/api/v1/destinations", args.seconds, script),
            }
            stop.set()
            bumper.join()
        finally:
            server.terminate()
            server.wait(timeout=20)
    base_p95 = results["static_baseline"]["p95_ms"] or 0.001
    emit(
        {
            "benchmark": "monitor",
            "destinations": args.destinations,
            "transfers": args.transfers,
            "fill_seconds": round(fill_seconds, 1),
            "load": "wrk -t2 -c8 (second process); read model changes every second",
            **results,
            "ratio_p95_overview_vs_static": round(results["overview"]["p95_ms"] / base_p95, 1),
            "ratio_p95_destination_vs_static": round(
                results["destination"]["p95_ms"] / base_p95, 1
            ),
            "target_p95_ms": 150,
            "overview_ok": results["overview"]["p95_ms"] < 150,
            "destination_ok": results["destination"]["p95_ms"] < 150,
        }
    )


if __name__ == "__main__":
    main()
