"""S3 upload throughput and memory: our S3Module against boto3's ``upload_file``, same run.

Uploads one file (1 GiB by default; ``bench/s3.py 256M`` or ``ECPDS_BENCH_S3_SIZE``) to one
moto server on 127.0.0.1, alternating ours and the baselines ``--repeat`` times (who goes
first swaps each round), and prints one JSON object: best MB/s of each, the ratio ours/boto3
(best against best, and the median of the per-round pairs, the figure to quote on a loaded
machine), and our memory during the multipart upload beside its bound
``(numUploadThreads + queueCapacity) x partSize``. Both clients use the same part size and
concurrency (10 MiB parts, 2 uploads in flight, the OpenECPDS defaults) so the ratio
compares implementations, not settings. rclone, when installed, is a second baseline with the
same chunk size and concurrency. Memory is measured twice: the resident-set growth sampled
during a timed upload, and ``tracemalloc``'s peak of Python allocations during an extra,
untimed upload (tracemalloc slows the upload). The file lives under ``var/bench/`` and is
deleted afterwards; each object is deleted after its upload so moto (which keeps objects in
memory) stays bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import boto3
import uvloop
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protocols.base import Location  # noqa: E402
from protocols.registry import connect  # noqa: E402

MIB = 1024 * 1024
UNITS = {"k": 1024, "m": MIB, "g": 1024 * MIB}
BUCKET = "bench"
PART_MIB = 10
THREADS = 2
QUEUE = 4
KEY = "AKIABENCHMARK"
SECRET = "bench-secret"  # moto without IAM checks accepts any signed request


def parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as handle:
        for start in range(0, size, MIB):
            handle.write(block[: min(MIB, size - start)])


async def file_source(path: Path) -> AsyncIterator[bytes]:
    # Page-cache reads of 1 MiB: what a mover reading a local spool file does.
    with path.open("rb") as handle:
        while block := handle.read(MIB):
            yield block


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Moto:
    """A moto_server subprocess on a free port (no IAM checks: the bench measures bytes)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        command = REPO / ".venv" / "bin" / "moto_server"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(command), "-H", "127.0.0.1", "-p", str(self.port)], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()  # noqa: S310
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    sys.exit("moto_server did not start")
                time.sleep(0.1)
        self.client().create_bucket(Bucket=BUCKET)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def delete(self, key: str) -> None:
        self.client().delete_object(Bucket=BUCKET, Key=key)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def location(moto: Moto) -> Location:
    return Location(
        scheme="s3",
        host="127.0.0.1",
        port=moto.port,
        user=KEY,
        password=SECRET,
        path=f"/{BUCKET}",
        options={
            "scheme": "http",
            "partSize": str(PART_MIB),
            "numUploadThreads": str(THREADS),
            "queueCapacity": str(QUEUE),
        },
    )


async def ours(moto: Moto, source: Path, name: str) -> tuple[float, int]:
    """Seconds for one put, and the RSS growth over the start, sampled every 20 ms."""
    connection = await connect(location(moto))
    base = rss()
    peak = base
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        start = time.perf_counter()
        written = await connection.put(name, file_source(source))
        elapsed = time.perf_counter() - start
    finally:
        done.set()
        await sampler
        await connection.close()
    assert written == source.stat().st_size
    return elapsed, peak - base


async def ours_traced(moto: Moto, source: Path, name: str) -> int:
    connection = await connect(location(moto))
    try:
        tracemalloc.start()
        try:
            await connection.put(name, file_source(source))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        await connection.close()


def boto3_upload(moto: Moto, source: Path, name: str) -> float:
    config = TransferConfig(
        multipart_threshold=PART_MIB * MIB,
        multipart_chunksize=PART_MIB * MIB,
        max_concurrency=THREADS,
    )
    client = moto.client()
    start = time.perf_counter()
    client.upload_file(str(source), BUCKET, name, Config=config)
    return time.perf_counter() - start


