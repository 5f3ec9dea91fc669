"""Timeliness benchmark: the prediction update per delivered file, and the timeliness grid
with 2,000 destinations x 20 products under load, each beside a baseline of the same run.

- ``update``: the watcher's fold of one delivered file (``Watcher.evolve`` of a
  ``TransferSucceeded``: the cycle classed against the prediction learnt from the last 20
  cycles, then its offset kept), 200 destinations x 20 products with 20 cycles of history
  (``--update-destinations``).
  Baselines: a plain ``dict`` update per file, and the projection handler of the same event
  (``projections.handlers``: the pure per-event cost the projector already pays). Target: under
  0.2 ms per delivered file. CPU time, best of ``ROUNDS``.
- ``grid`` (skip with ``--no-grid``): the read models filled with SQL (2,000 destinations x 20
  products x 25 daily cycles = 1,000,000 product transfers), the monitor as its own process,
  ``/timeliness`` (a page of 100 destinations x 20 products, predictions computed from the
  history) measured by ``wrk`` beside a static asset of the same server (p50/p95/p99). A
  page is made once per projector commit for every viewer (``VersionCache``): its first making
  is timed alone (``first_making_ms``, what the first viewer after a commit waits), then wrk
  measures the viewers it serves; the read models do not change during the run.

    .venv/bin/python bench/timeliness.py [--destinations 2000] [--products 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _infra import emit, service, settings
from monitor import LUA, TOKEN, free_port, wrk  # the monitor bench's wrk runner (one home)

from bus.settings import ROOT

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from bus.events import Envelope  # noqa: E402
from bus.events.base import TransferStatus  # noqa: E402
from bus.events.transfers import TransferQueued, TransferSucceeded, Verification  # noqa: E402
from consumers.timeliness.core import Watcher  # noqa: E402
from projections.db import connect  # noqa: E402
from projections.handlers import HANDLERS  # noqa: E402
from projections.migrate import migrate  # noqa: E402

SCHEMA = "bench_timeliness"
ROUNDS = 3
CYCLES = 20
TARGET_MS = 0.2
DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


def _env(tid: str, at: datetime) -> Envelope:
    return Envelope(event_id=tid, occurred_at=at, source="bench", correlation_id=tid)


def _events(destinations: int, products: int, day: int) -> list[tuple[Any, Any]]:
    """(queued, delivered) of every destination and product for cycle ``day``."""
    base = DAY0 + timedelta(days=day)
    out = []
    for d in range(destinations):
        for p in range(products):
            tid = f"t{day}-{d}-{p}"
            meta = {"stream": f"s{p}", "time": "00", "step": "24", "type": "fc"}
            meta["date"] = f"{base:%Y%m%d}"
            minutes = 60 + (d * 7 + p * 3 + day * 11) % 13  # some scatter
            at = base + timedelta(minutes=minutes)
            q = TransferQueued(
                envelope=_env(f"q{tid}", at),
                transfer_id=tid,
                destination=f"dest-{d:04d}",
                data_file_id=tid,
                target=f"s{p}.grib",
                status=TransferStatus.WAIT,
                priority=99,
                queue_time=at,
                expiry_time=at + timedelta(days=2),
                size=1000,
                metadata=meta,
            )
            s = TransferSucceeded(
                envelope=_env(f"s{tid}", at + timedelta(minutes=30)),
                transfer_id=tid,
                destination=f"dest-{d:04d}",
                attempt=1,
                host_id="host-1",
                mover_id="mover-1",
                remote_path=f"/in/s{p}.grib",
                bytes_sent=1000,
                duration_ms=10,
                bytes_per_second=1e5,
                verification=Verification.SIZE,
            )
            out.append((q, s))
    return out


def update(destinations: int, products: int) -> dict[str, Any]:
    watcher = Watcher()
    for day in range(CYCLES):
        for q, s in _events(destinations, products, day):
            watcher.evolve(q, {})
            watcher.evolve(s, {})
    best: dict[str, float] = {"watcher": 1e9, "dict": 1e9, "handler": 1e9}
    handler = HANDLERS[TransferSucceeded.AVRO_NAME]
    for r in range(ROUNDS):
        batch = _events(destinations, products, CYCLES + r)
        for q, _ in batch:
            watcher.evolve(q, {})  # the queueing is another event; timed: the delivery
        delivered = [s for _, s in batch]
        start = time.process_time()
        for s in delivered:
            watcher.evolve(s, {})
        best["watcher"] = min(best["watcher"], time.process_time() - start)
        plain: dict[tuple[str, str], float] = {}
        start = time.process_time()
        for s in delivered:
            plain[(s.destination, s.transfer_id)] = s.envelope.occurred_at.timestamp()
        best["dict"] = min(best["dict"], time.process_time() - start)
        start = time.process_time()
        for s in delivered:
            handler(s)
        best["handler"] = min(best["handler"], time.process_time() - start)
    n = destinations * products
    per = {k: round(v / n * 1000, 5) for k, v in best.items()}
    return {
        "files_per_round": n,
        "history_cycles": CYCLES,
        "ms_per_delivered_file": per["watcher"],
        "baseline_dict_ms": per["dict"],
        "baseline_projection_handler_ms": per["handler"],
        "ratio_vs_handler": round(per["watcher"] / per["handler"], 2) if per["handler"] else None,
        "target_ms": TARGET_MS,
        "ok": per["watcher"] < TARGET_MS,
    }


FILL = [
    """INSERT INTO destinations (name, defined, type, config)
       SELECT 'dest-' || lpad(i::text, 4, '0'), true, 'DISSEMINATION',
              jsonb_build_object('properties', jsonb_build_object('monitor.target', '3h'))
         FROM generate_series(0, %(d)s - 1) i""",
    """INSERT INTO product_transfers (transfer_id, destination, product, base_time,
           arrived_at, delivered_at, status)
       SELECT 't-' || i || '-' || p || '-' || k, 'dest-' || lpad(i::text, 4, '0'),
              's' || p || '/00/24/fc', b, b + (60 + (i + p + k) %% 13) * interval '1 min',
              b + (90 + (i * 7 + p + k) %% 40) * interval '1 min', 'DONE'
         FROM generate_series(0, %(d)s - 1) i, generate_series(0, %(p)s - 1) p,
              generate_series(0, %(days)s - 1) k,
              LATERAL (SELECT %(today)s - k * interval '1 day' AS b) c""",
    "ANALYZE",
]
PAGES = {"grid_first_page": "/timeliness", "grid_page_10": "/timeliness?page=10"}
DAYS = 25  # 2,000 destinations x 20 products x 25 cycles = 1,000,000 product transfers


async def fill(dsn: str, destinations: int, products: int) -> float:
    conn = await connect(dsn, "public", autocommit=True)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")  # type: ignore[arg-type]
    finally:
        await conn.close()
    await migrate(dsn, SCHEMA)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    conn = await connect(dsn, SCHEMA, autocommit=True)
    try:
        params = {"d": destinations, "p": products, "days": DAYS, "today": today}
        for statement in FILL:
            await conn.execute(statement, params if "%(" in statement else None)
    finally:
        await conn.close()
    return time.perf_counter() - started


def first_view(url: str) -> float:
    """Milliseconds one signed-in GET of ``url`` takes (the page made, not yet rendered)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        answer.read()
    return round((time.perf_counter() - started) * 1e3, 1)


