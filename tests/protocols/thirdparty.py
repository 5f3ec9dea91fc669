"""Debian's OpenSSH sshd and vsftpd as a remote site runs them, for tests that need both: a
local account whose home is the login directory, an sshd it signs in to and a vsftpd.

Import the fixtures into a test module (``from tests.protocols.thirdparty import account,
sshd, vsftpd``); mark its server tests with ``servers`` (skipped, with the reason, where
either server or root is missing). Each fixture is module-scoped and cleans up after itself.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.protocols.test_sftp import SSHD, Sshd
from tests.protocols.vsftpd import VSFTPD, LocalAccount, Vsftpd, usable

__all__ = ["account", "servers", "sshd", "vsftpd"]

servers = pytest.mark.skipif(
    usable() is not None or not (Path(SSHD).exists() and Path(VSFTPD).exists()),
    reason=usable() or "openssh-server or vsftpd not installed",
)


@pytest.fixture(scope="module")
def account() -> Iterator[LocalAccount]:
    """A local user whose home is the login directory on both servers."""
    made = LocalAccount.create("ecpdsremote")
    yield made
    made.remove()


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    """Debian's sshd on a free port of 127.0.0.1."""
    # Not under pytest's 0700 temp dir: sshd reads authorized_keys as the logging-in user.
    root = Path(tempfile.mkdtemp(prefix="ecpds-sshd-", dir="/tmp"))
    root.chmod(0o755)
    server = Sshd(root)
    server.prepare()
    server.start()
    yield server
    server.kill()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def vsftpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vsftpd]:
    """Debian's vsftpd in the foreground on a free port of 127.0.0.1."""
    server = Vsftpd(tmp_path_factory.mktemp("vsftpd"))
    server.start()
    yield server
    server.stop()
