"""The connection pool: reuse per key, bounds, idle expiry, and dropping broken sessions.

Runs against real modules: ``memory`` for the bookkeeping and a pyftpdlib server (killed and
restarted) for a session that really breaks.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from protocols.base import (
    Connection,
    ConnectionLost,
    Location,
    NotFound,
    TransferError,
    from_bytes,
    read_all,
)
from protocols.memory import MemoryConnection
from protocols.pool import ConnectionPool, PoolKey
from protocols.registry import connect
from tests.protocols.contract import TransferContract
from tests.protocols.ftpserver import FtpServer, free_port
from tests.protocols.test_sftp import Sshd

_counter = itertools.count()


def memory(path: str = "/", **options: str) -> Location:
    return Location(scheme="memory", host="pool", path=path, options=options)


class Recorder:
    """An opener that records what it opened (real memory connections)."""

    def __init__(self) -> None:
        self.opened: list[Connection] = []

    async def __call__(self, location: Location) -> Connection:
        connection = await connect(location)
        self.opened.append(connection)
        return connection


class TestPooledContract(TransferContract):
    """A connection lent by the pool keeps the whole transfer contract."""

    @pytest.fixture
    async def location(self) -> Location:
        base = f"/pooled{next(_counter)}"
        location = Location(scheme="memory", host="pooled", path=base)
        connection = await connect(location)
        await connection.mkdir(base)
        await connection.close()
        return location

    @pytest.fixture
    async def conn(self, location: Location) -> AsyncIterator[Connection]:
        pool = ConnectionPool()
        # Lend from a location with another base path first: the session must be re-aimed.
        async with pool.connection(Location(scheme="memory", host="pooled", path="/")):
            pass
        async with pool.connection(location) as connection:
            yield connection
        assert pool.stats().reused == 1
        await pool.close()


async def test_connection_is_reused_for_the_same_key() -> None:
    """Two turns on the same host share one opened session; the key hides the password."""
    recorder = Recorder()
    pool = ConnectionPool(opener=recorder)
    for _ in range(3):
        async with pool.connection(memory()) as connection:
            await connection.put("r.bin", from_bytes(b"r"))
    assert len(recorder.opened) == 1
    assert pool.stats().reused == 2
    key = PoolKey.of(Location.parse("ftp://u:topsecret@h/"))
    assert "topsecret" not in repr(key)
    await pool.close()


async def test_sessions_differ_by_user_secret_and_session_options() -> None:
    """Another user, password or session option gets its own session; usetmp does not."""
    recorder = Recorder()
    pool = ConnectionPool(opener=recorder)
    variants = [
        memory(),
        memory(usetmp="false", mkdirs="false"),
        Location(scheme="memory", host="pool", user="other"),
        Location(scheme="memory", host="pool", password="x"),
        memory(passive="no"),
    ]
    for location in variants:
        async with pool.connection(location):
            pass
    assert len(recorder.opened) == 4
    await pool.close()


async def test_paths_and_usetmp_follow_the_callers_location() -> None:
    """A shared session resolves paths against, and takes usetmp from, each caller's location."""
    pool = ConnectionPool()
    async with pool.connection(memory("/")) as root:
        await root.mkdir("/one")
        await root.mkdir("/two")
    async with pool.connection(memory("/one")) as one:
        await one.put("f.bin", from_bytes(b"1"))
    async with pool.connection(memory("/two", prefix="tmp-", suffix="")) as two:
        await two.put("f.bin", from_bytes(b"2"))
    async with pool.connection(memory("/")) as root:
        assert await read_all(root.get("/one/f.bin")) == b"1"
        assert await read_all(root.get("two/f.bin")) == b"2"
    assert pool.stats().opened == 2  # prefix/suffix are session options: their own session
    await pool.close()