def grid(destinations: int, products: int, seconds: int) -> dict[str, Any]:
    s = settings()
    service(s, "pg/pg.sh")
    fill_seconds = asyncio.run(fill(s.pg_dsn, destinations, products))
    with tempfile.TemporaryDirectory(prefix="bench-timeliness-") as tmp:
        var = Path(tmp)
        (var / "secrets").mkdir(mode=0o700)
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        (var / "secrets" / "api-tokens").write_text(f"bench:{digest}\n")
        script = var / "p95.lua"
        script.write_text(LUA)
        port = free_port()
        env = {
            **os.environ,
            **s.infra_env(),
            "ECPDS_VAR": str(var),
            "ECPDS_PG_DSN": s.pg_dsn,  # its password file stays where the cluster's is
            "ECPDS_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "projections.monitor.runner", "--schema", SCHEMA,
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"{base}/static/monitor.css", timeout=1)  # noqa: S310
                    break
                except OSError:
                    time.sleep(0.1)
            # each page's first making (what the first viewer after a projector commit waits
            # for) is measured alone; wrk then measures the viewers served its rendering
            making = {name: first_view(f"{base}{path}") for name, path in PAGES.items()}
            results = {
                "static_baseline": wrk(f"{base}/static/monitor.css", seconds, script),
                **{name: wrk(f"{base}{path}", seconds, script) for name, path in PAGES.items()},
                "first_making_ms": making,
            }
        finally:
            server.terminate()
            server.wait(timeout=20)
    base_p95 = results["static_baseline"]["p95_ms"] or 0.001
    return {
        "product_transfers": destinations * products * DAYS,
        "fill_seconds": round(fill_seconds, 1),
        "load": "wrk -t2 -c8 (second process)",
        **results,
        "ratio_p95_grid_vs_static": round(results["grid_first_page"]["p95_ms"] / base_p95, 1),
        "target_p95_ms": 150,
        "ok": results["grid_first_page"]["requests"] > 0
        and results["grid_first_page"]["errors"] == 0
        and results["grid_first_page"]["p95_ms"] < 150,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--destinations", type=int, default=2000)
    parser.add_argument("--products", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--update-destinations",
        type=int,
        default=200,
        help="destinations of the update part (its cost depends on the 20-cycle window, not on"
        " how many products are followed)",
    )
    parser.add_argument("--no-grid", action="store_true", help="only the update cost")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "timeliness",
        "destinations": args.destinations,
        "products": args.products,
        "update": update(args.update_destinations, args.products),
    }
    if not args.no_grid:
        result["grid"] = grid(args.destinations, args.products, args.seconds)
    emit(result)


if __name__ == "__main__":
    main()
