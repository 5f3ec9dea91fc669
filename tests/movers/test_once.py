"""Effectively once, and no litter, against real servers (a local folder, pyftpdlib FTP,
also hiding dot files from listings as vsftpd does, and OpenSSH's sftp): an attempt whose
predecessor's outcome is unknown removes the temporary files earlier attempts left, takes a
file an earlier attempt delivered for delivered (FOUND_SIZE) instead of sending it again, and
still sends over an older file of the same name; a mover SIGKILLed mid-write or after its
rename, its order taken by another mover, ends as one file at the final name, nothing beside
it and one TransferSucceeded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus.config.secrets import encrypt
from bus.events.config import Host
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    TransferFailed,
    TransferStarted,
    TransferSucceeded,
    Verification,
)
from consumers.movers import core
from consumers.movers.delivery import Delivered, Meter, deliver
from protocols.location import location_for
from protocols.pool import ConnectionPool
from store.local import LocalStore
from tests.movers.support import (
    Outcomes,
    Topics,
    host,
    order,
    publish_orders,
    running_mover,
    spawn_mover,
    stored,
)
from tests.protocols.ftpserver import FtpServer
from tests.protocols.ftpserver import free_port as ftp_port
from tests.protocols.test_sftp import LOGIN, Sshd

MIB = 1024 * 1024


@dataclass(frozen=True)
class Remote:
    """A destination host and the local folder its server writes into."""

    host: Host
    password: str | None
    folder: Path


@pytest.fixture(scope="module")
def ftp_server(ram_dir: Callable[[str], Path]) -> Iterator[FtpServer]:
    server = FtpServer(root=ram_dir("once-ftp"), port=ftp_port(), password="ftp-pass")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hiding_ftp_server(ram_dir: Callable[[str], Path]) -> Iterator[FtpServer]:
    """An FTP server whose listings leave dot files out, as vsftpd does by default."""
    server = FtpServer(
        root=ram_dir("once-ftp-hiding"), port=ftp_port(), password="ftp-pass", hide_dot_files=True
    )
    server.start()
    yield server
    server.stop()


def file_remote(tmp_path: Path) -> Remote:
    return Remote(host("file", "", directory=f"{tmp_path}/"), None, tmp_path)


def ftp_remote(server: FtpServer, key_file: Path, name: str, **options: str) -> Remote:
    target = host(
        "ftp", f"127.0.0.1:{server.port}", login=server.user, directory=f"/{name}/",
        credentials=encrypt(server.password, key_file), options=options,
    )  # fmt: skip
    return Remote(target, server.password, server.root / name)


def sftp_remote(server: Sshd, name: str, **options: str) -> Remote:
    target = host(
        "sftp", f"127.0.0.1:{server.port}", login=LOGIN, directory=f"{server.data}/{name}/",
        options={
            "sftp.privateKeyFile": str(server.client_key),
            "sftp.fingerPrint": server.fingerprint(),
            **options,
        },
    )  # fmt: skip
    return Remote(target, None, server.data / name)


@pytest.fixture(params=["file", "ftp", "ftp-hiding", "sftp"])
def remote(request: pytest.FixtureRequest, tmp_path: Path, key_file: Path) -> Remote:
    """Each destination kind, in a folder of its own."""
    name = f"once-{tmp_path.name}"
    if request.param.startswith("ftp"):
        fixture = "hiding_ftp_server" if request.param == "ftp-hiding" else "ftp_server"
        return ftp_remote(request.getfixturevalue(fixture), key_file, name)
    if request.param == "sftp":
        return sftp_remote(request.getfixturevalue("sshd"), name)
    return file_remote(tmp_path)


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    connections = ConnectionPool()
    yield connections
    await connections.close()


async def attempt(
    sent: TransferOrdered, remote: Remote, store: LocalStore, pool: ConnectionPool
) -> Delivered:
    """Deliver ``sent`` the way a mover's attempt does (its derived temporary name)."""
    location = location_for(sent.host, remote.password)
    path = core.target_path(sent, "mover-t", datetime.now(UTC))
    return await deliver(
        sent, location, path, store, pool, Meter(None, lambda _: None),
        temporary=core.temporary_path(sent, location, path),
        check_since=sent.check_since,
    )  # fmt: skip


def leftover(sent: TransferOrdered, remote: Remote, data: bytes) -> Path:
    """A partial file at the temporary name ``sent``'s attempt derives (as a crash leaves it)."""
    location = location_for(sent.host, remote.password)
    temporary = core.temporary_path(sent, location, core.target_path(sent, "m", datetime.now(UTC)))
    assert temporary is not None
    path = remote.folder / "data" / os.path.basename(temporary)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def reissued(first: TransferOrdered) -> TransferOrdered:
    """The scheduler's next attempt of ``first``, whose outcome it never learnt."""
    return replace(first, attempt=first.attempt + 1, check_since=first.envelope.occurred_at)


async def test_the_next_attempt_removes_the_previous_attempts_temporary_file(
    remote: Remote, store: LocalStore, pool: ConnectionPool
) -> None:
    """Attempt 1 left half a file at its temporary name: attempt 2 removes it and sends the
    whole file; only the final name remains."""
    obj = await stored(store, size=200_000)
    first = order(obj, remote.host)
    partial = leftover(first, remote, obj.data[:70_000])
    done = await attempt(reissued(first), remote, store, pool)
    assert done.verification is Verification.SIZE
    assert done.bytes_sent == len(obj.data)
    assert not partial.exists()
    assert [p.name for p in (remote.folder / "data").iterdir()] == ["product.grib"]
    assert (remote.folder / "data" / "product.grib").read_bytes() == obj.data