async def test_a_login_relative_caller_never_shares_a_session_opened_at_an_absolute_base() -> None:
    """A path relative to the login directory is not put under another caller's base path."""
    recorder = Recorder()
    pool = ConnectionPool(opener=recorder)
    async with pool.connection(memory("/elsewhere")) as absolute:
        await absolute.put("a.bin", from_bytes(b"a"))
    async with pool.connection(memory(".")) as relative:
        await relative.put("inbox/b.bin", from_bytes(b"b"))
    async with pool.connection(memory("/")) as root:
        # memory has no login directory: what stays relative is under /
        assert await read_all(root.get("/inbox/b.bin")) == b"b"
        assert await read_all(root.get("/elsewhere/a.bin")) == b"a"
        with pytest.raises(NotFound):
            await root.size("/elsewhere/inbox/b.bin")
    opened = [c.location.path for c in recorder.opened if isinstance(c, MemoryConnection)]
    assert opened == ["/elsewhere", "."]
    await pool.close()


async def test_lending_is_bounded_per_key() -> None:
    """No more than per_key connections of one key are lent at once; the rest wait."""
    recorder = Recorder()
    pool = ConnectionPool(per_key=2, opener=recorder)
    busy = 0
    peak = 0

    async def user() -> None:
        nonlocal busy, peak
        async with pool.connection(memory()):
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.02)
            busy -= 1

    await asyncio.gather(*(user() for _ in range(7)))
    assert peak == 2
    assert len(recorder.opened) == 2
    assert pool.stats().idle == 2
    await pool.close()


async def test_idle_connections_are_closed_after_the_timeout() -> None:
    """A connection left idle longer than idle_timeout is closed by the reaper."""
    recorder = Recorder()
    pool = ConnectionPool(idle_timeout=0.2, opener=recorder)
    async with pool.connection(memory()):
        pass
    assert pool.stats().idle == 1
    await asyncio.sleep(0.6)
    assert pool.stats().idle == 0
    opened = recorder.opened[0]
    assert isinstance(opened, MemoryConnection)
    assert opened.closed
    await pool.close()


async def test_retriable_error_discards_and_permanent_error_keeps() -> None:
    """A retriable error drops the session; NotFound or auth errors give it back."""
    recorder = Recorder()
    pool = ConnectionPool(opener=recorder)
    with pytest.raises(NotFound):
        async with pool.connection(memory()) as connection:
            await connection.size("/no-such-file")
    assert pool.stats().idle == 1
    with pytest.raises(ConnectionLost):
        async with pool.connection(memory()):
            raise ConnectionLost("reset by peer")
    assert (pool.stats().idle, pool.stats().discarded) == (0, 1)
    with pytest.raises(asyncio.CancelledError):
        async with pool.connection(memory()):
            raise asyncio.CancelledError
    assert (pool.stats().idle, pool.stats().discarded) == (0, 2)
    await pool.close()


@pytest.fixture(scope="module")
def ftp_server(ram_dir: Callable[[str], Path]) -> Iterator[FtpServer]:
    server = FtpServer(root=ram_dir("pool-ftp"), port=free_port())
    server.start()
    yield server
    server.stop()


async def test_session_broken_by_server_restart_is_replaced(ftp_server: FtpServer) -> None:
    """After the FTP server restarts, the dead pooled session fails retriably once, then a
    fresh one is opened and works."""
    location = Location(
        scheme="ftp",
        host="127.0.0.1",
        port=ftp_server.port,
        user=ftp_server.user,
        password=ftp_server.password,
        path="/",
    )
    pool = ConnectionPool()
    async with pool.connection(location) as connection:
        await connection.put("before.bin", from_bytes(b"b"))
    ftp_server.kill()
    ftp_server.start()
    with pytest.raises(TransferError) as info:
        async with pool.connection(location) as connection:
            await connection.size("before.bin")
    assert info.value.retriable
    async with pool.connection(location) as connection:
        assert await connection.size("before.bin") == 1
    stats = pool.stats()
    assert (stats.opened, stats.discarded, stats.idle) == (2, 1, 1)
    await pool.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = Sshd(tmp_path_factory.mktemp("pool-sshd"))
    server.prepare()
    server.start()
    yield server
    server.kill()


