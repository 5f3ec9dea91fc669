"""Data Portal S3 benchmark: boto3 against the portal's S3 door, each figure beside nginx
serving the same file over HTTPS and beside SeaweedFS's S3 gateway, in the same round.

- GET: boto3 ``get_object`` read in 1 MiB pieces (one stream) beside urllib3 (the HTTP stack
  under botocore) reading the same bytes from a private nginx (bench/portal.py's ``Nginx``:
  Debian's nginx-light, TLS with the portal's own certificate); and ``curl`` on a presigned
  URL beside ``curl`` on nginx. Target: >= 0.7x.
- PUT: boto3 ``upload_file`` (multipart, its defaults: 8 MiB parts, 10 threads, CRC32
  trailers), from part upload to registration, against the nginx GET baseline (as
  bench/portal.py rates its PUTs). Target: >= 0.7x.
- SeaweedFS (bench/_seaweedfs.py: a private ``weed server`` built from the Go module proxy by
  bench/seaweedfs.sh on first use, HTTPS with the portal's certificate, the bench user's keys):
  the same boto3 GET of the same bytes (put untimed first) and the same multipart PUT (into a
  bucket of its own), each round; the ratio both ways (portal over SeaweedFS, SeaweedFS over
  portal, each the median of its rounds' ratios); its process's CPU seconds per GB (master,
  volume server, filer and gateway in one) beside its rates. Where it does not build, the
  JSON says why and the nginx baselines stand alone.

- Small objects (``--small N``, instead of the above): N objects of 4 KiB put through the door
  (untimed), then listed and fetched with ``rclone copy`` (s3 remote, 8 transfers) beside the
  same rclone fetching the same files from nginx's autoindex over HTTPS (http remote), and
  from SeaweedFS (s3 remote, the same files put untimed): files/s each, the ratio to nginx,
  and to SeaweedFS both ways; CPU milliseconds per object of the portal and of SeaweedFS.
  rclone keeps to HTTP/1.1 everywhere (SeaweedFS alone would offer it HTTP/2).

Size: ``--size`` (bytes, default 1 GiB); rounds ``--rounds`` (default 3). Each side reads
what it serves from the page cache (both read once, untimed, first). Rates are medians and
best rounds; ratios the median of each round's ratio; the portal's CPU seconds per GB beside
its rates. The portal and a projector run as subprocesses on private topics and schema of the
bench Kafka/PostgreSQL (started as ``make up`` does, under ECPDS_VAR, default var/bench).
Binds 127.0.0.1 only, cleans its temp dir, prints one JSON object.

Measured (1 GiB, boto3 1.40.61, the shared 2-core machine at load 4-10): boto3 GET 0.93x and
1.00x of urllib3 on nginx (two runs), 236 MB/s median, 1.5 CPU s/GB in the portal; curl on a
presigned URL 1.08x and 1.82x of curl on nginx; multipart PUT 95 MB/s, 0.27x and 0.36x of the
nginx GET (below target), 8.4-10.9 CPU s/GB: each byte is decrypted, CRC32-checked and
MD5-hashed for its part's ETag, spooled, read back at Complete and hashed (MD5, ADLER32),
written and fsynced again by the ingest path; at 256 MiB the parts took 2.0 s, the Complete
1.0 s. The parts are client-bound as much as server-bound: one boto3 process sends them no
faster with 4 or 10 threads than with one (~170-195 MB/s, the portal's event loop about half
busy), while two boto3 processes at once nearly double the aggregate.

Measured beside SeaweedFS 4.53 (256 MiB, 2 rounds, four runs, medians of the runs; the shared
2-core machine at load 1.4-4.6 with other work running, so noisy): boto3 GET 354 MB/s against
SeaweedFS's 535, portal over SeaweedFS 0.68x (runs 0.61-0.81), SeaweedFS over portal 1.57x
(1.34-1.63); CPU 1.5 s/GB in each; multipart PUT 88 MB/s against 107, 0.91x (0.68-1.01) and
1.15x (1.05-1.49), 9.7 and 9.8 CPU s/GB (SeaweedFS does not fsync by default, the portal does).
In the same runs boto3 GET was 0.49x of urllib3 on nginx (0.45-0.65; nginx at 560-880 MB/s;
the code before SeaweedFS was added gave 0.58x there, one run), curl presigned 0.87x, PUT
0.12x of the nginx GET. Small objects (1,000 of 4 KiB, four runs): rclone 259 files/s from the
portal, 1,082 from SeaweedFS, 2,668 from nginx's autoindex; portal over SeaweedFS 0.23x
(0.18-0.27), SeaweedFS over portal 4.3x (3.7-5.4); 2.8 CPU ms per object in the portal, 0.5 in
SeaweedFS.

After the tuning of 2026-12-07 (parts a client vouched for with its CRC32 take no MD5, no
joined copies of a body, answers in 1 MiB chunks behind a 2 MiB write buffer, one read-model
query per GET, accounts made once per configuration; each step after a sync and with every
server idle), 1 GiB, 2 rounds, the machine otherwise idle: boto3 GET 284 MB/s, 0.43x of
urllib3 on nginx (655 MB/s) and 0.59x of boto3 on SeaweedFS (485 MB/s), 1.5 CPU s/GB; curl
on a presigned URL 574 MB/s, 0.85x of curl on nginx; multipart PUT 101 MB/s, 0.84x of
SeaweedFS's 122 (1.22x the other way; SeaweedFS does not fsync) and 0.15x of the nginx GET,
9.2 CPU s/GB against SeaweedFS's 10.9. At 256 MiB in three runs the PUT took 7.6-8.7 CPU s/GB
(9.1-9.5 before) and parts 2.8-3.2 s, the Complete 1.8-2.3 s of a 512 MiB upload: the parts
are written twice (spooled, then stored and fsynced at Complete) and MD5-hashed once at
Complete, the disk here writing about 650 MB/s to the page cache. boto3 GET against the portal
varied from 260 to 770 MB/s between runs and within one (curl's from the same portal stays
near nginx's): a Python client and the portal share two cores. Small objects (1,000 of 4 KiB):
rclone 389 files/s from the portal (212-302 before), 1,687 from SeaweedFS (0.23x), 3,099 from
nginx's autoindex (0.13x); 1.9 CPU ms per object in the portal (2.1-2.8 before), 0.5 in
SeaweedFS.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _infra import emit, service, settings
from _seaweedfs import SeaweedFS, build
from portal import PASSWORD_USER, Nginx, _cert, _cpu, _warm, side_ratio, stored_object, throughput
from sftp import _make_file

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import boto3  # noqa: E402
import urllib3  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402

from producers.portal.s3keys import seal, secrets_file  # noqa: E402
from projections.migrate import migrate  # noqa: E402
from tests.portal.conftest import CONFIG, PortalStack  # noqa: E402
from tests.projections.support import drop  # noqa: E402

PIECE = 1024 * 1024


def _client(endpoint: str, cert: Path, login: str) -> Any:
    """boto3's S3 client for ``endpoint`` (the portal's door or SeaweedFS's gateway)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=login,
        aws_secret_access_key="bench-secret",
        region_name="us-east-1",
        verify=str(cert),
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )


