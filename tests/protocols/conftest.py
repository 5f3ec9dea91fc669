"""Generic fixtures for protocol tests (no protocol-specific content here).

- ``free_port``: a callable returning a TCP port free on 127.0.0.1 right now.
- ``tls_files``: a private CA made with trustme and a server certificate for ``127.0.0.1`` and
  ``localhost`` signed by it, written as PEM files (``ca``, ``cert``, ``key``, and ``chain``
  = cert + key in one file, the form pyftpdlib and many servers take). Session scope.
- ``ram_dir``: a callable ``(name) -> Path`` making a fresh directory on tmpfs (``/dev/shm``)
  when there is one, else under pytest's temp dir: creating 10,000 small files there takes a
  fraction of a second instead of seconds on a busy disk. Session scope, removed at the end.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test CA and a server certificate it signed."""

    ca: Path
    cert: Path
    key: Path
    chain: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    return _free_port


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(
        ca=directory / "ca.pem",
        cert=directory / "cert.pem",
        key=directory / "key.pem",
        chain=directory / "chain.pem",
    )
    authority.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.cert))
    server.private_key_pem.write_to_path(str(files.key))
    server.private_key_and_cert_chain_pem.write_to_path(str(files.chain))
    return files


@pytest.fixture(scope="session")
def ram_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    shm = Path("/dev/shm")
    if shm.is_dir():
        root = Path(tempfile.mkdtemp(prefix="ecpds-tests-", dir=shm))
    else:
        root = tmp_path_factory.mktemp("ram")

    def make(name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))

    yield make
    shutil.rmtree(root, ignore_errors=True)
