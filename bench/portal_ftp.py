"""Data Portal FTP benchmark: ``curl`` getting and putting one large file through the portal's
FTP door, beside the same ``curl`` against Debian's vsftpd serving the same file from a folder,
in the same round.

- get: ``curl -o`` of the file from the portal (from its object store, ADLER32 verified as it
  is read) beside the same from vsftpd (``sendfile`` from the page cache).
- put: ``curl -T`` of the file into the portal (through ingest into the store, ADLER32 and MD5
  computed) beside the same into vsftpd's folder.
- Plain FTP by default; ``--tls`` runs both sides over explicit TLS (``--ssl-reqd``: AUTH TLS,
  PROT P), vsftpd with the portal's own certificate and key.

Target (issue 15): at least 0.8x of vsftpd both ways. Size: ``--size`` (bytes, or with K/M/G;
default 1 GiB). Rounds: ``--rounds`` (3); in each, the portal's run and vsftpd's go back to
back, and what is read is read once beforehand, untimed, so both sides serve from the page
cache. Rates are medians and best rounds; ratios are the median of each round's ratio (the
machine is shared: compare ratios within one run, not rates across runs); the portal's CPU
seconds per GB beside its rates. The portal and a projector run as subprocesses on private
topics and a private schema of the bench Kafka/PostgreSQL (under ECPDS_VAR, default
var/bench); vsftpd runs as a throw-away local account (needs root, as its tests do). Binds
127.0.0.1 only, cleans up, prints one JSON object.

Measured (the shared 2-core machine, load 4-13): at 1 GiB, three rounds, plain FTP: get 480
MB/s against vsftpd's 618 (0.80x; best rounds 779 and 786), put 242 against 297 (0.83x); a
second run: get 644 against 355 (1.42x; best 926 and 820), put 302 against 363 (0.74x). The
portal's CPU per GB: get 0.80-0.88 s, put 3.85-4.16 s (ADLER32, MD5 and the store's write
and fsync: vsftpd's put does not fsync). Over TLS at 1 GiB: get 281 MB/s against 203 (1.31x),
put 116 against 152 (0.76x); CPU per GB get 1.58 s, put 4.44 s. At 256 MiB, three rounds:
plain get 0.82x, put 0.56x;
over TLS get 0.99x, put 0.73x (a connection's fixed costs, its argon2 sign-in among them,
weigh more on a smaller file).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _infra import emit, service, settings
from ftp import parse_size
from portal import PASSWORD_USER, _cpu, _warm, side_ratio, stored_object, throughput
from sftp import _make_file

# bench/projections.py and bench/store.py would shadow the packages while bench/ leads sys.path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from projections.migrate import migrate  # noqa: E402
from tests.portal.conftest import CONFIG, PortalStack  # noqa: E402
from tests.projections.support import drop  # noqa: E402
from tests.protocols.vsftpd import LocalAccount, Vsftpd, usable  # noqa: E402


class TlsVsftpd(Vsftpd):
    """vsftpd with explicit TLS forced for sign-in and data, on the portal's certificate."""

    def __init__(self, root: Path, cert: Path, key: Path) -> None:
        super().__init__(root)
        tls = [
            "ssl_enable=YES", f"rsa_cert_file={cert}", f"rsa_private_key_file={key}",
            "force_local_logins_ssl=YES", "force_local_data_ssl=YES", "require_ssl_reuse=NO",
            "ssl_ciphers=HIGH", "",
        ]  # fmt: skip

        class Config(type(self.config)):  # type: ignore[misc]
            """Its configuration file, written with TLS on."""

            def write_text(self, data: str, *args: object, **kwargs: object) -> int:
                return int(super().write_text(data.replace("ssl_enable=NO\n", "\n".join(tls))))

        self.config = Config(self.config)


