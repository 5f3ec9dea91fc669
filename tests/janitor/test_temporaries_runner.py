"""The janitor removes the temporary files movers left, on a real OpenSSH sftp host, once
their transfer is finished, and leaves those of a transfer still running."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bus.config.source import FixedConfig
from bus.config.view import ConfigView
from bus.events import Event, envelope
from bus.publisher import Publisher
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.janitor.hosts import HostFiles
from consumers.janitor.runner import JanitorRunner
from store.local import LocalStore
from tests.conftest import eventually
from tests.janitor.factories import scheduled, started, succeeded
from tests.movers.support import host
from tests.protocols.test_sftp import LOGIN, Sshd, sshd

pytestmark = pytest.mark.kafka
__all__ = ["sshd"]


def _now(event: Event) -> Event:
    """The event as published now (the janitor gives up names of transfers finished long ago)."""
    return replace(event, envelope=envelope("test", event.envelope.correlation_id))


async def test_a_finished_transfers_leftover_is_removed_and_a_running_ones_kept(
    kafka: str, unique: str, sshd: Sshd, tmp_path: Path
) -> None:
    """Attempt 1 of a delivered transfer left its temporary file (mover SIGKILLed): the
    janitor deletes it over SFTP; the temporary file of a transfer still running stays."""
    datafiles, transfers = f"test.{unique}.datafiles", f"test.{unique}.transfers"
    await apply_topics(kafka, [
        TopicSpec(datafiles, "data file id", 1, "delete", DAY_MS, ("ecpds.datafiles",), "t"),
        TopicSpec(transfers, "destination", 2, "delete", DAY_MS, ("ecpds.transfers",), "t"),
    ])  # fmt: skip
    keys = {"sftp.privateKeyFile": str(sshd.client_key), "sftp.fingerPrint": sshd.fingerprint()}
    target = host("sftp", f"127.0.0.1:{sshd.port}", id="h1", login=LOGIN, options=keys)
    folder = sshd.data / f"janitor-{unique}"
    folder.mkdir()
    done, running = uuid.uuid4().hex, uuid.uuid4().hex
    left = folder / f".{done}.dat.0a1b2c3d.1.tmp"
    busy = folder / f".{running}.dat.0a1b2c3d.1.tmp"
    for path in (left, busy):
        path.write_bytes(b"partial")
    (folder / f"{done}.dat").write_bytes(b"delivered")
    history: list[Event] = [
        replace(started(done), temporary_path=str(left)),
        scheduled(done, attempt=2),
        replace(started(done, attempt=2), temporary_path=str(folder / f".{done}.dat.x.2.tmp")),
        succeeded(done, attempt=2),
        replace(started(running), temporary_path=str(busy)),
    ]
    async with Publisher(kafka) as publisher:
        for event in history:
            await publisher.publish(transfers, "site-a", _now(event))
    runner = JanitorRunner(
        kafka, LocalStore(tmp_path / "store", durable=False),
        FixedConfig(ConfigView(hosts={"h1": target})),
        datafiles_topic=datafiles, transfers_topic=transfers, interval=0.3,
        settle=timedelta(0), hosts=HostFiles(tmp_path / "unused.key"),
    )  # fmt: skip
    task = asyncio.create_task(runner.run())
    try:

        async def removed() -> bool:
            return not left.exists()

        await eventually(removed)
        await asyncio.sleep(1.0)  # a few more sweeps
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
    assert busy.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{done}.dat", busy.name])
    assert runner.temporaries.names.keys() == {f"{running}-site-a"}
