"""Acquisition you can trust, against Debian's OpenSSH sshd and vsftpd (which has no ``MLSD``):
a file a slow writer is still appending to is never taken partial under the default rule, a
size that changes between the listing and the retrieval fails the retrieval and is retried
with nothing registered, a same-size rewrite with a newer time is fetched again, and on
vsftpd so is a rewrite within the minute the file was fetched (``LIST`` shows minutes, ``MDTM``
seconds). Each case runs the acquisition runner on real Kafka, as a user would."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from bus.events import Event
from bus.events.acquisition import (
    Completeness,
    DiscoveryReason,
    FileDiscovered,
    ListingCompleted,
    RetrievalFailed,
    RetrievalSucceeded,
)
from bus.events.config import Association, Host, HostType
from bus.events.datafiles import DataFileRegistered, DataFileStored
from producers.acquisition.poll import ExactTimes
from protocols.location import location_for
from protocols.registry import connect
from tests.acquisition.conftest import Env
from tests.acquisition.test_runner import GROUP, destination, kinds
from tests.protocols.test_sftp import Sshd
from tests.protocols.thirdparty import account, servers, sshd, vsftpd
from tests.protocols.vsftpd import LocalAccount, Vsftpd

__all__ = ["account", "sshd", "vsftpd"]  # the servers, as fixtures
pytestmark = servers

_names = itertools.count()


Provider = Callable[..., Host]


@pytest.fixture(params=["sftp", "ftp"])
def provider(
    request: pytest.FixtureRequest, env: Env, account: LocalAccount, sshd: Sshd, vsftpd: Vsftpd
) -> Provider:
    """Makes an acquisition host of the parameter's protocol, logged in as the test user, with
    only the options given (so the defaults are the product's own)."""
    return _provider(str(request.param), env, account, sshd, vsftpd)


def _provider(kind: str, env: Env, account: LocalAccount, sshd: Sshd, vsftpd: Vsftpd) -> Provider:
    def make(directory: str, polling: int = 300, **options: str) -> Host:
        name = f"{kind}-{next(_names)}"
        if kind == "sftp":
            address, credentials = f"127.0.0.1:{sshd.port}", None
            options |= {
                "sftp.privateKeyFile": str(sshd.client_key),
                "sftp.fingerPrint": sshd.fingerprint(),
            }
        else:
            address, credentials = f"127.0.0.1:{vsftpd.port}", env.key.encrypt(account.password)
        return Host(
            id=name, nickname=name, type=HostType.ACQUISITION, protocol=kind, address=address,
            directory=directory, polling_frequency_ms=polling, login=account.name,
            credentials=credentials, options=options,
        )  # fmt: skip

    return make


async def _define(env: Env, made: Host) -> str:
    """Define ``made`` for a destination of its own; the destination's name."""
    dest = f"acq-{made.id}"
    await env.define(GROUP, destination(dest), made, Association(destination=dest, host=made.id))
    return dest


async def _stored(env: Env, dest: str) -> list[DataFileStored]:
    """The files stored for ``dest``, in order."""
    events = await env.events(env.names.topics.datafiles)
    ids = {e.data_file_id for e in kinds(events, DataFileRegistered) if e.destination == dest}
    return [e for e in kinds(events, DataFileStored) if e.data_file_id in ids]


def _succeeded(host: str, count: int = 1) -> Callable[[list[Event]], bool]:
    def check(events: list[Event]) -> bool:
        done = [e for e in kinds(events, RetrievalSucceeded) if e.host_id == host]
        return len(done) >= count

    return check


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()  # as the store records it


async def test_a_growing_file_is_never_taken_partial_by_default(
    env: Env, provider: Provider, account: LocalAccount
) -> None:
    """A file appended to every 0.7 s is not taken while it grows (each listing shows another
    size) and is taken once, whole, ``stableInterval`` (10 s by default) after it stopped."""
    folder = account.directory("grow")
    path = folder / "g.bin"
    blocks = [bytes([65 + i]) * 50_000 for i in range(8)]

    def writer() -> None:
        with path.open("ab") as handle:
            for block in blocks:
                handle.write(block)
                handle.flush()
                time.sleep(0.7)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        made = provider(f"{folder}/{{.*\\.bin}}")
        dest = await _define(env, made)
        async with env.runner():
            await env.until(env.names.acquisition, _succeeded(made.id), timeout=60)
            seen = len(kinds(await env.acquisition(made.id), ListingCompleted))
            # later polls see the whole file again and leave it alone
            await env.until(
                env.names.acquisition,
                lambda es: (
                    len([e for e in kinds(es, ListingCompleted) if e.host_id == made.id])
                    >= seen + 3
                ),
            )
    finally:
        thread.join()
    events = await env.acquisition(made.id)
    whole = b"".join(blocks)
    assert [e.size for e in kinds(events, FileDiscovered)] == [len(whole)]
    got = kinds(events, RetrievalSucceeded)
    assert [(e.size, e.completeness) for e in got] == [(len(whole), Completeness.STABLE)]
    assert not kinds(events, RetrievalFailed)
    stored = await _stored(env, dest)
    assert [(e.size, e.checksums.md5) for e in stored] == [(len(whole), _md5(whole))]
    # the writer's pauses are much shorter than the interval: it was taken only after it ended
    assert got[0].envelope.occurred_at.timestamp() >= path.stat().st_mtime + 9


async def test_a_size_changed_since_the_listing_is_retried_never_delivered(
    env: Env, provider: Provider, account: LocalAccount
) -> None:
    """With the stability rule off, a file growing every millisecond is listed at one size and
    found at another just before its retrieval: the retrieval fails (retriable, nothing
    registered) and is tried again, and the file is stored whole once it stops growing."""
    folder = account.directory("size")
    path = folder / "s.bin"
    path.write_bytes(b"")
    stop = threading.Event()

    def writer() -> None:
        with path.open("ab") as handle:
            while not stop.is_set():
                handle.write(b"x" * 10)
                handle.flush()
                time.sleep(0.001)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        made = provider(f"{folder}/{{.*\\.bin}}", **{"acquisition.stable": "no"})
        dest = await _define(env, made)
        async with env.runner():
            await env.until(
                env.names.acquisition,
                lambda es: any(isinstance(e, RetrievalFailed) and e.host_id == made.id for e in es),
            )
            stop.set()
            await asyncio.to_thread(thread.join)
            final = path.stat().st_size
            await env.until(
                env.names.acquisition,
                lambda es: any(
                    isinstance(e, RetrievalSucceeded) and e.host_id == made.id and e.size == final
                    for e in es
                ),
            )
    finally:
        stop.set()
        thread.join()
    events = await env.acquisition(made.id)
    failed = kinds(events, RetrievalFailed)
    assert failed
    assert all(e.retriable and e.error_class == "SizeMismatch" for e in failed)
    assert any(e.data_file_id is None for e in failed)  # found before anything was registered
    listed = {e.envelope.event_id: e.size for e in kinds(events, FileDiscovered)}
    got = kinds(events, RetrievalSucceeded)
    # whatever was retrieved is what its listing said, and taken as listed (nothing vouched)
    assert all(e.size == listed[e.envelope.causation_id or ""] for e in got)
    assert {e.completeness for e in got} == {Completeness.LISTED}
    stored = await _stored(env, dest)
    assert stored[-1].size == final
    assert [e.size for e in stored] == [e.size for e in got]


async def test_a_same_size_rewrite_with_a_newer_time_is_fetched_again(
    env: Env, provider: Provider, account: LocalAccount
) -> None:
    """A corrected product of the same size and a newer time is fetched again by default."""
    folder = account.directory("same")
    path = folder / "p.bin"
    path.write_bytes(b"1" * 4096)
    now = time.time()
    os.utime(path, (now - 600, now - 600))
    made = provider(f"{folder}/{{.*\\.bin}}", **{"acquisition.stableInterval": "200ms"})
    dest = await _define(env, made)
    async with env.runner():
        await env.until(env.names.acquisition, _succeeded(made.id))
        path.write_bytes(b"2" * 4096)
        os.utime(path, (now - 300, now - 300))
        await env.until(env.names.acquisition, _succeeded(made.id, 2))
    events = await env.acquisition(made.id)
    found = kinds(events, FileDiscovered)
    assert [(e.reason, e.size) for e in found] == [
        (DiscoveryReason.NEW, 4096),
        (DiscoveryReason.REWRITTEN, 4096),
    ]
    assert [e.checksums.md5 for e in await _stored(env, dest)] == [
        _md5(b"1" * 4096),
        _md5(b"2" * 4096),
    ]


async def test_vsftpd_lists_minutes_and_tells_seconds(
    env: Env, account: LocalAccount, sshd: Sshd, vsftpd: Vsftpd
) -> None:
    """vsftpd has no MLSD: its LIST times are marked rounded down, and MDTM gives the second."""
    folder = account.directory("mdtm")
    path = folder / "m.bin"
    path.write_bytes(b"m")
    stamp = int(time.time()) // 60 * 60 - 3600 + 37  # an hour ago, 37 s past a minute
    os.utime(path, (stamp, stamp))
    at = datetime.fromtimestamp(stamp, UTC)
    made = _provider("ftp", env, account, sshd, vsftpd)(str(folder))
    conn = await connect(location_for(made, account.password))
    try:
        [entry] = await conn.list(str(folder))
        assert (entry.name, entry.exact_time) == ("m.bin", False)
        assert entry.mtime == at.replace(second=0)
        assert isinstance(conn, ExactTimes)
        assert await conn.mtime(str(path)) == at
    finally:
        await conn.close()


async def test_a_rewrite_within_the_minute_of_the_fetch_is_fetched_again_on_vsftpd(
    env: Env, account: LocalAccount, sshd: Sshd, vsftpd: Vsftpd
) -> None:
    """A file fetched and rewritten (same size) within one minute lists the same minute and
    size on vsftpd; its MDTM time tells the rewrite, and it is fetched again."""
    second = datetime.now(UTC).second
    if second > 25:  # the whole case must fit in one minute of the clock
        await asyncio.sleep(60 - second + 0.2)
    folder = account.directory("minute")
    path = folder / "r.bin"
    path.write_bytes(b"a" * 1000)
    made = _provider("ftp", env, account, sshd, vsftpd)(
        f"{folder}/{{.*\\.bin}}", **{"acquisition.stableInterval": "200ms"}
    )
    dest = await _define(env, made)
    async with env.runner():
        await env.until(env.names.acquisition, _succeeded(made.id))
        await asyncio.sleep(1.1)  # MDTM tells seconds: the rewrite is in a later one
        path.write_bytes(b"b" * 1000)
        await env.until(env.names.acquisition, _succeeded(made.id, 2))
    found = kinds(await env.acquisition(made.id), FileDiscovered)
    assert [(e.reason, e.size) for e in found] == [
        (DiscoveryReason.NEW, 1000),
        (DiscoveryReason.REWRITTEN, 1000),
    ]
    first, again = (e.modified_at for e in found)
    assert first is not None
    assert again is not None
    assert first.replace(second=0) == again.replace(second=0)  # the same minute in a LIST
    assert again > first  # recorded at MDTM's precision, not the listing's
    assert [e.checksums.md5 for e in await _stored(env, dest)] == [
        _md5(b"a" * 1000),
        _md5(b"b" * 1000),
    ]


async def test_a_host_polled_rarely_waits_within_the_poll(
    env: Env, account: LocalAccount, sshd: Sshd, vsftpd: Vsftpd
) -> None:
    """When the polling period is longer than the stable interval, the first poll waits the
    interval, lists again and takes the unchanged file, instead of leaving it a whole period."""
    folder = account.directory("rare")
    (folder / "w.bin").write_bytes(b"w" * 2000)
    made = _provider("sftp", env, account, sshd, vsftpd)(
        f"{folder}/{{.*\\.bin}}", polling=600_000, **{"acquisition.stableInterval": "1s"}
    )
    await _define(env, made)
    async with env.runner():
        await env.until(env.names.acquisition, _succeeded(made.id))
    events = await env.acquisition(made.id)
    [listing] = kinds(events, ListingCompleted)
    assert (listing.files_new, listing.errors) == (1, ())
    assert listing.duration_ms >= 1000
    [got] = kinds(events, RetrievalSucceeded)
    assert (got.size, got.completeness) == (2000, Completeness.STABLE)
