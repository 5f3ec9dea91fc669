"""The backup runner against the real Kafka, a real local store and a real SFTP backup host
(an asyncssh server with password auth, chrooted to a temp dir, as in tests/protocols)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest

from bus.config.secrets import encrypt
from bus.config.source import FixedConfig
from bus.config.view import ConfigView
from bus.events import Event
from bus.events.config import Host, HostType
from bus.events.datafiles import DataFileBackedUp, DataFileBackupFailed
from bus.events.deadletter import DeadLetterReason
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.stage import Stage
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.backup.runner import Backup, backup_stage
from consumers.janitor.feed import EventFeed
from protocols.base import from_bytes
from store.local import LocalStore
from store.objects import ObjectId, ObjectSpec
from tests.bus.deadletters import dead_letters, publish_poison
from tests.config import factories as f
from tests.janitor.factories import queued

pytestmark = pytest.mark.kafka

USER, PASSWORD = "archiver", "backup-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USER and password == PASSWORD


class SftpBackupHost:
    """An asyncssh SFTP server on 127.0.0.1, chrooted to ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.acceptor: asyncssh.SSHAcceptor | None = None

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        chroot = os.fsencode(self.root)
        self.acceptor = await asyncssh.listen(
            "127.0.0.1",
            self.port,
            server_host_keys=[self.key],
            server_factory=_Server,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=chroot),
            allow_scp=False,
        )

    async def stop(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
            await self.acceptor.wait_closed()


@pytest.fixture(scope="module")
async def backup_host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SftpBackupHost]:
    server = SftpBackupHost(tmp_path_factory.mktemp("backup-host") / "root")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def topics(kafka: str, unique: str) -> tuple[str, str, str]:
    """The test's datafiles, transfers and dead-letter topics."""
    datafiles, transfers = f"test.{unique}.datafiles", f"test.{unique}.transfers"
    deadletter = f"test.{unique}.deadletter"
    await apply_topics(
        kafka,
        [
            TopicSpec(datafiles, "data file id", 2, "delete", DAY_MS, ("ecpds.datafiles",), "t"),
            TopicSpec(transfers, "destination", 2, "delete", DAY_MS, ("ecpds.transfers",), "t"),
            TopicSpec(deadletter, "origin", 1, "delete", DAY_MS, ("ecpds.deadletter",), "t"),
        ],
    )
    return datafiles, transfers, deadletter


@pytest.fixture
async def publisher(kafka: str) -> AsyncIterator[Publisher]:
    async with Publisher(kafka) as pub:
        yield pub


def config(host: Host) -> FixedConfig:
    return FixedConfig(
        ConfigView(
            destinations={
                "site-a": f.destination("site-a", backup=True),
                "site-b": f.destination("site-b"),
            },
            transfer_groups={"default": f.group("default", backup=True, backup_host=host.id)},
            hosts={host.id: host},
        )
    )


def sftp_host(port: int, key_file: Path, fingerprint: str | None = None) -> Host:
    options = {"sftp.connectTimeOut": "2s"}
    if fingerprint:
        options["sftp.fingerPrint"] = fingerprint
    return f.host(
        "bk-1",
        type=HostType.BACKUP,
        protocol="sftp",
        address=f"127.0.0.1:{port}",
        login=USER,
        credentials=encrypt(PASSWORD, key_file),
        directory="/archive/$destination[name]\n(ignored) /elsewhere",
        options=options,
    )


async def read_events(kafka: str, topic: str) -> list[Event]:
    feed = EventFeed(kafka, [topic])
    await feed.start()
    events: list[Event] = []
    try:
        while not feed.caught_up:
            events += await feed.poll(0.5)
    finally:
        await feed.stop()
    return events


async def run_until(
    runner: Stage[Backup], check: Callable[[], Awaitable[bool]], timeout: float = 40
) -> None:
    task = asyncio.create_task(runner.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await check():
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
            await asyncio.sleep(0.3)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)


async def stored_file(store: LocalStore, size: int) -> tuple[str, bytes]:
    dfid = uuid.uuid4().hex
    data = os.urandom(size)
    await store.put(from_bytes(data, 4096), ObjectSpec(name=dfid, id=ObjectId(dfid)))
    return dfid, data


