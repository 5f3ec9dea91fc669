"""A host's error end to end (issue 13, "Errors classed by whose problem they are"): files put
through the ingest API for a destination whose only host is Debian's OpenSSH sshd with a
credential it refuses, moved by a real mover process, decided by the real scheduler process.

Pinned: the refused login is the host's problem, so no transfer is stopped or failed; after
the destination's retry cycles the destination (not the files) goes on hold (HOLD "Failed")
with the host and the error as its reason; once the host's credential is put right in the
configuration and the destination restarted, every file arrives whole, once. A missing
directory is the host's problem likewise: held with ``NotFound``, delivered once it exists.

The test sshd takes keys only (it cannot be given a known password without changing the
machine's users): the wrong credential is a password, which OpenSSH refuses exactly as it
refuses a wrong one ("Permission denied"), and the corrected one is the key it accepts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bus.events import envelope
from bus.events.base import DestinationStatus
from bus.events.requests import RestartRequested
from bus.events.transfers import (
    DestinationStatusChanged,
    TransferAbandoned,
    TransferExpired,
    TransferFailed,
    TransferStopped,
)
from bus.publisher import Publisher
from tests.e2e.conftest import Stack
from tests.protocols.test_sftp import LOGIN, Sshd, sshd

__all__ = ["sshd"]

pytestmark = pytest.mark.kafka

FILES = 6


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as c:
        yield c


def document(
    stack: Stack, sshd: Sshd, dest: str, host_id: str, base: Path, *, right: bool, extra: str = ""
) -> str:
    """The destination and its only SFTP host, with the wrong credential or the right one
    (``extra``: more option lines of the host)."""
    if right:
        credential = (
            f'    options:\n      sftp.privateKeyFile: "{sshd.client_key}"\n'
            f'      sftp.fingerPrint: "{sshd.fingerprint()}"\n'
        )
    else:
        credential = (
            "    password: rotated-on-the-remote-side\n"
            f'    options:\n      sftp.fingerPrint: "{sshd.fingerprint()}"\n'
        )
    return (
        f"hosts:\n  - id: {host_id}\n    nickname: sftp {host_id}\n    type: dissemination\n"
        f"    protocol: sftp\n    address: 127.0.0.1:{sshd.port}{base}\n    login: {LOGIN}\n"
        "    retry_count: 0\n    retry_frequency: 1s\n"
        + credential
        + extra
        + f"destinations:\n  - name: {dest}\n    type: dissemination\n"
        f"    transfer_group: {stack.group}\n    retry_count: 2\n    retry_frequency: 2s\n"
        "    max_connections: 3\n"
        f"associations:\n  - {{destination: {dest}, host: {host_id}, priority: 0}}\n"
    )


def final_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by name (temporary names included: a leftover must show)."""
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


async def held(stack: Stack, dest: str) -> DestinationStatusChanged:
    """Wait for the destination to go on hold; the status change that says so."""
    assert stack.tail is not None
    tail = stack.tail

    def holds() -> list[DestinationStatusChanged]:
        changes = tail.of(DestinationStatusChanged, dest)
        return [e for e in changes if e.new_status is DestinationStatus.HOLD]

    await tail.until(lambda _: bool(holds()))
    (hold,) = holds()
    return hold


async def restart(stack: Stack, dest: str) -> None:
    """What an operator's ``ecpds destination restart`` publishes."""
    request = RestartRequested(
        envelope=envelope("e2e-test", dest), destination=dest, requested_by="e2e"
    )
    async with Publisher(stack.kafka) as publisher:
        await publisher.publish(stack.topic("transfers"), dest, request)


async def test_wrong_password_holds_the_destination_and_a_restart_delivers_everything(
    stack: Stack, sshd: Sshd, client: httpx.AsyncClient
) -> None:
    """A credential OpenSSH refuses holds the destination with the reason after its cycles,
    stops no file, and after the credential is corrected and the destination restarted all
    files arrive."""
    tag = uuid.uuid4().hex[:6]
    dest, host_id = f"auth-{tag}", f"auth-sftp-{tag}"
    base = sshd.data / f"auth-{tag}"
    base.mkdir()
    assert stack.tail is not None
    tail = stack.tail
    await stack.apply(document(stack, sshd, dest, host_id, base, right=False))
    sent = {f"f{i}.bin": os.urandom(4096 + i) for i in range(FILES)}
    for name, data in sent.items():
        await stack.put(client, dest, name, data)

    hold = await held(stack, dest)
    assert hold.reason.startswith("Failed: every host failed, 2 cycle(s)"), hold.reason
    assert f"last error on host {host_id}: AuthenticationFailed" in hold.reason
    failures = tail.of(TransferFailed, dest)
    assert failures
    assert {(f.error_class, f.fault) for f in failures} == {("AuthenticationFailed", "HOST")}
    for ended in (TransferStopped, TransferAbandoned, TransferExpired):
        assert tail.of(ended, dest) == []
    assert final_files(base) == {}

    await stack.apply(document(stack, sshd, dest, host_id, base, right=True))
    await restart(stack, dest)
    await tail.all_done(dest, FILES)
    assert final_files(base) == sent
    for ended in (TransferStopped, TransferAbandoned, TransferExpired):
        assert tail.of(ended, dest) == []


async def test_missing_directory_holds_the_destination_until_it_exists(
    stack: Stack, sshd: Sshd, client: httpx.AsyncClient
) -> None:
    """A Host Directory missing at the server (and not to be created: ``mkdirs`` off) holds the
    destination with ``NotFound`` as reason and stops no file; once the directory is made and
    the destination restarted, all files arrive."""
    tag = uuid.uuid4().hex[:6]
    dest, host_id = f"dir-{tag}", f"dir-sftp-{tag}"
    base = sshd.data / f"dir-{tag}"  # not made
    assert stack.tail is not None
    tail = stack.tail
    no_mkdirs = '      sftp.mkdirs: "no"\n'
    await stack.apply(document(stack, sshd, dest, host_id, base, right=True, extra=no_mkdirs))
    sent = {f"g{i}.bin": os.urandom(2048 + i) for i in range(FILES)}
    for name, data in sent.items():
        await stack.put(client, dest, name, data)
    hold = await held(stack, dest)
    assert f"last error on host {host_id}: NotFound" in hold.reason, hold.reason
    assert {f.fault for f in tail.of(TransferFailed, dest)} == {"HOST"}
    for ended in (TransferStopped, TransferAbandoned, TransferExpired):
        assert tail.of(ended, dest) == []

    base.mkdir()
    await restart(stack, dest)
    await tail.all_done(dest, FILES)
    assert final_files(base) == sent
