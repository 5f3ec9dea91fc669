"""A pyftpdlib FTP/FTPS server for tests and benchmarks, run as its own process.

``python -m tests.protocols.ftpserver --port P --root DIR [--tls explicit|implicit --cert F]``
serves ``DIR`` on 127.0.0.1 to one user with every right and to ``reader`` (same password)
with read rights only. It runs in a subprocess so a test can kill it with
SIGKILL mid-transfer and so its single-threaded loop never competes with the client's loop.
``FtpServer`` starts, waits for and stops such a process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class FtpServer:
    """One server process: plain FTP, or FTPS with ``tls`` = ``explicit`` or ``implicit``."""

    root: Path
    port: int
    user: str = "ecpds"
    password: str = "secret"
    tls: str = "none"
    certfile: Path | None = None
    buffer: int = 65536
    mlsd: bool = True  # False: RFC 959 only (no MLSD, MLST, SIZE), for the fallbacks
    hide_dot_files: bool = False  # True: listings leave dot files out (vsftpd's default)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "tests.protocols.ftpserver",
            f"--port={self.port}",
            f"--root={self.root}",
            f"--user={self.user}",
            f"--password={self.password}",
            f"--tls={self.tls}",
            f"--buffer={self.buffer}",
        ]
        if self.certfile is not None:
            argv.append(f"--cert={self.certfile}")
        if not self.mlsd:
            argv.append("--no-mlsd")
        if self.hide_dot_files:
            argv.append("--hide-dot-files")
        self.process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ftp server exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("ftp server did not start listening")

    def kill(self) -> None:
        """SIGKILL: every connection drops at once, no goodbye."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(args: argparse.Namespace) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    # A read-only user, for permission-denied cases.
    authorizer.add_user("reader", args.password, args.root, perm="elr")
    handler: type[FTPHandler]
    if args.tls == "none":
        handler = FTPHandler
        DTPHandler.ac_in_buffer_size = DTPHandler.ac_out_buffer_size = args.buffer
    else:
        TLS_DTPHandler.ac_in_buffer_size = TLS_DTPHandler.ac_out_buffer_size = args.buffer

        class Secure(TLS_FTPHandler):  # type: ignore[misc]
            certfile = args.cert
            tls_control_required = True
            tls_data_required = True

        if args.tls == "implicit":

            class Implicit(Secure):
                # Implicit FTPS: TLS from the first byte, banner only once it is up.
                def handle(self) -> None:
                    self.secure_connection(self.ssl_context)

                def handle_ssl_established(self) -> None:
                    TLS_FTPHandler.handle(self)

            handler = Implicit
        else:
            handler = Secure
    if args.no_mlsd:
        handler.proto_cmds = {
            k: v for k, v in handler.proto_cmds.items() if k not in {"MLSD", "MLST", "SIZE"}
        }
    if args.hide_dot_files:
        from pyftpdlib.filesystems import AbstractedFS

        class Hiding(AbstractedFS):  # type: ignore[misc]
            def listdir(self, path: str) -> list[str]:
                return [n for n in super().listdir(path) if not n.startswith(".")]

        handler.abstracted_fs = Hiding
    handler.authorizer = authorizer
    handler.passive_ports = None
    handler.permit_foreign_addresses = False
    handler.banner = "ecpds test ftp"
    handler.auth_failed_timeout = 0.1  # pyftpdlib's 3 s anti-brute-force pause slows tests
    server = FTPServer(("127.0.0.1", args.port), handler)
    server.max_cons = 256
    signal.signal(signal.SIGTERM, lambda *_: server.close_all())
    with contextlib.suppress(Exception):
        server.serve_forever(handle_exit=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", default="ecpds")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--tls", choices=["none", "explicit", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--buffer", type=int, default=65536)
    parser.add_argument("--no-mlsd", action="store_true")
    parser.add_argument("--hide-dot-files", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    import logging

    logging.basicConfig(level=logging.WARNING)
    _serve(args)


if __name__ == "__main__":
    main()
