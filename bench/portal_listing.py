"""Data Portal listing benchmark: a destination with 100,000 available transfers, listed
through the running portal: the first page of the HTTPS JSON listing and of the HTML index
(target: under 1 s), and the whole listing with OpenSSH ``sftp ls`` beside ``ls`` of a local
folder holding as many files would be an unfair baseline, so the figure stands alone.

Rows: ``ECPDS_BENCH_PORTAL_ROWS`` or argv[1] (default 100,000), written straight into a private
read-model schema (what the projector would have written), so the listing's own cost is
measured. Prints one JSON object; binds 127.0.0.1 only; cleans up.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _infra import emit, service, settings

# bench/projections.py would shadow the package while bench/ leads sys.path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from projections.migrate import migrate  # noqa: E402
from tests.portal.conftest import CONFIG, SSH_OPTIONS, PortalStack  # noqa: E402
from tests.projections.support import drop  # noqa: E402

USER = """
users:
  - login: lister-{tag}
    password: lister-secret
    destinations: [pickup-{tag}]
    operations: [dir, get, size, mtime]
    ssh_authorized_keys: ["{key}"]
"""
FILL = (
    "INSERT INTO data_files (data_file_id, destination, target, status, guid, store, size,"
    " adler32, registered_at, stored_at)"
    " SELECT 'bench-' || i, %(dest)s, 'file-' || lpad(i::text, 6, '0') || '.grib', 'STORED',"
    " 'guid-' || i, '', 1000 + i, '00000001', now(), now() FROM generate_series(1, %(rows)s) i;"
    " INSERT INTO transfers (transfer_id, destination, data_file_id, target, status, priority,"
    " queue_time, expiry_time, size, file_instance)"
    " SELECT 'bench-' || i || '-' || %(dest)s, %(dest)s, 'bench-' || i,"
    " 'file-' || lpad(i::text, 6, '0') || '.grib', 'HOLD', 99, now() - interval '1 minute',"
    " now() + interval '1 day', 1000 + i, 1 FROM generate_series(1, %(rows)s) i;"
    " ANALYZE data_files; ANALYZE transfers"
)


async def main() -> None:
    rows = (
        int(sys.argv[1])
        if len(sys.argv) > 1
        else int(os.environ.get("ECPDS_BENCH_PORTAL_ROWS", "100000"))
    )
    config = settings()
    service(config, "kafka/kafka.sh")
    service(config, "pg/pg.sh")
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-listing-"))
    tag = uuid.uuid4().hex[:8]
    stack = PortalStack(config.kafka_bootstrap, config, work / "portal", tag)
    (stack.root / "secrets").mkdir(parents=True, mode=0o700)
    dest = f"pickup-{tag}"
    try:
        await migrate(config.pg_dsn, stack.schema)
        await stack.apply(CONFIG.format(tag=tag))
        site = stack.site(f"lister-{tag}", "lister-secret")
        await stack.apply(USER.format(tag=tag, key=site.public))
        started = time.perf_counter()
        async with await psycopg.AsyncConnection.connect(
            config.pg_dsn, options=f"-c search_path={stack.schema}", autocommit=True
        ) as conn:
            for statement in FILL.split(";"):
                await conn.execute(statement.encode(), {"dest": dest, "rows": rows})  # type: ignore[arg-type]
        fill = time.perf_counter() - started
        await asyncio.to_thread(stack.start_portal)
        await asyncio.sleep(1.0)  # the portal follows the configuration topic
        cert = stack.root / "secrets" / "portal" / "tls" / "server.crt"
        url = f"https://127.0.0.1:{stack.https_port}/{dest}/"
        auth = (site.login, site.password)
        json_times, html_times = [], []
        async with httpx.AsyncClient(verify=str(cert), timeout=120) as client:
            for _ in range(3):
                start = time.perf_counter()
                page = await client.get(url, params={"format": "json", "limit": 1000}, auth=auth)
                json_times.append(time.perf_counter() - start)
                assert page.status_code == 200, page.text
                assert page.json()["total"] == rows
                start = time.perf_counter()
                index = await client.get(url, auth=auth)
                html_times.append(time.perf_counter() - start)
                assert index.status_code == 200
        batch = work / "ls.txt"
        batch.write_text(f"ls -1 /{dest}\n")
        argv = [
            "sftp", "-q", "-b", str(batch), "-i", str(site.key), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", *SSH_OPTIONS, "-P", str(stack.sftp_port),
            f"{site.login}@127.0.0.1",
        ]  # fmt: skip
        start = time.perf_counter()
        listed = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, check=True
        )
        sftp_seconds = time.perf_counter() - start
        names = [n for n in listed.stdout.splitlines() if n.strip().endswith(".grib")]
        emit(
            {
                "benchmark": "portal_listing",
                "available_transfers": rows,
                "fill_seconds": round(fill, 2),
                "https_json_first_page_seconds_median": round(statistics.median(json_times), 3),
                "https_json_first_page_seconds_best": round(min(json_times), 3),
                "https_html_first_page_seconds_median": round(statistics.median(html_times), 3),
                "target_seconds": 1.0,
                "sftp_ls_all_seconds": round(sftp_seconds, 2),
                "sftp_ls_names": len(names),
            }
        )
    finally:
        for name in list(stack.processes):
            stack.stop(name)
        await drop(config.pg_dsn, stack.schema)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
