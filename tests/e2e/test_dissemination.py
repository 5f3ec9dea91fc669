"""Dissemination end to end: files put through the ingest API, scheduled, moved by real mover
processes to real servers (pyftpdlib FTP, OpenSSH sshd, local folders), outcomes read back from
the transfers topic and the bytes read back from the servers' directories.

The rules pinned (issue 5, "Tests"): host failover FTP -> SFTP when the primary dies mid-run
with every file delivered once and no partial file at a final name, "next and retry" going
back to the primary once it is up; a mover SIGKILLed mid-transfer whose order is finished by
another mover; compression and the Host Directory template through the whole chain.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bus.events import envelope
from bus.events.movers import TransferAbortRequested
from bus.events.requests import HoldRequested, StandbyReleaseRequested
from bus.events.transfers import TransferHeld, TransferStarted, TransferSucceeded
from bus.publisher import Publisher
from tests.conftest import free_port
from tests.e2e.conftest import Stack, Tail
from tests.protocols.ftpserver import FtpServer
from tests.protocols.test_sftp import LOGIN, Sshd, sshd

__all__ = ["sshd"]

pytestmark = pytest.mark.kafka
RESET_S = 10  # the "next and stay" destination's reset frequency


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """A pyftpdlib server process (killable, restartable on the same port and folder)."""
    server = FtpServer(tmp_path_factory.mktemp("ftp-root"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as c:
        yield c


def sftp_host(sshd: Sshd, ident: str, base: Path, directory: str = "", **options: str) -> str:
    """A YAML host entry for the sshd server, key authentication, host key pinned."""
    extra = "".join(f'      {k}: "{v}"\n' for k, v in options.items())
    return (
        f"  - id: {ident}\n    nickname: sftp {ident}\n    type: dissemination\n"
        f"    protocol: sftp\n    address: 127.0.0.1:{sshd.port}{base}\n    login: {LOGIN}\n"
        f'    directory: "{directory}"\n    max_connections: 4\n    options:\n'
        f'      sftp.privateKeyFile: "{sshd.client_key}"\n'
        f'      sftp.fingerPrint: "{sshd.fingerprint()}"\n{extra}'
    )


def final_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, temporary names (``.x.tmp``) left out."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def hidden_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if p.is_file()]


@pytest.mark.slow
async def test_ftp_primary_fails_over_to_sftp_and_comes_back(
    stack: Stack, ftp: FtpServer, sshd: Sshd, client: httpx.AsyncClient
) -> None:
    """FTP primary (priority 0) takes the files until it is killed mid-run; the rest fail over
    to the SFTP backup; every file is at its final name exactly once, whole, across both
    servers; once FTP is back, "next and retry" sends the next files to the primary again."""
    dest, ftp_id, sftp_id = f"fo-{stack.tag}", f"fo-ftp-{stack.tag}", f"fo-sftp-{stack.tag}"
    backup = sshd.data / f"fo-{stack.tag}"
    backup.mkdir()
    await stack.apply(
        f"hosts:\n"
        f"  - id: {ftp_id}\n    nickname: ftp primary\n    type: dissemination\n"
        f"    protocol: ftp\n    address: 127.0.0.1:{ftp.port}\n    login: {ftp.user}\n"
        f"    password: {ftp.password}\n    max_connections: 2\n    retry_count: 1\n"
        f"    retry_frequency: 200ms\n    options:\n"
        f'      upload.rateThrottling: "64k"\n'
        f"{sftp_host(sshd, sftp_id, backup)}"
        f"destinations:\n  - name: {dest}\n    type: dissemination\n"
        f"    transfer_group: {stack.group}\n    max_connections: 2\n    retry_frequency: 500ms\n"
        f"    on_host_failure: next_and_retry\n"
        # with the primary down, "next and retry" costs each file two failed FTP starts
        # before the backup takes it: room for those above OpenECPDS's default of 2
        f"    max_start: 10\n    start_frequency: 1s\n"
        f"associations:\n"
        f"  - {{destination: {dest}, host: {ftp_id}, priority: 0}}\n"
        f"  - {{destination: {dest}, host: {sftp_id}, priority: 1}}\n"
    )
    assert stack.tail is not None
    sent = {f"f{i:02}.bin": os.urandom(20 * 1024) for i in range(16)}
    ids = [await stack.put(client, dest, name, data) for name, data in sent.items()]

    def on_ftp(_: object) -> bool:
        return sum(e.host_id == ftp_id for e in stack.tail.of(TransferSucceeded, dest)) >= 4  # type: ignore[union-attr]

    await stack.tail.until(on_ftp, 60)
    await asyncio.to_thread(ftp.kill)  # mid-run: two transfers are on the wire
    await stack.tail.all_done(dest, len(ids), timeout=45)

    succeeded = stack.tail.of(TransferSucceeded, dest)
    by_host = {e.host_id for e in succeeded}
    assert by_host == {ftp_id, sftp_id}
    on_primary, on_backup = final_files(ftp.root), final_files(backup)
    assert not set(on_primary) & set(on_backup), "a file delivered to both servers"
    assert {**on_primary, **on_backup} == sent  # each once, whole, at its final name
    first_success: dict[str, TransferSucceeded] = {}
    for e in succeeded:
        first_success.setdefault(e.transfer_id, e)
    assert set(first_success) == set(ids)

    # the primary comes back: "next and retry" returns to it after the backup's success
    await asyncio.to_thread(ftp.start)
    later = {f"g{i:02}.bin": os.urandom(10 * 1024) for i in range(4)}
    later_ids = [await stack.put(client, dest, name, data) for name, data in later.items()]
    await stack.tail.all_done(dest, len(ids) + len(later_ids), timeout=60)
    hosts = {e.transfer_id: e.host_id for e in stack.tail.of(TransferSucceeded, dest)}
    assert [hosts[t] for t in later_ids] == [ftp_id] * len(later_ids)
    assert {n: b for n, b in final_files(ftp.root).items() if n.startswith("g")} == later


@pytest.mark.slow
async def test_next_and_stay_keeps_the_backup_until_the_reset_frequency(
    stack: Stack, sshd: Sshd, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """With "next and stay", files fail over from a dead FTP primary to the SFTP backup and
    keep going to the backup after the primary is back, until the destination's reset
    frequency has passed since it left the primary; then the next files go to the primary."""
    dest, ftp_id, sftp_id = f"st-{stack.tag}", f"st-ftp-{stack.tag}", f"st-sftp-{stack.tag}"
    primary = FtpServer(tmp_path / "ftp", free_port())
    primary.root.mkdir()
    backup = sshd.data / f"st-{stack.tag}"
    backup.mkdir()
    await stack.apply(
        f"hosts:\n"
        f"  - id: {ftp_id}\n    nickname: ftp primary\n    type: dissemination\n"
        f"    protocol: ftp\n    address: 127.0.0.1:{primary.port}\n    login: {primary.user}\n"
        f"    password: {primary.password}\n    retry_count: 1\n    retry_frequency: 200ms\n"
        f"{sftp_host(sshd, sftp_id, backup)}"
        f"destinations:\n  - name: {dest}\n    type: dissemination\n"
        f"    transfer_group: {stack.group}\n    retry_frequency: 500ms\n"
        f"    on_host_failure: next_and_stay\n    reset_frequency: {RESET_S}s\n"
        f"    max_start: 10\n    start_frequency: 1s\n"
        f"associations:\n"
        f"  - {{destination: {dest}, host: {ftp_id}, priority: 0}}\n"
        f"  - {{destination: {dest}, host: {sftp_id}, priority: 1}}\n"
    )
    assert stack.tail is not None
    batches = [{f"{b}{i}.bin": os.urandom(4096) for i in range(3)} for b in "abc"]
    count = 0

    async def deliver(files: dict[str, bytes]) -> dict[str, str]:
        nonlocal count
        ids = {await stack.put(client, dest, name, data): name for name, data in files.items()}
        count += len(ids)
        await stack.tail.all_done(dest, count, timeout=60)  # type: ignore[union-attr]
        first: dict[str, str] = {}
        for e in stack.tail.of(TransferSucceeded, dest):  # type: ignore[union-attr]
            first.setdefault(e.transfer_id, e.host_id)
        return {name: first[tid] for tid, name in ids.items()}

    left_primary = time.monotonic()
    assert set((await deliver(batches[0])).values()) == {sftp_id}  # the primary is down
    try:
        await asyncio.to_thread(primary.start)
        assert set((await deliver(batches[1])).values()) == {sftp_id}  # stays on the backup
        assert time.monotonic() - left_primary < RESET_S, "too slow to test the stay"
        await asyncio.sleep(max(0.0, left_primary + RESET_S + 1 - time.monotonic()))
        assert set((await deliver(batches[2])).values()) == {ftp_id}  # reset to the primary
        assert final_files(primary.root) == batches[2]
        assert final_files(backup) == {**batches[0], **batches[1]}
    finally:
        await asyncio.to_thread(primary.stop)


@pytest.mark.slow
async def test_mover_killed_mid_transfer_is_finished_by_another_mover(
    stack: Stack, sshd: Sshd, client: httpx.AsyncClient
) -> None:
    """A mover SIGKILLed while a throttled transfer is half written leaves no outcome; a second
    mover of the group takes the order over and ends it DONE: one whole file at the final
    name, the dead mover's temporary file never renamed over it."""
    dest, host_id = f"kill-{stack.tag}", f"kill-sftp-{stack.tag}"
    folder = sshd.data / f"kill-{stack.tag}"
    folder.mkdir()
    await stack.apply(
        f"hosts:\n{sftp_host(sshd, host_id, folder, **{'upload.rateThrottling': '256k'})}"
        f"destinations:\n  - name: {dest}\n    type: dissemination\n"
        f"    transfer_group: {stack.group}\n"
        f"associations:\n  - {{destination: {dest}, host: {host_id}, priority: 0}}\n"
    )
    assert stack.tail is not None
    data = os.urandom(1536 * 1024)  # ~6 s at 256 KiB/s
    tid = await stack.put(client, dest, "large.bin", data)
    victim = next(n for n in ("mover", "mover2") if n in stack.processes)
    await stack.tail.until(
        lambda _: any(e.transfer_id == tid for e in stack.tail.of(TransferStarted, dest)),  # type: ignore[union-attr]
        60,
    )
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 128 * 1024 for p in folder.glob(".*")):
        assert time.monotonic() < deadline, "no temporary file growing on the server"
        await asyncio.sleep(0.1)
    await asyncio.to_thread(stack.kill, victim)
    assert not (folder / "large.bin").exists()
    rescuer = "mover3" if victim == "mover2" else "mover2"
    stack.start_mover(rescuer)
    await stack.tail.all_done(dest, 1, timeout=90)
    done = stack.tail.of(TransferSucceeded, dest)
    assert {e.mover_id for e in done} == {stack.mover_id(rescuer)}
    assert all(e.bytes_sent == len(data) for e in done)
    assert (folder / "large.bin").read_bytes() == data
    assert final_files(folder) == {"large.bin": data}
    started = [e for e in stack.tail.of(TransferStarted, dest) if e.transfer_id == tid]
    assert {e.mover_id for e in started} >= {stack.mover_id(victim), stack.mover_id(rescuer)}


