"""Fixtures of the portal's integration tests: the portal and the projector as real
subprocesses (as ``ecpds up`` runs them) on private topics of the test broker and a private
read-model schema, driven by Debian's stock clients: OpenSSH (``sftp``, ``scp``), ``curl``,
``rclone``, ``lftp`` and ``cadaver``.

Isolation: every module gets its own topic names (``portal.<tag>.*``), schema, store, operator
key, host key and spool, so nothing it does is seen by another test or by ``ecpds up``.
Configuration goes in through the same code ``ecpds config apply -f`` runs. Events are read back
from the topics (``Tail``); the read models are read with SQL. Passwords reach ``ssh`` through
``SSH_ASKPASS`` (no ``sshpass`` on the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from bus.events import Event
from bus.settings import Settings
from projections.migrate import migrate
from tests.conftest import free_port
from tests.e2e.conftest import Stack, Tail
from tests.projections.support import drop
from tests.protocols.vsftpd import _free_run as free_run

WAIT = 60.0
PASSIVE_PORTS = 16  # the FTP door's passive range: a run of ports free at the portal's start
E = TypeVar("E", bound=Event)
SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20",
)  # fmt: skip


@dataclass
class Site:
    """One remote site's credentials: a login, its password and its key pair."""

    login: str
    password: str
    key: Path

    @property
    def public(self) -> str:
        return (self.key.parent / (self.key.name + ".pub")).read_text().strip()


