"""SFTP benchmark: our module against OpenSSH's ``sftp`` on a private local sshd, same run.

(1) put and get of one large file (``ECPDS_BENCH_SFTP_SIZE`` or argv[1], bytes, default 1 GiB),
both clients on aes128-gcm@openssh.com with the same key; MB/s and ratios (target >= 0.9x).
(2) 2,000 files of 10 KiB put over ONE SFTP connection with concurrent puts, files/s, against
``sftp -b`` putting the same files (target >= 1.2x).

Each client runs ``ECPDS_BENCH_SFTP_ROUNDS`` (3) alternating rounds; the machine is shared, so
the big-file figures are medians (ratios: the median of each round's ratio, the two clients
having run back to back) with the best round beside them, and the client CPU seconds of each
side (ours: this process; OpenSSH: the ``sftp`` and ``ssh`` processes), which load disturbs
less than wall time. ``ECPDS_BENCH_SFTP_FILES=0`` skips part (2). Runs on uvloop, binds
127.0.0.1 only, cleans its temp dir, prints one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.base import Location, from_bytes
from protocols.registry import connect

CIPHER = "aes128-gcm@openssh.com"
CHUNK = 1024 * 1024
SMALL_COUNT = int(os.environ.get("ECPDS_BENCH_SFTP_FILES", "2000"))
SMALL_SIZE = 10 * 1024
SMALL_CONCURRENCY = int(os.environ.get("ECPDS_BENCH_SFTP_CONCURRENCY", "64"))
ROUNDS = int(os.environ.get("ECPDS_BENCH_SFTP_ROUNDS", "3"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listens(process: subprocess.Popen[bytes], port: int, seconds: float) -> bool:
    """Whether ``process`` accepts connections on 127.0.0.1:``port`` within ``seconds`` (False
    as soon as it has exited)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Sshd:
    """A private sshd accepting root by key, sftp via internal-sftp."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.port = _free_port()
        self.key = root / "client_ed25519"
        host_key = root / "host_ed25519"
        for key in (host_key, self.key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        self.fingerprint = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{host_key}.pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[1]
        (root / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        os.makedirs("/run/sshd", exist_ok=True)
        config = root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\n"
            f"AuthorizedKeysFile {root}/authorized_keys\nPermitRootLogin yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nLogLevel ERROR\nSubsystem sftp internal-sftp\n"
        )
        self.process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not _listens(self.process, self.port, 10):
            raise RuntimeError("sshd did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)

    def location(self, path: str) -> Location:
        return Location(
            scheme="sftp",
            host="127.0.0.1",
            port=self.port,
            user="root",
            path=path,
            options={
                "privateKeyFile": str(self.key),
                "cipher": CIPHER,
                "fingerPrint": self.fingerprint,
            },
        )

    def sftp_batch(self, batch: str) -> float:
        """Run OpenSSH ``sftp -b`` with ``batch``; return seconds taken."""
        script = self.root / "batch.txt"
        script.write_text(batch)
        argv = [
            "sftp", "-q", "-b", str(script), "-i", str(self.key), "-c", CIPHER,
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-P", str(self.port), "root@127.0.0.1",
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    # Page-cache reads of 1 MiB take microseconds: no thread hop needed.
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _make_file(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with path.open("wb") as handle:
        for start in range(0, size, CHUNK):
            handle.write(block[: min(CHUNK, size - start)])


Round = tuple[float, float, float, float]  # put s, get s, put CPU s, get CPU s


async def _ours_put_get(sshd: Sshd, source: Path, remote: Path, local: Path) -> Round:
    conn = await connect(sshd.location(str(remote)))
    try:
        start, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        await conn.put("ours.bin", _read_file(source))
        put, put_cpu = time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu
        start, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        with local.open("wb") as handle:
            async for chunk in conn.get("ours.bin"):
                handle.write(chunk)
        get, get_cpu = time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu
    finally:
        await conn.close()
    assert local.stat().st_size == source.stat().st_size
    local.unlink()
    (remote / "ours.bin").unlink()
    return put, get, put_cpu, get_cpu


def _native_put_get(sshd: Sshd, source: Path, remote: Path, local: Path) -> Round:
    cpu = _cpu(resource.RUSAGE_CHILDREN)
    put = sshd.sftp_batch(f"put {source} {remote}/native.bin\n")
    put_cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu
    get = sshd.sftp_batch(f"get {remote}/native.bin {local}\n")
    get_cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu - put_cpu
    assert local.stat().st_size == source.stat().st_size
    local.unlink()
    (remote / "native.bin").unlink()
    return put, get, put_cpu, get_cpu


async def _big(sshd: Sshd, work: Path, size: int) -> dict[str, object]:
    source = work / "big.src"
    _make_file(source, size)
    remote = sshd.root / "remote"
    remote.mkdir()
    ours: list[Round] = []
    native: list[Round] = []
    # Alternate the clients, back to back, so each round's ratio sees the same load.
    for _ in range(ROUNDS):
        ours.append(await _ours_put_get(sshd, source, remote, work / "ours.get"))
        native.append(_native_put_get(sshd, source, remote, work / "native.get"))
    shutil.rmtree(remote)
    source.unlink()
    mb = size / 1e6
    result: dict[str, object] = {"size_bytes": size, "rounds": ROUNDS}
    for index, op in enumerate(("put", "get")):
        mine = [r[index] for r in ours]
        theirs = [r[index] for r in native]
        ratios = [t / m for m, t in zip(mine, theirs, strict=True)]
        result |= {
            f"{op}_mb_s": round(mb / statistics.median(mine), 1),
            f"sftp_{op}_mb_s": round(mb / statistics.median(theirs), 1),
            f"{op}_ratio": round(statistics.median(ratios), 3),
            f"{op}_ratio_best": round(min(theirs) / min(mine), 3),
            f"{op}_ratios": [round(r, 3) for r in ratios],
            f"{op}_cpu_s": round(statistics.median(r[index + 2] for r in ours), 2),
            f"sftp_{op}_cpu_s": round(statistics.median(r[index + 2] for r in native), 2),
        }
    result["target_ratio"] = 0.9
    result["load_average"] = round(os.getloadavg()[0], 1)
    return result


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


CPU_USED: dict[str, list[float]] = {"ours": [], "sftp_b": []}


async def _small_ours(sshd: Sshd, files: list[Path], remote: Path, use_tmp: bool) -> float:
    remote.mkdir()
    conn = await connect(sshd.location(str(remote)))
    limit = asyncio.Semaphore(SMALL_CONCURRENCY)

    async def one(path: Path) -> None:
        async with limit:
            await conn.put(path.name, from_bytes(path.read_bytes()), use_tmp=use_tmp)

    try:
        start, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        await asyncio.gather(*(one(path) for path in files))
        elapsed = time.perf_counter() - start
        if use_tmp:
            CPU_USED["ours"].append(_cpu(resource.RUSAGE_SELF) - cpu)
    finally:
        await conn.close()
    assert len(os.listdir(remote)) == len(files)
    shutil.rmtree(remote)
    return elapsed


def _small_native(sshd: Sshd, files: list[Path], remote: Path) -> float:
    remote.mkdir()
    cpu = _cpu(resource.RUSAGE_CHILDREN)
    elapsed = sshd.sftp_batch("".join(f"put {p} {remote}/{p.name}\n" for p in files))
    CPU_USED["sftp_b"].append(_cpu(resource.RUSAGE_CHILDREN) - cpu)
    assert len(os.listdir(remote)) == len(files)
    shutil.rmtree(remote)
    return elapsed


async def _small(sshd: Sshd, work: Path) -> dict[str, float]:
    if SMALL_COUNT <= 0:
        return {}
    local = work / "small"
    local.mkdir()
    files = []
    for index in range(SMALL_COUNT):
        path = local / f"s{index:05d}.dat"
        path.write_bytes(os.urandom(SMALL_SIZE))
        files.append(path)
    tmp, direct, native = [], [], []
    for _ in range(ROUNDS):
        tmp.append(await _small_ours(sshd, files, sshd.root / "small-tmp", use_tmp=True))
        direct.append(await _small_ours(sshd, files, sshd.root / "small-direct", use_tmp=False))
        native.append(_small_native(sshd, files, sshd.root / "small-native"))
    ours_tmp, ours_direct, best_native = min(tmp), min(direct), min(native)
    return {
        "files": SMALL_COUNT,
        "file_bytes": SMALL_SIZE,
        "concurrency": SMALL_CONCURRENCY,
        "files_s_usetmp": round(SMALL_COUNT / ours_tmp, 1),
        "files_s_direct": round(SMALL_COUNT / ours_direct, 1),
        "sftp_b_files_s": round(SMALL_COUNT / best_native, 1),
        "ratio_usetmp": round(best_native / ours_tmp, 3),
        "ratio_direct": round(best_native / ours_direct, 3),
        # Client CPU seconds (best round): on a busy machine the CPU-bound side loses most.
        "client_cpu_s_usetmp": round(min(CPU_USED["ours"]), 2),
        "client_cpu_s_sftp_b": round(min(CPU_USED["sftp_b"]), 2),
        "target_ratio": 1.2,
    }


async def main() -> None:
    size = (
        int(sys.argv[1])
        if len(sys.argv) > 1
        else int(os.environ.get("ECPDS_BENCH_SFTP_SIZE", str(1024**3)))
    )
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-sftp-"))
    sshd = Sshd(work / "sshd")
    try:
        result = {
            "benchmark": "sftp",
            "cipher": CIPHER,
            "big_file": await _big(sshd, work, size),
            "small_files": await _small(sshd, work),
        }
    finally:
        sshd.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    print(json.dumps(result))


if __name__ == "__main__":
    uvloop.run(main())
