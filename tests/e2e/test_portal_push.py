"""The portal as an entry point end to end: a file pushed with OpenSSH ``sftp`` into a
destination that has a dissemination host is registered by the portal, scheduled and moved
onward to that host by the real scheduler and mover (ECPDS-REFERENCE.md: "uploaded files are
then disseminated")."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from bus.events.transfers import TransferSucceeded
from tests.conftest import free_port
from tests.e2e.conftest import Stack
from tests.portal.conftest import SSH_OPTIONS

pytestmark = pytest.mark.kafka

CONFIG = """
hosts:
  - id: onward-{tag}
    nickname: onward outbox
    type: dissemination
    protocol: file
    address: localhost{root}
    directory: onward/
destinations:
  - name: pushed-{tag}
    type: dissemination
    transfer_group: {group}
associations:
  - destination: pushed-{tag}
    host: onward-{tag}
    priority: 0
users:
  - login: pusher-{tag}
    destinations: [pushed-{tag}]
    operations: [dir, put]
    ssh_authorized_keys: ["{key}"]
"""


async def test_a_file_pushed_through_the_portal_is_disseminated_onward(
    stack: Stack, postgres: str, tmp_path: Path
) -> None:
    """``sftp put`` into the portal: the same bytes arrive at the destination's host (the
    portal also needs PostgreSQL, for its listings)."""
    key = tmp_path / "pusher"
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]
    await asyncio.to_thread(subprocess.run, keygen, check=True)
    await stack.apply(
        CONFIG.format(
            tag=stack.tag,
            group=stack.group,
            root=stack.root / "outbox",
            key=(tmp_path / "pusher.pub").read_text().strip(),
        )
    )
    port, web = free_port(), free_port()
    stack._spawn(
        "portal",
        [
            "-m", "producers.portal.runner", "--sftp-port", str(port), "--https-port", str(web),
            "--ftp-port", "0", "--ftps-port", "0",  # any free ports: FTP is not what it tests
            "--s3-port", str(free_port()),
            "--config-topic", stack.topic("config"),
            "--datafiles-topic", stack.topic("datafiles"),
            "--transfers-topic", stack.topic("transfers"),
            "--portal-topic", stack.topic("portal"), "--store-root", str(stack.root / "store"),
        ],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "portal HTTPS listening" not in stack.log("portal"):
            assert time.monotonic() < deadline, stack.log("portal")
            await asyncio.sleep(0.2)
        data = os.urandom(250_000)
        (tmp_path / "push.bin").write_bytes(data)
        (tmp_path / "batch").write_text(f"put push.bin /pushed-{stack.tag}/push.bin\n")
        argv = [
            "sftp", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key),
            *SSH_OPTIONS, "-P", str(port), "-b", str(tmp_path / "batch"),
            f"pusher-{stack.tag}@127.0.0.1",
        ]  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, argv, cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr + stack.log("portal")
        assert stack.tail is not None
        await stack.tail.until(
            lambda events: any(
                isinstance(e, TransferSucceeded) and e.destination == f"pushed-{stack.tag}"
                for e in events
            )
        )
        assert (stack.root / "outbox" / "onward" / "push.bin").read_bytes() == data
    finally:
        await asyncio.to_thread(stack.stop, "portal")