async def _held(release: asyncio.Event, payload: bytes) -> AsyncIterator[bytes]:
    """A body whose last chunk waits for ``release``: the put stays in flight until then."""
    yield payload[:1]
    await release.wait()
    yield payload[1:]


async def test_a_multiplexed_connection_is_shared_up_to_share(sshd: Sshd) -> None:
    """Eight callers at once with ``share=4`` hold two SFTP connections, not eight; every put
    in flight on them at the same time lands whole; once given back both are idle."""
    base = sshd.data / f"pool{next(_counter)}"
    base.mkdir()
    recorder = Recorder()
    pool = ConnectionPool(per_key=8, share=4, opener=recorder)
    release, all_held = asyncio.Event(), asyncio.Event()
    holding = 0

    async def put(i: int) -> None:
        nonlocal holding
        async with pool.connection(sshd.location(str(base))) as connection:
            holding += 1
            if holding == 8:
                all_held.set()
            await connection.put(f"f{i}", _held(release, bytes([i]) * 1000))

    puts = [asyncio.ensure_future(put(i)) for i in range(8)]
    await asyncio.wait_for(all_held.wait(), 30)
    assert len(recorder.opened) == 2
    assert pool.stats().lent == 8
    release.set()
    await asyncio.gather(*puts)
    assert [(base / f"f{i}").read_bytes() for i in range(8)] == [
        bytes([i]) * 1000 for i in range(8)
    ]
    assert pool.stats().idle == 2
    async with pool.connection(sshd.location(str(base))):
        assert len(recorder.opened) == 2  # an idle shared connection is lent again
    await pool.close()
    assert all(getattr(c, "broken", False) for c in recorder.opened)


async def test_a_failure_retires_a_shared_connection_once_its_callers_leave(sshd: Sshd) -> None:
    """A caller's retriable failure retires the connection it shared: the other caller's put
    finishes on it, nobody new is lent it, and it is closed when that caller gives it back."""
    base = sshd.data / f"pool{next(_counter)}"
    base.mkdir()
    recorder = Recorder()
    pool = ConnectionPool(per_key=4, share=4, opener=recorder)
    release = asyncio.Event()
    started = asyncio.Event()

    async def survivor() -> None:
        async with pool.connection(sshd.location(str(base))) as connection:
            started.set()
            await connection.put("kept.bin", _held(release, b"k" * 5000))

    running = asyncio.ensure_future(survivor())
    await started.wait()
    with pytest.raises(ConnectionLost):
        async with pool.connection(sshd.location(str(base))):
            raise ConnectionLost("this caller's session state is unknown")
    assert len(recorder.opened) == 1
    async with pool.connection(sshd.location(str(base))) as fresh:
        await fresh.put("new.bin", from_bytes(b"n"))
    assert len(recorder.opened) == 2  # the retired one was not lent again
    assert not getattr(recorder.opened[0], "broken", True)  # still carrying the survivor
    release.set()
    await running
    assert getattr(recorder.opened[0], "broken", False)  # closed once its last caller left
    assert (base / "kept.bin").read_bytes() == b"k" * 5000
    assert pool.stats().discarded == 1
    await pool.close()


async def test_an_idle_shared_connection_is_closed_after_the_timeout(sshd: Sshd) -> None:
    """A shared connection nobody holds expires like any idle one."""
    recorder = Recorder()
    pool = ConnectionPool(share=4, idle_timeout=5.0, opener=recorder)
    async with pool.connection(sshd.location(str(sshd.data))) as connection:
        await connection.list(".")
    assert await pool.reap(now=time.monotonic() + 1) == 0
    assert await pool.reap(now=time.monotonic() + 10) == 1
    assert getattr(recorder.opened[0], "broken", False)
    assert pool.stats().idle == 0
    await pool.close()
