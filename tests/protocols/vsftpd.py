"""Debian's vsftpd and a local account for it, for tests that need a real third-party FTP server.

- ``LocalAccount``: a system user made with ``useradd`` for the test (a shell from
  /etc/shells and a password, which PAM's ``pam_shells`` and a not-locked account need), whose
  home is a fresh directory under /tmp (world-traversable, so sshd and vsftpd, acting as the
  user, reach it). ``remove`` deletes the user and the directories it was given.
- ``Vsftpd``: vsftpd in the foreground (``listen=YES``, ``background=NO``) on 127.0.0.1 and a
  free port, passive ports from a free run of ports on 127.0.0.1, local users with write access
  and no chroot (so an absolute path is the real one), and its own empty ``secure_chroot_dir``.
  The kernel sandboxes it would set up (seccomp, network namespaces) are off: containers often
  refuse them, and the test needs the FTP behaviour, not the isolation.

Both need root (the tests are skipped otherwise); nothing is left on the machine afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VSFTPD = "/usr/sbin/vsftpd"
SHELL = "/bin/sh"  # listed in /etc/shells, as vsftpd's PAM stack (pam_shells) requires
PASSIVE_PORTS = 16


def usable() -> str | None:
    """Why these servers cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (useradd, and vsftpd/sshd switching to the test user)"
    if shutil.which("useradd") is None:
        return "useradd is not installed"
    return None


@dataclass
class LocalAccount:
    """A system user whose home is a fresh directory; ``directory`` makes more it owns."""

    name: str
    password: str
    home: Path
    made: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, name: str) -> LocalAccount:
        home = Path(tempfile.mkdtemp(prefix=f"{name}-home-", dir="/tmp"))
        password = secrets.token_hex(12)
        with contextlib.suppress(subprocess.CalledProcessError):  # left by a killed run
            subprocess.run(["userdel", name], check=True, capture_output=True)
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", SHELL, name],
            check=True,
            capture_output=True,
        )
        subprocess.run(["chpasswd"], input=f"{name}:{password}".encode(), check=True)
        account = cls(name, password, home, [home])
        account.own(home)
        return account

    def own(self, path: Path) -> None:
        os.chown(path, *self.ids())
        path.chmod(0o755)

    def ids(self) -> tuple[int, int]:
        entry = pwd.getpwnam(self.name)
        return entry.pw_uid, entry.pw_gid

    def directory(self, prefix: str) -> Path:
        """A fresh directory outside the home, owned by the user (for absolute paths)."""
        path = Path(tempfile.mkdtemp(prefix=f"{self.name}-{prefix}-", dir="/tmp"))
        self.made.append(path)
        self.own(path)
        return path

    def remove(self) -> None:
        subprocess.run(["userdel", self.name], check=False, capture_output=True)
        for path in self.made:
            shutil.rmtree(path, ignore_errors=True)


def _free_run(length: int) -> int:
    """The first port of ``length`` consecutive ports free on 127.0.0.1 right now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + length > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(first, first + length):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no run of {length} free ports on 127.0.0.1")


class Vsftpd:
    """vsftpd in the foreground on 127.0.0.1, local users allowed to write, no chroot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_run(1)
        self.config = root / "vsftpd.conf"
        self.log = root / "vsftpd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        empty = self.root / "empty"
        empty.mkdir(mode=0o755, exist_ok=True)  # secure_chroot_dir: empty, not writable
        passive = _free_run(PASSIVE_PORTS)
        self.config.write_text(
            "\n".join(
                [
                    "listen=YES",
                    "listen_ipv6=NO",
                    "background=NO",
                    "listen_address=127.0.0.1",
                    f"listen_port={self.port}",
                    "anonymous_enable=NO",
                    "local_enable=YES",
                    "write_enable=YES",
                    "local_umask=022",
                    "chroot_local_user=NO",
                    "userlist_enable=NO",
                    "pam_service_name=vsftpd",
                    "port_enable=NO",
                    "connect_from_port_20=NO",
                    "pasv_enable=YES",
                    "pasv_address=127.0.0.1",
                    f"pasv_min_port={passive}",
                    f"pasv_max_port={passive + PASSIVE_PORTS - 1}",
                    f"secure_chroot_dir={empty}",
                    "seccomp_sandbox=NO",
                    "isolate=NO",
                    "isolate_network=NO",
                    "ssl_enable=NO",
                    "xferlog_enable=YES",
                    f"vsftpd_log_file={self.log}",
                    "max_per_ip=50",
                    "",
                ]
            )
        )
        self.config.chmod(0o600)
        self.process = subprocess.Popen(
            [VSFTPD, str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read() if self.process.stderr else b""
                raise RuntimeError(f"vsftpd exited: {error.decode(errors='replace').strip()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"vsftpd does not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