def rclone_upload(moto: Moto, source: Path, name: str) -> float:
    # rclone's AWS SDK refuses AWS_CA_BUNDLE with its own HTTP transport; moto is plain HTTP.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env |= {
        "RCLONE_CONFIG_MOTO_TYPE": "s3",
        "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
        "RCLONE_CONFIG_MOTO_ENDPOINT": moto.endpoint,
        "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": KEY,
        "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": SECRET,
        "RCLONE_CONFIG_MOTO_REGION": "us-east-1",
        "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
    }
    argv = [
        "rclone",
        "copyto",
        str(source),
        f"moto:{BUCKET}/{name}",
        "--s3-chunk-size",
        f"{PART_MIB}M",
        "--s3-upload-cutoff",
        f"{PART_MIB}M",
        "--s3-upload-concurrency",
        str(THREADS),
        "--s3-disable-checksum",
        # (--no-check-dest makes rclone HEAD ?versionId=null, which moto answers 400.)
        "--s3-no-check-bucket",
    ]
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


async def best(
    runs: int, moto: Moto, name: str, upload: Callable[[str], Awaitable[float]]
) -> float:
    times = []
    for index in range(runs):
        key = f"{name}-{index}"
        times.append(await upload(key))
        moto.delete(key)
    return min(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", default=os.environ.get("ECPDS_BENCH_S3_SIZE", "1G"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)
    work = REPO / "var" / "bench" / "s3"
    work.mkdir(parents=True, exist_ok=True)
    source = work / "payload.bin"
    make_file(source, size)
    moto = Moto(work / "moto.log")
    try:
        rss_growth: list[int] = []

        async def ours_once(key: str) -> float:
            elapsed, grown = await ours(moto, source, key)
            rss_growth.append(grown)
            return elapsed

        async def boto3_once(key: str) -> float:
            return await asyncio.to_thread(boto3_upload, moto, source, key)

        async def rclone_once(key: str) -> float:
            return await asyncio.to_thread(rclone_upload, moto, source, key)

        # Interleave so a noisy neighbour hurts both sides alike, and swap who goes first each
        # round: moto is the bottleneck (~10 ns of its CPU per byte) and a single pair on a
        # loaded 2-core machine moves +-30%, so the ratio reported is the median of the pairs.
        has_rclone = shutil.which("rclone") is not None
        runs: dict[str, list[float]] = {"ours": [], "boto3": [], "rclone": []}
        uploads = {"ours": ours_once, "boto3": boto3_once, "rclone": rclone_once}
        order = ["ours", "boto3", "rclone"] if has_rclone else ["ours", "boto3"]
        for round_ in range(args.repeat):
            for name in order if round_ % 2 == 0 else order[::-1]:
                runs[name].append(await best(1, moto, f"{name}-{round_}", uploads[name]))
        ours_s, boto3_s = min(runs["ours"]), min(runs["boto3"])
        rclone_s = min(runs["rclone"], default=float("inf"))
        traced_peak = await ours_traced(moto, source, "traced")
        moto.delete("traced")
    finally:
        moto.stop()
        source.unlink(missing_ok=True)

    def mbps(seconds: float) -> float:
        return round(size / seconds / 1e6, 1)

    bound = (THREADS + QUEUE) * PART_MIB * MIB
    result: dict[str, Any] = {
        "benchmark": "s3",
        "server": "moto_server (127.0.0.1)",
        "size_bytes": size,
        "part_size_mib": PART_MIB,
        "upload_threads": THREADS,
        "queue_capacity": QUEUE,
        "repeat": args.repeat,
        "put_mb_s": {"ours": mbps(ours_s), "boto3_upload_file": mbps(boto3_s)},
        "ratio_vs_boto3": round(boto3_s / ours_s, 2),
        "median_pair_ratio_vs_boto3": round(
            statistics.median(b / o for o, b in zip(runs["ours"], runs["boto3"], strict=True)), 2
        ),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "memory": {
            "bound_mib": bound / MIB,
            "tracemalloc_peak_mib": round(traced_peak / MIB, 1),
            "rss_growth_max_mib": round(max(rss_growth) / MIB, 1),
            # The bound counts part buffers only; the rest is the 1 MiB source read, SigV4's
            # 1 MiB hashing reads and HTTP buffers, constant whatever the file size.
            "peak_over_bound": round(traced_peak / bound, 2),
        },
    }
    if has_rclone:
        result["put_mb_s"]["rclone"] = mbps(rclone_s)
        result["ratio_vs_rclone"] = round(rclone_s / ours_s, 2)
        result["median_pair_ratio_vs_rclone"] = round(
            statistics.median(r / o for o, r in zip(runs["ours"], runs["rclone"], strict=True)), 2
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    uvloop.run(main())