async def test_backup_copies_to_a_real_sftp_host_and_records_it(
    kafka: str,
    topics: tuple[str, str, str],
    publisher: Publisher,
    backup_host: SftpBackupHost,
    tmp_path: Path,
    unique: str,
) -> None:
    """Files of a backup destination land on the SFTP host with their bytes; others do not."""
    key_file = tmp_path / "ecpds.key"
    host = sftp_host(backup_host.port, key_file, backup_host.key.get_fingerprint("sha256"))
    store = LocalStore(tmp_path / "store", durable=False)
    expiry = datetime.now(UTC) + timedelta(hours=1)
    files = [await stored_file(store, 50_000 + i) for i in range(5)]
    for dfid, _ in files:
        await publisher.publish(topics[1], "site-a", queued(dfid, "site-a", expiry=expiry))
    skipped, _ = await stored_file(store, 10)
    await publisher.publish(topics[1], "site-b", queued(skipped, "site-b", expiry=expiry))
    runner = backup_stage(
        kafka,
        store,
        config(host),
        key_file=key_file,
        transfers_topic=topics[1],
        datafiles_topic=topics[0],
        deadletter_topic=topics[2],
        group_id=f"test-backup-{unique}",
        max_concurrent=2,
    )

    async def all_backed_up() -> bool:
        events = await read_events(kafka, topics[0])
        return sum(isinstance(e, DataFileBackedUp) for e in events) >= len(files)

    await run_until(runner, all_backed_up)
    for dfid, data in files:
        assert (backup_host.root / "archive" / "site-a" / f"{dfid}.dat").read_bytes() == data
    assert not (backup_host.root / "archive" / "site-b").exists()
    events = await read_events(kafka, topics[0])
    backed = {e.data_file_id: e for e in events if isinstance(e, DataFileBackedUp)}
    assert set(backed) == {dfid for dfid, _ in files}
    first_id, first_data = files[0]
    event = backed[first_id]
    assert (event.host, event.remote_path, event.size) == (
        "bk-1",
        f"/archive/site-a/{first_id}.dat",
        len(first_data),
    )
    assert 1 <= runner.handler.peak_active <= 2
    leftovers = [p.name for p in (backup_host.root / "archive" / "site-a").iterdir()]
    assert sorted(leftovers) == sorted(f"{dfid}.dat" for dfid, _ in files)  # no temp files


async def test_unreachable_backup_host_is_retried_then_recorded_as_failed(
    kafka: str, topics: tuple[str, str, str], publisher: Publisher, tmp_path: Path, unique: str
) -> None:
    """Nothing listening on the backup host: retried up to max attempts, then BackupFailed."""
    key_file = tmp_path / "ecpds.key"
    host = sftp_host(free_port(), key_file)
    store = LocalStore(tmp_path / "store", durable=False)
    dfid, _ = await stored_file(store, 100)
    expiry = datetime.now(UTC) + timedelta(hours=1)
    await publisher.publish(topics[1], "site-a", queued(dfid, "site-a", expiry=expiry))
    runner = backup_stage(
        kafka,
        store,
        config(host),
        key_file=key_file,
        transfers_topic=topics[1],
        datafiles_topic=topics[0],
        deadletter_topic=topics[2],
        group_id=f"test-backup-{unique}",
        retry=RetryPolicy(max_attempts=3, initial=0.1, maximum=0.2),
    )

    async def failed() -> bool:
        events = await read_events(kafka, topics[0])
        return any(isinstance(e, DataFileBackupFailed) for e in events)

    await run_until(runner, failed)
    events = await read_events(kafka, topics[0])
    (failure,) = [e for e in events if isinstance(e, DataFileBackupFailed)]
    assert failure.data_file_id == dfid
    assert failure.host == "bk-1"
    assert failure.retriable is True
    assert failure.error_class == "ConnectionLost"
    assert "after 3 attempts" in failure.message
    assert not any(isinstance(e, DataFileBackedUp) for e in events)
    assert (runner.handler.copied, runner.handler.failed) == (0, 1)


async def test_a_poison_record_is_dead_lettered_once_and_the_next_transfer_backed_up(
    kafka: str,
    topics: tuple[str, str, str],
    publisher: Publisher,
    backup_host: SftpBackupHost,
    tmp_path: Path,
    unique: str,
) -> None:
    """An undecodable record on the transfers topic becomes one dead letter of the backup's
    group, and the queued transfer after it is still backed up."""
    key_file = tmp_path / "ecpds.key"
    host = sftp_host(backup_host.port, key_file, backup_host.key.get_fingerprint("sha256"))
    store = LocalStore(tmp_path / "store", durable=False)
    poison = await publish_poison(publisher, topics[1], b"site-a")
    dfid, data = await stored_file(store, 1000)
    expiry = datetime.now(UTC) + timedelta(hours=1)
    await publisher.publish(topics[1], "site-a", queued(dfid, "site-a", expiry=expiry))
    group = f"test-backup-{unique}"
    runner = backup_stage(
        kafka,
        store,
        config(host),
        key_file=key_file,
        transfers_topic=topics[1],
        datafiles_topic=topics[0],
        deadletter_topic=topics[2],
        group_id=group,
    )

    async def backed_up() -> bool:
        events = await read_events(kafka, topics[0])
        return any(isinstance(e, DataFileBackedUp) for e in events)

    await run_until(runner, backed_up)
    assert (backup_host.root / "archive" / "site-a" / f"{dfid}.dat").read_bytes() == data
    letters = await dead_letters(kafka, topics[2], topics[1], group)
    assert [(d.origin_offset, d.reason) for d in letters] == [
        (poison.offset, DeadLetterReason.UNDECODABLE)
    ]