def _portal(stack: PortalStack) -> str:
    return f"https://127.0.0.1:{stack.s3_port}"


def _start_seaweedfs(work: Path, stack: PortalStack, login: str) -> SeaweedFS | str:
    """A private SeaweedFS serving HTTPS with the portal's certificate and knowing the bench
    user's keys, or why there is none (it did not build: the nginx baselines stand alone)."""
    try:
        weed = build()
    except RuntimeError as error:
        return str(error)
    cert = _cert(stack)
    return SeaweedFS(
        weed, work / "seaweedfs", cert, cert.with_name("server.key"), login, "bench-secret"
    )


def _bucket(s3: Any, bucket: str) -> None:
    """Create ``bucket`` on SeaweedFS and write to it once (untimed), waiting for the filer's
    lock server and the bucket's first volumes, which come seconds after the gateway."""
    deadline = time.monotonic() + 120
    while True:
        try:
            s3.create_bucket(Bucket=bucket)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    s3.put_object(Bucket=bucket, Key="ready", Body=b"ready")


def _read(body: Any, target: Path) -> None:
    with target.open("wb") as out:
        while piece := body.read(PIECE):
            out.write(piece)


async def _quiet(processes: list[Any], limit: float = 30.0) -> None:
    """Wait (at most ``limit`` s) until each of ``processes`` used under 5% of a core over
    half a second."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = [_cpu(p) for p in processes]
        await asyncio.sleep(0.5)
        if all(_cpu(p) - b < 0.025 for p, b in zip(processes, before, strict=True)):
            return


def _boto3_get(s3: Any, bucket: str, key: str, target: Path) -> float:
    start = time.perf_counter()
    _read(s3.get_object(Bucket=bucket, Key=key)["Body"], target)
    return time.perf_counter() - start


def _urllib3_get(pool: urllib3.PoolManager, url: str, target: Path) -> float:
    start = time.perf_counter()
    answer = pool.request("GET", url, preload_content=False)
    _read(answer, target)
    answer.release_conn()
    return time.perf_counter() - start


def _curl(cert: Path, url: str, target: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["curl", "-sS", "--fail", "--cacert", str(cert), "-o", str(target), url], check=True
    )
    return time.perf_counter() - start


SMALL = 4096  # bytes of each small object


def _rclone(cert: Path, env: dict[str, str], source: str, target: Path, *flags: str) -> float:
    """Seconds ``rclone copy`` of ``source`` into ``target`` takes (8 transfers at once)."""
    start = time.perf_counter()
    # HTTP/1.1 throughout: SeaweedFS (Go) offers HTTP/2, the portal and nginx do not
    subprocess.run(
        ["rclone", "--config", "/dev/null", "--ca-cert", str(cert), "copy", source, str(target),
         "--transfers", "8", "--checkers", "8", "--disable-http2", *flags],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def _remote(name: str, endpoint: str, login: str) -> dict[str, str]:
    """rclone's environment for an s3 remote ``name`` on ``endpoint``."""
    prefix = f"RCLONE_CONFIG_{name}_"
    return {
        f"{prefix}TYPE": "s3", f"{prefix}PROVIDER": "Other", f"{prefix}ACCESS_KEY_ID": login,
        f"{prefix}SECRET_ACCESS_KEY": "bench-secret", f"{prefix}REGION": "us-east-1",
        f"{prefix}FORCE_PATH_STYLE": "true", f"{prefix}ENDPOINT": endpoint,
    }  # fmt: skip