@dataclass
class PortalStack(Stack):
    """The portal and the projector of one test module, and the means to drive them (the e2e
    ``Stack``'s processes, logs and configuration, on this module's own topics)."""

    settings: Settings = field(default_factory=Settings.from_env)
    sftp_port: int = 0
    https_port: int = 0
    ftp_port: int = 0
    ftps_port: int = 0
    passive: tuple[int, int] = (0, 0)  # the FTP door's passive port range
    s3_port: int = 0

    def topic(self, name: str) -> str:
        return f"portal.{self.tag}.{name}"

    @property
    def schema(self) -> str:
        return f"portal_{self.tag}"

    @property
    def store(self) -> Path:
        return self.root / "store"

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "ECPDS_VAR": str(self.root),
            "ECPDS_PG_DSN": self.settings.pg_dsn,
        }

    def start_projector(self) -> None:
        pattern = rf"portal\.{self.tag}\..*"
        self._spawn(
            "projector",
            [
                "-m", "projections.runner", "--schema", self.schema,
                "--name", f"portal-{self.tag}", "--pattern", pattern,
            ],
        )  # fmt: skip

    def start_portal(self, extra: dict[str, str] | None = None) -> None:
        self.sftp_port, self.https_port, self.s3_port = free_port(), free_port(), free_port()
        self.ftp_port, self.ftps_port = free_port(), free_port()
        first = free_run(PASSIVE_PORTS)
        self.passive = (first, first + PASSIVE_PORTS - 1)
        log = self.root / "log" / "portal.log"
        seen = log.stat().st_size if log.exists() else 0  # a restart appends to the same log
        passive = {"ECPDS_PORTAL_FTP_PASSIVE_PORTS": "{}-{}".format(*self.passive), **(extra or {})}
        process = self._spawn(
            "portal",
            [
                "-m", "producers.portal.runner", "--sftp-port", str(self.sftp_port),
                "--https-port", str(self.https_port), "--s3-port", str(self.s3_port),
                "--ftp-port", str(self.ftp_port), "--ftps-port", str(self.ftps_port),
                "--config-topic", self.topic("config"),
                "--datafiles-topic", self.topic("datafiles"),
                "--transfers-topic", self.topic("transfers"),
                "--portal-topic", self.topic("portal"),
                "--store-root", str(self.store), "--schema", self.schema,
            ],
            passive,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the portal exited with {process.returncode}: {self.log('portal')}")
            if b"portal S3 listening" in log.read_bytes()[seen:]:  # the last door to open
                return
            time.sleep(0.2)
        pytest.fail(f"the portal did not start within 60 s: {self.log('portal')}")

    def site(self, login: str, password: str) -> Site:
        """A key pair for ``login`` (ed25519, no passphrase) under this module's root."""
        keys = self.root / "keys"
        keys.mkdir(exist_ok=True)
        key = keys / login
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", login, "-f", str(key)],
                check=True,
            )
        return Site(login, password, key)

    # -- clients ------------------------------------------------------------------------------

    def _askpass(self, password: str) -> dict[str, str]:
        script = self.root / f"askpass-{uuid.uuid4().hex[:8]}"
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{password}'\n")
        script.chmod(0o700)
        return {**os.environ, "SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force"}

    def _auth(self, site: Site, password: str | None) -> tuple[list[str], dict[str, str]]:
        if password is None:
            options = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(site.key)]
            return options, dict(os.environ)
        options = [
            "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1",
        ]  # fmt: skip
        return options, self._askpass(password)

    def sftp(
        self, site: Site, commands: Sequence[str], *, password: str | None = None, cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        """OpenSSH ``sftp -b`` running ``commands`` as ``site`` (its key, or ``password``)."""
        batch = cwd / f"batch-{uuid.uuid4().hex[:8]}"
        batch.write_text("\n".join(commands) + "\n")
        options, env = self._auth(site, password)
        argv = [
            "sftp", *options, *SSH_OPTIONS, "-P", str(self.sftp_port), "-b", str(batch),
            f"{site.login}@127.0.0.1",
        ]  # fmt: skip
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def scp(
        self,
        site: Site,
        source: str,
        target: str,
        *,
        password: str | None = None,
        cwd: Path,
        legacy: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """OpenSSH ``scp`` from ``source`` to ``target`` (``:path`` names the portal): ``-O``,
        the SCP protocol, when ``legacy``; else its default since OpenSSH 9.0, SFTP."""
        options, env = self._auth(site, password)
        here = f"{site.login}@127.0.0.1"
        source = here + source if source.startswith(":") else source
        target = here + target if target.startswith(":") else target
        mode = ["-O"] if legacy else []
        argv = ["scp", *mode, *options, *SSH_OPTIONS, "-P", str(self.sftp_port), source, target]
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def rclone(self, site: Site, kind: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Stock ``rclone`` with a remote ``p:`` of type ``kind`` (``sftp``, ``webdav`` or
        ``s3``) on the portal's door for it, signed in as ``site`` with its password."""
        obscured = subprocess.run(
            ["rclone", "obscure", site.password], capture_output=True, text=True, check=True
        ).stdout.strip()
        remote = {"TYPE": kind, "USER": site.login, "PASS": obscured}
        if kind == "s3":  # the password is the S3 secret (sealed for the door)
            remote = {
                "TYPE": kind, "PROVIDER": "Other", "ACCESS_KEY_ID": site.login,
                "SECRET_ACCESS_KEY": site.password, "REGION": "us-east-1",
                "ENDPOINT": f"https://127.0.0.1:{self.s3_port}", "FORCE_PATH_STYLE": "true",
            }  # fmt: skip
        elif kind == "sftp":
            remote |= {"HOST": "127.0.0.1", "PORT": str(self.sftp_port)}
        else:
            remote |= {"URL": f"https://127.0.0.1:{self.https_port}/", "VENDOR": "other"}
        env = {**os.environ, **{f"RCLONE_CONFIG_P_{k}": v for k, v in remote.items()}}
        cert = self.root / "secrets" / "portal" / "tls" / "server.crt"
        argv = ["rclone", "--config", "/dev/null", "--ca-cert", str(cert), "--retries", "1"]
        env.pop("AWS_CA_BUNDLE", None)  # the s3 remote's SDK refuses it beside --ca-cert
        return subprocess.run(
            [*argv, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def lftp(
        self, site: Site, commands: Sequence[str], *, password: str | None = None, cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        """Stock ``lftp`` running ``commands`` on its ``sftp://`` (OpenSSH ``ssh`` as its
        connect program) as ``site``: its key, or ``password`` (which lftp types at ssh's
        prompt). It stops at the first command that fails, and exits non-zero then."""
        if password is None:
            auth = f"-o BatchMode=yes -o IdentitiesOnly=yes -i {site.key}"
            user = f"{site.login},"  # an empty password: lftp asks for none
        else:
            auth = "-o PubkeyAuthentication=no -o NumberOfPasswordPrompts=1"
            user = f"{site.login},{password}"
        ssh = f"ssh -a -x {auth} {' '.join(SSH_OPTIONS)}"
        script = cwd / f"lftp-{uuid.uuid4().hex[:8]}"
        script.write_text(
            "set cmd:fail-exit yes\nset net:max-retries 1\nset net:timeout 20\n"
            f'set sftp:connect-program "{ssh}"\n'
            f"open -u {user} -p {self.sftp_port} sftp://127.0.0.1\n" + "\n".join(commands) + "\n"
        )
        return subprocess.run(
            ["lftp", "-f", str(script)],
            cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip

    def cadaver(self, site: Site, folder: str, commands: Sequence[str], *, cwd: Path) -> str:
        """Stock ``cadaver`` (WebDAV) on the collection ``folder`` of the HTTPS door, signed in
        as ``site`` from a ``.netrc`` in a private HOME, running ``commands``; its transcript.

        cadaver reads a terminal (piped, it rejects a certificate it cannot verify without
        asking), so it runs under ``script``'s pty, and the first line typed accepts the
        portal's self-signed certificate. It exits 0 whatever its commands did: what each did
        is in the transcript (``succeeded.`` or ``failed:`` and the status)."""
        home = cwd / f"home-{uuid.uuid4().hex[:8]}"
        home.mkdir()
        netrc = home / ".netrc"
        netrc.write_text(f"machine 127.0.0.1\nlogin {site.login}\npassword {site.password}\n")
        netrc.chmod(0o600)
        url = f"https://127.0.0.1:{self.https_port}{folder}"
        typed = "y\n" + "\n".join([*commands, "quit"]) + "\n"
        done = subprocess.run(
            ["script", "-qec", f"cadaver {url}", "/dev/null"],
            input=typed, cwd=cwd, env={**os.environ, "HOME": str(home), "TERM": "dumb"},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.replace("\r", "")

    def curl(
        self, path: str, *args: str, login: Site | None = None, password: str | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """``curl`` against the HTTPS door, trusting its certificate; ``-w`` appends the status
        as a last line ``HTTP <code>``."""
        cert = self.root / "secrets" / "portal" / "tls" / "server.crt"
        argv = [
            "curl", "-sS", "--path-as-is", "--cacert", str(cert), "-D", "-",
            "-w", "\\nHTTP %{http_code}", *args,
        ]  # fmt: skip
        if login is not None:
            argv += ["-u", f"{login.login}:{password or login.password}"]
        argv.append(f"https://127.0.0.1:{self.https_port}{path}")
        return subprocess.run(argv, capture_output=True, timeout=120, check=False)

    # -- reading back -------------------------------------------------------------------------

    def events(self, cls: type[E]) -> list[E]:
        assert self.tail is not None
        return [e for e in self.tail.events if isinstance(e, cls)]

    async def until(self, found: Callable[[], bool], timeout: float = WAIT) -> None:
        assert self.tail is not None
        await self.tail.until(lambda _: found(), timeout)

    async def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        options = f"-c search_path={self.schema}"
        async with await psycopg.AsyncConnection.connect(
            self.settings.pg_dsn, options=options, autocommit=True
        ) as conn:
            cursor = await conn.execute(query.encode(), params)  # type: ignore[arg-type]
            return list(await cursor.fetchall())

    async def listed(self, destination: str, target: str, timeout: float = WAIT) -> None:
        """Wait until the read models hold ``target`` of ``destination`` as available."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await self.rows(
                "SELECT status FROM transfers WHERE destination = %s AND target = %s",
                destination,
                target,
            )
            if rows and rows[0][0] not in (None, "INIT"):
                return
            await asyncio.sleep(0.2)
        pytest.fail(f"{destination}/{target} not projected in {timeout} s")


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


CONFIG = """
transfer_groups:
  - name: portal-{tag}
destinations:
  - name: pickup-{tag}
    type: dissemination
    transfer_group: portal-{tag}
    standby: true
  - name: other-{tag}
    type: dissemination
    transfer_group: portal-{tag}
    standby: true
"""


@pytest.fixture(scope="module")
async def portal(
    kafka: str, postgres: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PortalStack]:
    """The portal and a projector running on this module's topics and schema, with two
    destinations on standby (what arrives waits for pickup): ``pickup-<tag>`` and
    ``other-<tag>``."""
    tag = uuid.uuid4().hex[:8]
    made = PortalStack(kafka, tmp_path_factory.mktemp(f"portal-{tag}"), tag, settings=settings)
    (made.root / "secrets").mkdir(mode=0o700)
    await migrate(postgres, made.schema)
    made.tail = Tail(
        kafka,
        [made.topic(n) for n in ("datafiles", "transfers", "portal")],
    )
    try:
        await made.apply(CONFIG.format(tag=tag))
        await asyncio.to_thread(made.start_portal)
        made.start_projector()
        await made.tail.start()
        yield made
    finally:
        await asyncio.gather(*(asyncio.to_thread(made.stop, n) for n in list(made.processes)))
        if made.tail is not None:
            await made.tail.stop()
        await drop(postgres, made.schema)