def _curl(url: str, login: str, password: str, cert: Path, tls: bool, *args: str) -> float:
    """Seconds ``curl`` takes for ``url`` (``--ssl-reqd`` with ``tls``, trusting ``cert``)."""
    secure = ["--ssl-reqd", "--cacert", str(cert)] if tls else []
    argv = ["curl", "-sS", "--fail", *secure, "-u", f"{login}:{password}", *args, url]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=1024**3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tls", action="store_true", help="explicit TLS on both sides")
    args = parser.parse_args()
    size, tls = int(args.size), bool(args.tls)
    if (why := usable()) is not None:
        sys.exit(f"vsftpd cannot run here: {why}")
    config = settings()
    service(config, "kafka/kafka.sh")
    service(config, "pg/pg.sh")
    work = Path(tempfile.mkdtemp(prefix="ecpds-bench-portal-ftp-"))
    tag = uuid.uuid4().hex[:8]
    stack = PortalStack(config.kafka_bootstrap, work / "portal", tag, settings=config)
    (stack.root / "secrets").mkdir(parents=True, mode=0o700)
    account = LocalAccount.create(f"ecpdsb{tag[:6]}")
    vsftpd: Vsftpd | None = None
    login, password = f"bench-{tag}", "bench-secret"
    try:
        await migrate(config.pg_dsn, stack.schema)
        await stack.apply(CONFIG.format(tag=tag))
        await stack.apply(PASSWORD_USER.format(tag=tag))
        await asyncio.to_thread(stack.start_portal)
        stack.start_projector()
        portal = stack.processes["portal"]
        cert = stack.root / "secrets" / "portal" / "tls" / "server.crt"
        folder = account.directory("served")
        source = folder / "big.bin"  # in vsftpd's folder: the same inode both sides read
        _make_file(source, size)
        if tls:
            key = account.directory("tls") / "server.key"
            shutil.copy(cert.with_name("server.key"), key)  # vsftpd reads it as the account
            vsftpd = TlsVsftpd(account.directory("vsftpd"), cert, key)
        else:
            vsftpd = Vsftpd(account.directory("vsftpd"))
        vsftpd.start()
        await asyncio.sleep(1.0)  # the portal follows the configuration topic
        dest = f"pickup-{tag}"
        ours = f"ftp://127.0.0.1:{stack.ftp_port}/{dest}"
        theirs = f"ftp://127.0.0.1:{vsftpd.port}/{folder}"  # // : an absolute path
        await asyncio.to_thread(
            _curl, f"{ours}/big.bin", login, password, cert, tls, "-T", str(source)
        )
        await stack.listed(dest, "big.bin", timeout=120)
        stored = await stored_object(stack, dest, "big.bin")  # the object the portal serves
        got = work / "got.bin"
        times: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}

        async def measure(name: str, run: Callable[..., float], *more: object) -> None:
            """Time ``run(*more)`` (and the portal's CPU when it is the portal's turn)."""
            got.unlink(missing_ok=True)
            _warm(stored if name == "get" else source)
            before = _cpu(portal)
            times.setdefault(name, []).append(await asyncio.to_thread(run, *more))
            if name in ("get", "put"):
                cpu.setdefault(name, []).append(_cpu(portal) - before)
            if "get" in name:
                assert got.stat().st_size == size, name
            got.unlink(missing_ok=True)

        for index in range(args.rounds):
            # each portal figure beside its baseline, back to back in the same round
            fetch = ("-o", str(got))
            await measure("get", _curl, f"{ours}/big.bin", login, password, cert, tls, *fetch)
            await measure(
                "get_vsftpd", _curl, f"{theirs}/big.bin", account.name, account.password,
                cert, tls, *fetch,
            )  # fmt: skip
            send = ("-T", str(source))
            await measure(
                "put", _curl, f"{ours}/put-{index}.bin", login, password, cert, tls, *send
            )
            await measure(
                "put_vsftpd", _curl, f"{theirs}/put-{index}.bin", account.name, account.password,
                cert, tls, *send,
            )  # fmt: skip
            (folder / f"put-{index}.bin").unlink(missing_ok=True)

        def rate(name: str) -> dict[str, float]:
            return throughput(times, cpu, name, size)

        def ratio(ours: str, base: str) -> float:
            return side_ratio(times, ours, base)

        emit(
            {
                "benchmark": "portal_ftp",
                "size_bytes": size,
                "tls": tls,
                "rounds": args.rounds,
                "get_portal": rate("get"),
                "get_vsftpd": rate("get_vsftpd"),
                "put_portal": rate("put"),
                "put_vsftpd": rate("put_vsftpd"),
                "get_ratio": ratio("get", "get_vsftpd"),
                "put_ratio": ratio("put", "put_vsftpd"),
                "target": 0.8,
            }
        )
    finally:
        if vsftpd is not None:
            vsftpd.stop()
        for name in list(stack.processes):
            stack.stop(name)
        await drop(config.pg_dsn, stack.schema)
        account.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