def _put_all(s3: Any, bucket: str, root: Path, names: list[str]) -> None:
    """Put each of ``names`` (files under ``root``) as an object, 8 at once (untimed)."""

    def put(name: str) -> None:
        s3.put_object(Bucket=bucket, Key=name, Body=(root / name).read_bytes())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, names))


async def small_objects(
    stack: PortalStack,
    bucket: str,
    login: str,
    nginx: Nginx,
    weed: SeaweedFS | None,
    count: int,
    work: Path,
) -> dict[str, Any]:
    """``count`` small objects listed and fetched with rclone, beside nginx and SeaweedFS
    (docstring)."""
    names = [f"small/o{index:05d}.bin" for index in range(count)]
    (nginx.root / "small").mkdir()
    for name in names:
        (nginx.root / name).write_bytes(os.urandom(SMALL))
    s3 = _client(_portal(stack), _cert(stack), login)
    _put_all(s3, bucket, nginx.root, names)
    listed = 0
    deadline = time.monotonic() + 600
    while listed < count and time.monotonic() < deadline:  # the read models catch up
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="small/")
        listed = sum(page.get("KeyCount", 0) for page in pages)
        await asyncio.sleep(0.5)
    if listed < count:
        raise RuntimeError(f"{listed} of {count} small objects listed after 600 s")
    env = {
        **{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
        **_remote("P", _portal(stack), login),
    }
    portal, before = stack.processes["portal"], _cpu(stack.processes["portal"])
    ours = await asyncio.to_thread(
        _rclone, _cert(stack), env, f"p:{bucket}/small", work / "from-portal"
    )
    cpu = _cpu(portal) - before
    theirs = await asyncio.to_thread(
        _rclone, _cert(stack), env, ":http:", work / "from-nginx",
        "--http-url", f"https://127.0.0.1:{nginx.port}/small/",
    )  # fmt: skip
    found = {
        "objects": count,
        "object_bytes": SMALL,
        "rclone_s3_portal_files_per_s": round(count / ours, 1),
        "rclone_http_nginx_autoindex_files_per_s": round(count / theirs, 1),
        "ratio": round(theirs / ours, 3),
        "portal_cpu_ms_per_object": round(cpu * 1000 / count, 2),
    }
    sides = ["from-portal", "from-nginx"]
    if weed is not None:
        _put_all(_client(weed.endpoint, _cert(stack), login), bucket, nginx.root, names)
        before = _cpu(weed.process)
        seaweed = await asyncio.to_thread(
            _rclone, _cert(stack), {**env, **_remote("W", weed.endpoint, login)},
            f"w:{bucket}/small", work / "from-seaweedfs",
        )  # fmt: skip
        found |= {
            "rclone_s3_seaweedfs_files_per_s": round(count / seaweed, 1),
            "portal_over_seaweedfs": round(seaweed / ours, 3),
            "seaweedfs_over_portal": round(ours / seaweed, 3),
            "seaweedfs_cpu_ms_per_object": round((_cpu(weed.process) - before) * 1000 / count, 2),
        }
        sides.append("from-seaweedfs")
    for side in sides:
        assert len(list((work / side).iterdir())) == count, side
    return found


def _boto3_put(s3: Any, source: Path, bucket: str, key: str) -> float:
    start = time.perf_counter()
    s3.upload_file(str(source), bucket, key, Config=TransferConfig())
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024**3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=0, help="N small objects via rclone")
    args = parser.parse_args()
    size = args.size
    config = settings()
    service(config, "kafka/kafka.sh")
    service(config, "pg/pg.sh")
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-portal-s3-"))
    tag = uuid.uuid4().hex[:8]
    stack = PortalStack(config.kafka_bootstrap, work / "portal", tag, settings=config)
    (stack.root / "secrets").mkdir(parents=True, mode=0o700)
    nginx: Nginx | None = None
    weed: SeaweedFS | None = None
    try:
        await migrate(config.pg_dsn, stack.schema)
        await stack.apply(CONFIG.format(tag=tag))
        login = f"bench-{tag}"
        await stack.apply(PASSWORD_USER.format(tag=tag))
        seal(secrets_file(stack.root), stack.key_file, login, "bench-secret")
        await asyncio.to_thread(stack.start_portal)
        stack.start_projector()
        portal = stack.processes["portal"]
        nginx = Nginx(work / "nginx", _cert(stack), _cert(stack).with_name("server.key"))
        started = await asyncio.to_thread(_start_seaweedfs, work, stack, login)
        weed = started if isinstance(started, SeaweedFS) else None
        bucket = f"pickup-{tag}"
        sw = None if weed is None else _client(weed.endpoint, _cert(stack), login)
        if sw is not None:
            await asyncio.to_thread(_bucket, sw, bucket)
        baseline = {"seaweedfs": started if weed is None else weed.version}
        if args.small:
            await asyncio.sleep(1.0)  # the portal follows the configuration topic
            small = await small_objects(stack, bucket, login, nginx, weed, args.small, work)
            emit({"benchmark": "portal_s3_small", **baseline, **small})
            return
        source = work / "big.bin"
        _make_file(source, size)
        os.link(source, nginx.root / "served.bin")
        await asyncio.sleep(1.0)  # the portal follows the configuration topic
        s3 = _client(_portal(stack), _cert(stack), login)
        await asyncio.to_thread(_boto3_put, s3, source, bucket, "big.bin")
        if sw is not None:
            await asyncio.to_thread(_boto3_put, sw, source, bucket, "big.bin")
        await stack.listed(bucket, "big.bin", timeout=300)
        stored = await stored_object(stack, bucket, "big.bin")
        got = work / "got.bin"
        pool = urllib3.PoolManager(ca_certs=str(_cert(stack)))
        nginx_url = f"https://127.0.0.1:{nginx.port}/served.bin"
        presigned = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "big.bin"}, ExpiresIn=3600
        )
        # what each side reads for a GET, read once untimed beforehand (SeaweedFS: the volume
        # files of the GET's bucket; the rounds' PUTs go to a bucket of their own)
        served = {"portal": [stored], "nginx": [source]}
        servers = {"portal": portal}
        if weed is not None:
            served["seaweedfs"] = weed.files(bucket)
            servers["seaweedfs"] = weed.process
            await asyncio.to_thread(_bucket, sw, f"put-{tag}")
        times: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}

        async def measure(name: str, run: Callable[..., float], *call: object) -> None:
            side = next((s for s in ("nginx", "seaweedfs") if s in name), "portal")
            got.unlink(missing_ok=True)
            for path in served[side] if "get" in name else [source]:
                _warm(path)
            # the previous step's writes reach the disk first, and every server is idle again
            # (SeaweedFS works on for seconds after a PUT returns): a step does not share the
            # machine with what the one before it left running
            await asyncio.to_thread(os.sync)
            await _quiet(list(servers.values()))
            server = servers.get(side)
            before = 0.0 if server is None else _cpu(server)
            times.setdefault(name, []).append(await asyncio.to_thread(run, *call))
            if server is not None:
                cpu.setdefault(name, []).append(_cpu(server) - before)
            if "get" in name:
                assert got.stat().st_size == size, name
            got.unlink(missing_ok=True)

        for index in range(args.rounds):
            await measure("boto3_get", _boto3_get, s3, bucket, "big.bin", got)
            if sw is not None:
                await measure("boto3_get_seaweedfs", _boto3_get, sw, bucket, "big.bin", got)
            await measure("urllib3_get_nginx", _urllib3_get, pool, nginx_url, got)
            await measure("curl_get_presigned", _curl, _cert(stack), presigned, got)
            await measure("curl_get_nginx", _curl, _cert(stack), nginx_url, got)
            await measure("boto3_put_multipart", _boto3_put, s3, source, bucket, f"put-{index}.bin")
            if sw is not None:
                await measure(
                    "boto3_put_multipart_seaweedfs", _boto3_put, sw, source, f"put-{tag}",
                    f"put-{index}.bin",
                )  # fmt: skip

        def rate(name: str) -> dict[str, float]:
            return throughput(times, cpu, name, size)

        def ratio(ours: str, base: str) -> float:
            return side_ratio(times, ours, base)

        against: dict[str, float] = {}
        if sw is not None:
            for ours, theirs in (
                ("boto3_get", "boto3_get_seaweedfs"),
                ("boto3_put_multipart", "boto3_put_multipart_seaweedfs"),
            ):
                against[f"{ours}_portal_over_seaweedfs"] = ratio(ours, theirs)
                against[f"{ours}_seaweedfs_over_portal"] = ratio(theirs, ours)
        emit(
            {
                "benchmark": "portal_s3",
                "size_bytes": size,
                "rounds": args.rounds,
                "boto3": boto3.__version__,
                **baseline,
                **{name: rate(name) for name in times},
                "boto3_get_ratio": ratio("boto3_get", "urllib3_get_nginx"),
                "curl_presigned_get_ratio": ratio("curl_get_presigned", "curl_get_nginx"),
                "boto3_put_ratio": ratio("boto3_put_multipart", "urllib3_get_nginx"),
                **against,
                "target": 0.7,
            }
        )
    finally:
        if nginx is not None:
            nginx.stop()
        if weed is not None:
            weed.stop()
        for name in list(stack.processes):
            stack.stop(name)
        await drop(config.pg_dsn, stack.schema)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
