"""The chaos suite's private world: its own Kafka and PostgreSQL, the components as processes,
three destination servers and the TCP fault proxy in front of two of them.

- ``Infra``: a Kafka and a PostgreSQL of their own, started through ``infra/kafka/kafka.sh``
  and ``infra/pg/pg.sh`` with a fresh ``ECPDS_VAR`` (``var/chaos/run``) and free ports, so
  killing the broker or restarting the database never touches the session's services (nor
  another checkout's). Because the whole broker is private, the components run with their
  default topic names, as ``ecpds up`` runs them.
- ``ChaosStack``: the e2e ``Stack`` (API, scheduler, movers as processes) on those default
  topics, plus the projector and the notifier; it can SIGKILL and restart any of them by name.
- ``Servers``: OpenSSH sshd (key auth), pyftpdlib (password) and moto (S3, access keys),
  each able to go down and come back with its data, and to refuse the credential the
  destinations use for a while.

Rule kept: everything here binds 127.0.0.1, and whatever is started is stopped by the fixture
that started it, even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bus.settings import ROOT, Settings
from tests.chaos.writes import FolderWatch, s3_writes
from tests.conftest import free_port
from tests.e2e.conftest import Stack
from tests.protocols.ftpserver import FtpServer
from tests.protocols.test_s3 import BUCKET, Moto
from tests.protocols.test_sftp import LOGIN, Sshd

GROUP = "chaos"  # the transfer group of every chaos destination


@dataclass
class Infra:
    """A private single-node Kafka and PostgreSQL under ``var`` (fresh for each run)."""

    var: Path
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)

    def env(self) -> dict[str, str]:
        return {
            "ECPDS_VAR": str(self.var),
            "ECPDS_KAFKA_PORT": str(self.kafka_port),
            "ECPDS_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "ECPDS_PG_PORT": str(self.pg_port),
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def dsn(self) -> str:
        """The components' DSN: the application role, its password in this var's passfile."""
        return Settings.from_env(self.env()).pg_dsn

    def script(self, script: str, *args: str) -> None:
        done = subprocess.run(
            ["bash", str(ROOT / "infra" / script), *args],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{script} {' '.join(args)}: {done.stderr or done.stdout}")

    def start(self) -> None:
        # a run killed before its teardown may have left these running on the same data
        self.stop()
        shutil.rmtree(self.var, ignore_errors=True)
        self.var.mkdir(parents=True)
        self.script("kafka/kafka.sh", "start")
        self.script("pg/pg.sh", "start")

    def stop(self) -> None:
        for script in ("kafka/kafka.sh", "pg/pg.sh"):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.script(script, "stop")

    def kill_kafka(self) -> None:
        """SIGKILL the broker: no controlled shutdown, no flush, connections reset."""
        pid = int((self.var / "kafka" / "kafka.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_kafka(self) -> None:
        self.script("kafka/kafka.sh", "start")

    def stop_pg(self) -> None:
        self.script("pg/pg.sh", "stop")

    def start_pg(self) -> None:
        self.script("pg/pg.sh", "start")


@dataclass
class ChaosStack(Stack):
    """The e2e stack on the private broker's default topics, with every data-path component."""

    infra: Infra | None = None
    store: Path | None = None
    mqtt_port: int | None = None  # the notifier's MQTT broker

    @property
    def group(self) -> str:
        return GROUP

    def topic(self, name: str) -> str:
        return f"ecpds.{name}"

    def env(self) -> dict[str, str]:
        assert self.infra is not None
        env = {**super().env(), **self.infra.env(), "ECPDS_LOG_FORMAT": "console"}
        if self.store is not None:
            env["ECPDS_STORE_ROOT"] = str(self.store)
        if self.mqtt_port is not None:
            env["ECPDS_MQTT_PORT"] = str(self.mqtt_port)
        return env

    def start_projector(self) -> None:
        self._spawn("projector", ["-m", "projections.runner"])

    def start_notifier(self) -> None:
        self._spawn("notifier", ["-m", "consumers.notifier.runner"])

    def start(self, name: str) -> None:
        """Start the component ``name`` (``mover-a``/``mover-b`` are the two movers)."""
        if name.startswith("mover"):
            self.start_mover(name, capacity=8)
        elif name == "api":
            self.start_api()
        else:
            getattr(self, f"start_{name}")()

    def alive(self) -> dict[str, int | None]:
        """Each component's exit code, or None while it runs."""
        return {name: process.poll() for name, process in self.processes.items()}