async def test_a_file_an_earlier_attempt_delivered_is_found_not_sent_again(
    remote: Remote, store: LocalStore, pool: ConnectionPool
) -> None:
    """Attempt 1 renamed its file but its outcome was lost: attempt 2 finds it at the final
    name with the expected size, sends nothing and says FOUND_SIZE; a temporary file of an
    earlier redelivery is removed on the way."""
    obj = await stored(store, size=200_000)
    first = order(obj, remote.host)
    partial = leftover(first, remote, b"x" * 10)
    final = remote.folder / "data" / "product.grib"
    final.write_bytes(obj.data)
    done = await attempt(reissued(first), remote, store, pool)
    assert (done.verification, done.bytes_sent) == (Verification.FOUND_SIZE, 0)
    assert not partial.exists()
    assert [p.name for p in final.parent.iterdir()] == ["product.grib"]


async def test_an_older_file_of_the_same_name_and_size_is_sent_over(
    remote: Remote, store: LocalStore, pool: ConnectionPool
) -> None:
    """A file of the same name and size written long before the first attempt (yesterday's
    product) is not this transfer's delivery: it is overwritten."""
    obj = await stored(store, size=200_000)
    final = remote.folder / "data" / "product.grib"
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_bytes(b"y" * len(obj.data))
    yesterday = time.time() - 86_400
    os.utime(final, (yesterday, yesterday))
    done = await attempt(reissued(order(obj, remote.host)), remote, store, pool)
    assert done.verification is Verification.SIZE
    assert final.read_bytes() == obj.data


# -- a mover SIGKILLed, its order taken by another mover (real Kafka) ----------------------------


async def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def _outcome(transfers: Outcomes, sent: TransferOrdered) -> TransferSucceeded:
    done = await transfers.wait(sent.transfer_id, (TransferSucceeded, TransferFailed), 90)
    assert isinstance(done, TransferSucceeded), done
    await asyncio.sleep(1.0)  # a second outcome would show by now
    assert len(transfers.of(sent.transfer_id, TransferSucceeded)) == 1
    return done


async def _wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def fresh(kafka: str) -> tuple[Topics, Outcomes]:
    topics = Topics.unique()
    await topics.create(kafka, order_partitions=1)
    transfers = Outcomes(kafka, topics.transfers)
    await transfers.start()
    return topics, transfers


@pytest.mark.kafka
async def test_a_mover_killed_mid_write_leaves_one_file_and_no_temporary(
    kafka: str, store: LocalStore, key_file: Path, ftp_server: FtpServer, tmp_path: Path
) -> None:
    """A mover SIGKILLed while writing over FTP leaves half a file at its temporary name; the
    mover that takes the order after it removes that file and delivers: one file at the final
    name, nothing beside it, one TransferSucceeded."""
    topics, transfers = await fresh(kafka)
    remote = ftp_remote(ftp_server, key_file, f"kill-{tmp_path.name}", **{
        "upload.rateThrottling": "4MB"
    })  # fmt: skip
    obj = await stored(store, size=12 * MIB)
    sent = order(obj, remote.host)
    victim = spawn_mover(topics, "victim", store.root, key_file)
    try:
        await publish_orders(kafka, topics.orders, sent)
        started = await transfers.wait(sent.transfer_id, (TransferStarted,), 60)
        assert isinstance(started, TransferStarted)
        assert started.temporary_path is not None
        partial = remote.folder / started.temporary_path.removeprefix(f"/{remote.folder.name}/")
        await _wait_for(lambda: partial.exists() and partial.stat().st_size > MIB)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert partial.exists()
        async with running_mover(topics.config(kafka, key_file), store.root):
            done = await _outcome(transfers, sent)
        assert done.verification is Verification.SIZE
        final = remote.folder / "data" / "product.grib"
        assert final.read_bytes() == obj.data
        assert [p.name for p in final.parent.iterdir()] == ["product.grib"]
    finally:
        await _stop([victim])
        await transfers.stop()


@pytest.mark.kafka
async def test_a_mover_killed_after_its_delivery_does_not_deliver_twice(
    kafka: str, store: LocalStore, key_file: Path, sshd: Sshd, tmp_path: Path
) -> None:
    """A mover delivers over SFTP but its outcome is never acknowledged (its transfers topic
    is gone, as with a broker lost) and it is SIGKILLed: the next mover finds the file and
    records it delivered (FOUND_SIZE, nothing sent), once."""
    topics, transfers = await fresh(kafka)
    remote = sftp_remote(sshd, f"found-{tmp_path.name}")
    obj = await stored(store, size=3 * MIB)
    sent = order(obj, remote.host)
    final = remote.folder / "data" / "product.grib"
    victim = spawn_mover(topics, "victim", store.root, key_file, transfers_topic="t.gone")
    try:
        await publish_orders(kafka, topics.orders, sent)
        await _wait_for(lambda: final.exists())
        await asyncio.sleep(0.5)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        first_write = final.stat().st_mtime_ns
        async with running_mover(topics.config(kafka, key_file), store.root):
            done = await _outcome(transfers, sent)
        assert (done.verification, done.bytes_sent) == (Verification.FOUND_SIZE, 0)
        assert final.stat().st_mtime_ns == first_write  # not written again
        assert final.read_bytes() == obj.data
        assert [p.name for p in final.parent.iterdir()] == ["product.grib"]
    finally:
        await _stop([victim])
        await transfers.stop()