def _dates() -> set[str]:
    """Today's yyyyMMdd and yesterday's (a run may cross midnight UTC)."""
    now = datetime.now(UTC)
    return {d.strftime("%Y%m%d") for d in (now, now - timedelta(minutes=5))}


async def test_gzip_and_directory_template_to_file_and_sftp(
    stack: Stack, sshd: Sshd, client: httpx.AsyncClient
) -> None:
    """A gzip destination gets the compressed bytes under ``<name>.gz`` at the path its Host
    Directory template renders (``daily/$date/`` in a folder, ``$date/`` over SFTP), and the
    succeeded event names that path and the compression."""
    tag = stack.tag
    outbox = stack.root / f"gz-out-{tag}"
    remote = sshd.data / f"gz-{tag}"
    remote.mkdir()
    await stack.apply(
        f"hosts:\n{file_host(f'gz-file-{tag}', outbox, 'daily/$date/')}"
        f"{sftp_host(sshd, f'gz-sftp-{tag}', remote, '$date/')}"
        f"destinations:\n{gzip_destination(f'gz-file-{tag}', stack.group)}"
        f"{gzip_destination(f'gz-sftp-{tag}', stack.group)}"
        f"associations:\n"
        f"  - {{destination: gz-file-{tag}, host: gz-file-{tag}, priority: 0}}\n"
        f"  - {{destination: gz-sftp-{tag}, host: gz-sftp-{tag}, priority: 0}}\n"
    )
    data = compressible()
    await stack.put(client, f"gz-file-{tag}", "an.grib", data)
    await stack.put(client, f"gz-sftp-{tag}", "an.grib", data)
    await check_gzipped(stack, f"gz-file-{tag}", outbox, "daily/", data)
    await check_gzipped(stack, f"gz-sftp-{tag}", remote, "", data)


