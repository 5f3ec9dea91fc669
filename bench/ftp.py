"""FTP throughput: our FtpModule (aioftp, 1 MiB blocks, uvloop) against ``curl``, same run.

Puts and gets one file (1 GiB by default; ``bench/ftp.py 64M`` or ``ECPDS_BENCH_FTP_SIZE``)
through one pyftpdlib server on 127.0.0.1, alternating ours and curl's ``--repeat`` times
(who goes first swaps each round; dirty pages are flushed before each timed run), and prints
one JSON object with the best MB/s of each, the ratios and the median of the per-round pair
ratios, the figure to quote on a loaded machine (targets: put >= 0.8x curl, get >= 1x).
``--tls explicit`` runs the same over FTPS (AUTH TLS, certificates from trustme, validated
by both clients). The file lives under ``var/bench/`` and is deleted afterwards. Our get
writes to a local file like ``curl -o`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protocols.base import Location  # noqa: E402
from protocols.registry import connect  # noqa: E402
from tests.protocols.ftpserver import FtpServer, free_port  # noqa: E402

MIB = 1024 * 1024
UNITS = {"k": 1024, "m": MIB, "g": 1024 * MIB}


def parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


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


async def ours_put(location: Location, source: Path, name: str) -> float:
    connection = await connect(location)
    try:
        start = time.perf_counter()
        await connection.put(name, file_source(source))
        return time.perf_counter() - start
    finally:
        await connection.close()


async def ours_get(location: Location, name: str, target: Path) -> float:
    connection = await connect(location)
    try:
        start = time.perf_counter()
        with target.open("wb") as handle:
            async for block in connection.get(name):
                handle.write(block)
        return time.perf_counter() - start
    finally:
        await connection.close()


class CpuMeter:
    """CPU seconds (user + system) of one side, least over repeats: steadier than MB/s on a
    busy machine. Ours is this process; curl's is the reaped children (the server is reaped
    only at the end, so it never counts)."""

    def __init__(self, children: bool) -> None:
        self.who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
        self.best = float("inf")

    def _now(self) -> float:
        usage = resource.getrusage(self.who)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> None:
        self.start = self._now()

    def __exit__(self, *_: object) -> None:
        self.best = round(min(self.best, self._now() - self.start), 2)


def curl(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-S", *args], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("size", nargs="?", default=os.environ.get("ECPDS_BENCH_FTP_SIZE", "1G"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--buffer", type=int, default=256 * 1024, help="server socket buffer")
    parser.add_argument("--tls", choices=["none", "explicit"], default="none")
    args = parser.parse_args()
    size = parse_size(args.size)
    work = REPO / "var" / "bench" / f"ftp-{os.getpid()}"
    root = work / "root"
    root.mkdir(parents=True)
    source = work / "source.bin"
    curl_tls: list[str] = []
    options: dict[str, str] = {}
    certfile = None
    if args.tls == "explicit":
        import trustme

        authority = trustme.CA()
        authority.cert_pem.write_to_path(str(work / "ca.pem"))
        issued = authority.issue_cert("127.0.0.1")
        certfile = work / "chain.pem"
        issued.private_key_and_cert_chain_pem.write_to_path(str(certfile))
        curl_tls = ["--ssl-reqd", "--cacert", str(work / "ca.pem")]
        options = {"connectionType": "explicit", "cafile": str(work / "ca.pem")}
    server = FtpServer(
        root=root, port=free_port(), buffer=args.buffer, tls=args.tls, certfile=certfile
    )
    try:
        make_file(source, size)
        shutil.copyfile(source, root / "served.bin")
        server.start()
        location = Location(
            scheme="ftp" if args.tls == "none" else "ftps",
            host="127.0.0.1",
            port=server.port,
            user=server.user,
            password=server.password,
            path="/",
            options=options,
        )
        url = f"ftp://{server.user}:{server.password}@127.0.0.1:{server.port}"
        times: dict[str, list[float]] = {
            k: [] for k in ("ours_put", "curl_put", "ours_get", "curl_get")
        }
        cpu = {k: CpuMeter(k.startswith("curl")) for k in times}
        got = work / "got"
        runs: dict[str, Callable[[], float]] = {
            "ours_put": lambda: uvloop.run(ours_put(location, source, "up-ours.bin")),
            "curl_put": lambda: curl([*curl_tls, "-T", str(source), f"{url}/up-curl.bin"]),
            "ours_get": lambda: uvloop.run(ours_get(location, "served.bin", got)),
            "curl_get": lambda: curl([*curl_tls, "-o", str(got), f"{url}/served.bin"]),
        }
        for round_ in range(args.repeat):
            for op in ("put", "get"):
                # Who goes first swaps each round, and dirty pages are flushed before each
                # timed run: otherwise the writeback of the previous run's file (1 GiB) lands
                # on the next one, always the same side's in a fixed order.
                pair = [f"ours_{op}", f"curl_{op}"]
                for name in pair if round_ % 2 == 0 else pair[::-1]:
                    os.sync()
                    with cpu[name]:
                        times[name].append(runs[name]())
                    written = root / f"up-{name[:4]}.bin" if op == "put" else got
                    assert written.stat().st_size == size
                    if op == "put":
                        written.unlink()
        rate = {k: round(size / min(v) / 1e6, 1) for k, v in times.items()}
        # Each ours/curl pair ran back to back: the median of pair ratios resists load swings.
        paired = {
            op: round(
                statistics.median(
                    c / o for o, c in zip(times[f"ours_{op}"], times[f"curl_{op}"], strict=True)
                ),
                2,
            )
            for op in ("put", "get")
        }
        print(
            json.dumps(
                {
                    "bench": "ftp",
                    "size_bytes": size,
                    "repeat": args.repeat,
                    "loop": "uvloop",
                    "block_bytes": MIB,
                    "server": f"pyftpdlib, buffer {args.buffer}",
                    "tls": args.tls,
                    "load_average": [round(x, 1) for x in os.getloadavg()],
                    "put": {
                        "ecpds_MBps": rate["ours_put"],
                        "curl_MBps": rate["curl_put"],
                        "ratio": round(rate["ours_put"] / rate["curl_put"], 2),
                        "median_pair_ratio": paired["put"],
                        "ecpds_cpu_s": cpu["ours_put"].best,
                        "curl_cpu_s": cpu["curl_put"].best,
                        "target": 0.8,
                    },
                    "get": {
                        "ecpds_MBps": rate["ours_get"],
                        "curl_MBps": rate["curl_get"],
                        "ratio": round(rate["ours_get"] / rate["curl_get"], 2),
                        "median_pair_ratio": paired["get"],
                        "ecpds_cpu_s": cpu["ours_get"].best,
                        "curl_cpu_s": cpu["curl_get"].best,
                        "target": 1.0,
                    },
                }
            )
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