@dataclass
class Servers:
    """The destinations' three servers and what a fault can do to each."""

    sshd: Sshd
    ftp: FtpServer
    moto: Moto | None  # None: no S3 destination in this world
    watch: FolderWatch  # the versions of every file at the SFTP and FTP servers

    @classmethod
    @contextlib.contextmanager
    def running(cls, root: Path, moto: Moto | None) -> Iterator[Servers]:
        sshd = Sshd(root / "sshd")
        sshd.prepare()
        sshd.start()
        (root / "ftp").mkdir()
        ftp = FtpServer(root / "ftp", free_port())
        ftp.start()
        try:
            with FolderWatch([sshd.data, ftp.root]) as watch:
                yield cls(sshd, ftp, moto, watch)
        finally:
            sshd.kill()
            ftp.stop()

    # -- faults --------------------------------------------------------------------------------

    def sftp_down(self) -> None:
        self.sshd.kill()

    def sftp_up(self) -> None:
        if self.sshd.process is None:
            self.sshd.start()

    def ftp_down(self) -> None:
        self.ftp.kill()

    def ftp_up(self) -> None:
        if self.ftp.process is None:
            self.ftp.start()

    def sftp_refuse_key(self, refuse: bool) -> None:
        """sshd reads ``authorized_keys`` at each login: emptied, the movers' key is refused
        exactly as a rotated one is; written back, it is accepted again."""
        key = Path(f"{self.sshd.client_key}.pub").read_text()
        self.sshd.authorized.write_text("" if refuse else key)

    def ftp_password(self, password: str) -> None:
        """The FTP account's password changed on the server (a restart of pyftpdlib with it)."""
        self.ftp.stop()
        self.ftp.password = password
        self.ftp.start()

    # -- what arrived --------------------------------------------------------------------------

    def sftp_folder(self, base: str) -> Path:
        return self.sshd.data / base

    def ftp_folder(self, base: str) -> Path:
        return self.ftp.root / base

    def written(self, files: list[tuple[Destination, str, int]]) -> list[int]:
        """How many times each (destination, target, size in bytes) was written at its
        server (moto's log is read once)."""
        s3 = s3_writes(self.moto.log) if self.moto and self.moto.log is not None else None
        self.watch.look()  # the last versions too
        counts = []
        for destination, target, size in files:
            if destination.protocol == "s3":
                assert s3 is not None, "moto's request log is needed to count S3 writes"
                counts.append(s3[f"{BUCKET}/{destination.base}/{target}"])
                continue
            folder = (
                self.sftp_folder(destination.base)
                if destination.protocol == "sftp"
                else self.ftp_folder(destination.base)
            )
            counts.append(self.watch.writes(folder / target, size))
        return counts

    def s3_objects(self, base: str) -> dict[str, bytes]:
        """Every object under ``base/`` by key relative to it (temporary keys included)."""
        assert self.moto is not None, "an S3 destination needs moto"
        client = self.moto.client()
        found: dict[str, bytes] = {}
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=BUCKET, Prefix=f"{base}/"):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                found[item["Key"].removeprefix(f"{base}/")] = body
        return found


def on_disk(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, hidden ones too (a leftover must show)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@dataclass(frozen=True)
class Destination:
    """One chaos destination: its only host, where that host writes, and through what.

    A host is its folder: destinations with the same ``base`` share one host (``host_id``),
    whose ``max_connections`` is ``host_connections`` (0: none set)."""

    name: str
    protocol: str  # sftp | ftp | s3
    base: str  # the host's folder (or S3 prefix) of this destination
    proxied: bool  # through a Toxiproxy proxy (sftp and s3: single-connection protocols)
    group: str = GROUP  # its transfer group
    host_connections: int = 0

    @property
    def host_id(self) -> str:
        return f"h-{self.base}"

    def host_yaml(self, servers: Servers, port: int) -> str:
        """The host's YAML entry, ``port`` being the server's or its proxy's."""
        lines = [
            f"  - id: {self.host_id}",
            f"    nickname: {self.protocol} {self.name}",
            "    type: dissemination",
            f"    protocol: {self.protocol}",
            # a host outage of tens of seconds is ridden out by the host's own retries
            "    retry_count: 5",
            "    retry_frequency: 2s",
        ]
        if self.host_connections:
            lines.append(f"    max_connections: {self.host_connections}")
        if self.protocol == "sftp":
            lines += [
                f"    address: 127.0.0.1:{port}{servers.sftp_folder(self.base)}",
                f"    login: {LOGIN}",
                "    options:",
                f'      sftp.privateKeyFile: "{servers.sshd.client_key}"',
                f'      sftp.fingerPrint: "{servers.sshd.fingerprint()}"',
            ]
        elif self.protocol == "ftp":
            lines += [
                f"    address: 127.0.0.1:{port}/{self.base}",
                f"    login: {servers.ftp.user}",
                f"    password: {servers.ftp.password}",
            ]
        else:
            lines += [
                f"    address: 127.0.0.1:{port}/{BUCKET}/{self.base}",
                f"    login: {servers.moto.key}",
                f"    password: {servers.moto.secret}",
                "    options:",
                '      s3.scheme: "http"',
                # a temporary key then a server-side copy, so the leftover check means something
                '      s3.usetmp: "yes"',
            ]
        return "\n".join(lines) + "\n"

    def destination_yaml(self) -> str:
        return (
            f"  - name: {self.name}\n    type: dissemination\n    transfer_group: {self.group}\n"
            "    retry_count: 20\n    retry_frequency: 3s\n    max_connections: 4\n"
            # the default policy delays a transfer started twice by ten minutes (OpenECPDS's
            # "maximum start"); a fault suite restarts transfers far more, and waits seconds
            "    max_start: 5\n    start_frequency: 5s\n"
        )

    def arrived(self, servers: Servers) -> dict[str, bytes]:
        """Everything at the destination now, by path relative to its folder."""
        if self.protocol == "sftp":
            return on_disk(servers.sftp_folder(self.base))
        if self.protocol == "ftp":
            return on_disk(servers.ftp_folder(self.base))
        return servers.s3_objects(self.base)


def destinations(tag: str) -> list[Destination]:
    """Ten destinations: four over SFTP, three over FTP, three over S3."""
    kinds = ["sftp"] * 4 + ["ftp"] * 3 + ["s3"] * 3
    return [
        Destination(f"{kind}{i}-{tag}", kind, f"chaos-{tag}-{kind}{i}", kind != "ftp")
        for i, kind in enumerate(kinds)
    ]


def mount_tmpfs(path: Path, size: str) -> bool:
    """A size-capped tmpfs at ``path`` (root only); whether it was mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def skip_unless(condition: bool, reason: str) -> None:
    if not condition:
        pytest.skip(reason)