async def test_metadata_directory_template_through_the_chain(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """The metadata given to ``POST /api/v1/datafiles`` reaches the Host Directory template:
    ``by-stream/$metadata[stream]/$date/`` puts a ``stream=oper`` file under ``oper/``."""
    tag = stack.tag
    outbox = stack.root / f"meta-out-{tag}"
    await stack.apply(
        f"hosts:\n{file_host(f'meta-{tag}', outbox, 'by-stream/$metadata[stream]/$date/')}"
        f"destinations:\n{gzip_destination(f'meta-{tag}', stack.group)}"
        f"associations:\n  - {{destination: meta-{tag}, host: meta-{tag}, priority: 0}}\n"
    )
    data = compressible()
    await stack.put(client, f"meta-{tag}", "an.grib", data, metadata="stream=oper")
    await check_gzipped(stack, f"meta-{tag}", outbox, "by-stream/oper/", data)


def file_host(ident: str, folder: Path, directory: str) -> str:
    """A YAML host entry delivering into a local folder."""
    return (
        f"  - id: {ident}\n    nickname: folder {ident}\n    type: dissemination\n"
        f'    protocol: file\n    address: localhost{folder}\n    directory: "{directory}"\n'
    )


def gzip_destination(name: str, group: str) -> str:
    return (
        f"  - name: {name}\n    type: dissemination\n    transfer_group: {group}\n"
        f"    compression: gzip\n"
    )


def compressible() -> bytes:
    return b"GRIB" + os.urandom(4096) + b"7777" * 20000


async def check_gzipped(stack: Stack, dest: str, folder: Path, prefix: str, data: bytes) -> None:
    """One file under ``folder`` at ``<prefix><yyyyMMdd>/an.grib.gz`` holding ``data``
    gzipped, no temporary leftover, and the succeeded event saying so."""
    assert stack.tail is not None
    await stack.tail.all_done(dest, 1, timeout=60)
    (event,) = stack.tail.of(TransferSucceeded, dest)
    files = final_files(folder)
    assert len(files) == 1, (files, event.remote_path)
    ((path, stored),) = files.items()
    day = path.removeprefix(prefix).split("/")[0]
    assert day in _dates(), event.remote_path
    assert path == f"{prefix}{day}/an.grib.gz", event.remote_path
    assert len(stored) < len(data)
    assert gzip.decompress(stored) == data
    assert not hidden_files(folder)
    assert event.compression.value == "GZIP"
    assert event.remote_path.endswith(f"{day}/an.grib.gz")


async def test_concurrent_puts_below_max_pending_are_all_accepted(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """30 files put 16 at a time to a destination with max pending 40 are all accepted (201):
    the pending count is the number of unfinished transfers, whatever the concurrency."""
    tag = stack.tag
    outbox = stack.root / f"pending-{tag}"
    await stack.apply(
        f"hosts:\n{file_host(f'pending-{tag}', outbox, '')}"
        f"destinations:\n  - name: pending-{tag}\n    type: dissemination\n"
        f"    transfer_group: {stack.group}\n    max_pending: 40\n"
        f"associations:\n  - {{destination: pending-{tag}, host: pending-{tag}, priority: 0}}\n"
    )
    names = iter(f"q{i:02}.bin" for i in range(30))
    statuses: list[int] = []

    async def worker() -> None:
        for name in names:
            response = await client.post(
                f"{stack.url}/api/v1/datafiles",
                params={"destination": f"pending-{tag}", "target": name},
                content=os.urandom(2048),
                headers={"Authorization": f"Bearer {stack.token}"},
            )
            statuses.append(response.status_code)

    await asyncio.gather(*(worker() for _ in range(16)))
    assert statuses == [201] * 30


async def test_an_immediate_hold_stops_a_running_delivery_at_the_mover(
    stack: Stack, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """An immediate hold of a transfer that a mover is delivering: the scheduler interrupts it
    and asks the movers to abort (``TransferAbortRequested``), the mover abandons the delivery
    and the file never arrives (neither at its final nor at its temporary name), the transfer
    is HOLD; released, it is delivered whole."""
    dest, host_id = f"ab-{stack.tag}", f"ab-file-{stack.tag}"
    outbox = tmp_path / "outbox"
    await stack.apply(
        f"hosts:\n  - id: {host_id}\n    nickname: slow outbox\n    type: dissemination\n"
        f"    protocol: file\n    address: localhost{outbox}\n    options:\n"
        f'      upload.rateThrottling: "256k"\n'
        f"destinations:\n  - name: {dest}\n    type: dissemination\n"
        f"    transfer_group: {stack.group}\n"
        f"associations:\n  - {{destination: {dest}, host: {host_id}, priority: 0}}\n"
    )
    assert stack.tail is not None
    tail = stack.tail
    data = os.urandom(3 * 1024 * 1024)  # ~12 s at 256 KiB/s
    tid = await stack.put(client, dest, "slow.bin", data)
    await tail.until(lambda _: any(e.transfer_id == tid for e in tail.of(TransferStarted, dest)))
    hold = HoldRequested(
        envelope=envelope("e2e-test", dest),
        destination=dest,
        transfer_id=tid,
        immediate=True,
        requested_by="e2e",
    )
    async with Publisher(stack.kafka) as publisher:
        await publisher.publish(stack.topic("transfers"), dest, hold)
    await tail.until(lambda _: any(e.transfer_id == tid for e in tail.of(TransferHeld, dest)))
    aborts = Tail(stack.kafka, [stack.topic("movers")])
    await aborts.start()
    try:
        await aborts.until(lambda got: any(isinstance(e, TransferAbortRequested) for e in got))
    finally:
        await aborts.stop()
    await asyncio.sleep(2.0)  # the mover's cancelled delivery has removed its temporary file
    assert not outbox.exists() or not any(p.is_file() for p in outbox.rglob("*"))
    assert not [e for e in tail.of(TransferSucceeded, dest) if e.transfer_id == tid]

    release = StandbyReleaseRequested(
        envelope=envelope("e2e-test", dest), destination=dest, transfer_id=tid, requested_by="e2e"
    )
    async with Publisher(stack.kafka) as publisher:
        await publisher.publish(stack.topic("transfers"), dest, release)
    await tail.all_done(dest, 1, timeout=60)
    assert final_files(outbox) == {"slow.bin": data}
