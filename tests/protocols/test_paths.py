"""Paths as FTP and SFTP clients resolve them, against Debian's OpenSSH sshd and vsftpd.

A relative Host Directory (``inbox/sftp/``) is under the login directory, an absolute one is
where it says, and missing parents are made either way; the acquisition lists a relative
directory from the login directory too. Each case goes the way the stages go: the ``Host`` ->
``Location`` of the movers (``location_for``, ``target_path``, the pool, ``deliver``) or of the
acquisition, then checked on the server's disk. The login is a local user made for the test
whose home is a fresh directory, so "under the login directory" is a path the test can read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus.events.config import Host, HostType
from consumers.movers import core
from consumers.movers.delivery import Meter, deliver
from protocols.base import Location, from_bytes, read_all
from protocols.location import location_for
from protocols.pool import ConnectionPool
from protocols.registry import connect
from store.local import LocalStore
from tests.movers.support import host, order, stored
from tests.protocols.test_sftp import Sshd
from tests.protocols.thirdparty import account, servers, sshd, vsftpd
from tests.protocols.vsftpd import LocalAccount, Vsftpd

__all__ = ["account", "sshd", "vsftpd"]  # the servers, as fixtures

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_resolve_keeps_absolute_paths_and_leaves_login_relative_ones_relative() -> None:
    """Absolute wins; relative is under the base, and stays relative under a relative base."""
    login = Location(scheme="sftp", path=".")
    assert login.resolve("inbox/sftp/a.bin") == "inbox/sftp/a.bin"
    assert login.resolve("/data/in/a.bin") == "/data/in/a.bin"
    assert login.resolve("") == "."
    assert Location(scheme="sftp", path="").resolve("x") == "x"  # empty: the login directory
    assert Location(scheme="sftp", path="/base").resolve("inbox/../a") == "/base/a"
    assert Location(scheme="sftp", path="/base").resolve("/abs") == "/abs"


def test_a_remote_without_a_login_directory_roots_what_is_relative() -> None:
    """file, HTTP and memory read a path still relative after the base as under ``/``."""
    assert Location(scheme="file", path=".").rooted("inbox/a") == "/inbox/a"
    assert Location(scheme="file", path=".").rooted("") == "/"
    assert Location(scheme="file", path="/srv/out").rooted("inbox/a") == "/srv/out/inbox/a"


def test_the_url_of_a_login_relative_location_is_under_home() -> None:
    """Logs and events write a login-relative base as ``/~``, as SFTP URLs do."""
    assert Location(scheme="sftp", host="h", user="u", path=".").url == "sftp://u@h/~"
    assert Location(scheme="ftp", host="h", path="inbox").url == "ftp://h/~/inbox"
    assert Location(scheme="ftp", host="h", path="/abs").url == "ftp://h/abs"


HostOf = Callable[..., tuple[Host, str | None]]


@pytest.fixture(params=["sftp", "ftp"])
def host_of(
    request: pytest.FixtureRequest, account: LocalAccount, sshd: Sshd, vsftpd: Vsftpd
) -> HostOf:
    """Makes a host of the parameter's protocol, logging in as the test user (and its
    password, decrypted, as the runners hand it to ``location_for``)."""

    def make(**kw: object) -> tuple[Host, str | None]:
        if request.param == "sftp":
            options = {
                "sftp.privateKeyFile": str(sshd.client_key),
                "sftp.fingerPrint": sshd.fingerprint(),
            }
            made = host("sftp", f"127.0.0.1:{sshd.port}", login=account.name, options=options)
            return _with(made, **kw), None
        made = host("ftp", f"127.0.0.1:{vsftpd.port}", login=account.name)
        return _with(made, **kw), account.password

    return make


def _with(made: Host, **kw: object) -> Host:
    return replace(made, **kw)  # type: ignore[arg-type]


async def _deliver(made: Host, password: str | None, tmp_path: Path, target: str) -> str:
    """Deliver one object to ``made`` as a mover does; the remote path it reports."""
    store = LocalStore(tmp_path / "store")
    obj = await stored(store, b"bytes for " + target.encode())
    sent = order(obj, made, target=target)
    path = core.target_path(sent, "mover-1", NOW)
    pool = ConnectionPool()
    try:
        done = await deliver(
            sent, location_for(made, password), path, store, pool, Meter(None, lambda _: None)
        )
    finally:
        await pool.close()
    return done.remote_path


@servers
async def test_a_relative_directory_lands_under_the_login_directory(
    host_of: HostOf, account: LocalAccount, tmp_path: Path
) -> None:
    """``directory: inbox/<n>/`` writes to ``~/inbox/<n>/`` (parents made), not ``/inbox``."""
    made, password = host_of(directory=f"inbox/{tmp_path.name}/")
    remote = await _deliver(made, password, tmp_path, "a.bin")
    assert remote == f"inbox/{tmp_path.name}/a.bin"
    landed = account.home / "inbox" / tmp_path.name / "a.bin"
    assert landed.read_bytes() == b"bytes for a.bin"
    assert not Path(f"/inbox/{tmp_path.name}").exists()


@servers
async def test_an_absolute_directory_stays_absolute(
    host_of: HostOf, account: LocalAccount, tmp_path: Path
) -> None:
    """``directory: /abs/out/`` writes to ``/abs/out/`` (the missing ``out`` made)."""
    absolute = account.directory("abs")
    made, password = host_of(directory=f"{absolute}/out/")
    remote = await _deliver(made, password, tmp_path, "b.bin")
    assert remote == f"{absolute}/out/b.bin"
    assert (absolute / "out" / "b.bin").read_bytes() == b"bytes for b.bin"
    assert not (account.home / absolute.relative_to("/")).exists()


@servers
async def test_the_acquisition_lists_a_relative_directory_from_the_login_directory(
    host_of: HostOf, account: LocalAccount, tmp_path: Path
) -> None:
    """A relative acquisition directory lists ``~/<dir>``; the files read back whole."""
    folder = account.home / "outgoing" / tmp_path.name
    folder.mkdir(parents=True)
    (folder / "x.dat").write_bytes(b"x" * 10)
    for path in (account.home / "outgoing", folder, folder / "x.dat"):
        account.own(path)
    made, password = host_of(type=HostType.ACQUISITION, directory=f"outgoing/{tmp_path.name}")
    location: Location = location_for(made, password)
    conn = await connect(location)
    try:
        entries = await conn.list(f"outgoing/{tmp_path.name}")
        assert [(e.name, e.size) for e in entries] == [("x.dat", 10)]
        assert await read_all(conn.get(f"outgoing/{tmp_path.name}/x.dat")) == b"x" * 10
        assert "outgoing" in [e.name for e in await conn.list(".")]
    finally:
        await conn.close()


@servers
async def test_a_put_to_a_login_relative_location_needs_no_base_path(
    host_of: HostOf, account: LocalAccount, tmp_path: Path
) -> None:
    """A module given a relative path at a login-directory location writes under the home."""
    made, password = host_of()
    conn = await connect(location_for(made, password))
    try:
        await conn.put(f"{tmp_path.name}/deep/c.bin", from_bytes(b"c"))
        await conn.mkdir(f"{tmp_path.name}/made")
    finally:
        await conn.close()
    assert (account.home / tmp_path.name / "deep" / "c.bin").read_bytes() == b"c"
    assert (account.home / tmp_path.name / "made").is_dir()
