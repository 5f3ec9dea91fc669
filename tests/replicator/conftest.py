"""Fixtures of the replicator tests: the ingest stack on this module's own topics with a real
local store, a real SFTP server (asyncssh, password auth, chrooted to a temp dir) holding the
secondary store, and an operator key for the host's encrypted password."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from bus.publisher import Publisher
from bus.settings import Settings
from bus.tokens import token_digest
from bus.topics import DAY_MS, TopicSpec, apply_topics
from producers.api.ingest import ApiState
from producers.api.runtime import RuntimeOptions, running
from producers.ingest.service import IngestTopics

TOKEN = "replicator-test-token"
USER, PASSWORD = "replica", "replica-secret"


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


@dataclass
class SftpServer:
    """An asyncssh SFTP server on 127.0.0.1, chrooted to ``root``."""

    root: Path
    port: int
    key: asyncssh.SSHKey
    acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def fingerprint(self) -> str:
        return str(self.key.get_fingerprint("sha256"))


@dataclass(frozen=True)
class Names:
    """The topics, folders and key file of one test module."""

    config: str
    topics: IngestTopics
    deadletter: str
    store: Path
    tokens: Path
    key_file: Path


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Names:
    u = uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp(f"replicator-{u}")
    tokens = root / "api-tokens"
    tokens.write_text(f"ops:{token_digest(TOKEN)}\n")
    return Names(
        config=f"test.{u}.config",
        topics=IngestTopics(f"test.{u}.datafiles", f"test.{u}.transfers"),
        deadletter=f"test.{u}.deadletter",
        store=root / "store",
        tokens=tokens,
        key_file=root / "secrets" / "ecpds.key",
    )


@pytest.fixture(scope="module")
async def stack(kafka: str, settings: Settings, names: Names) -> AsyncIterator[ApiState]:
    spec = TopicSpec(names.deadletter, "origin key", 1, "delete", DAY_MS, ("ecpds.deadletter",), "")
    await apply_topics(kafka, [spec])
    options = RuntimeOptions(
        config_topic=names.config,
        topics=names.topics,
        store_root=names.store,
        tokens_file=names.tokens,
        durable=False,
    )
    async with running(settings, options) as state:
        yield state


@pytest.fixture(scope="module")
async def publisher(kafka: str) -> AsyncIterator[Publisher]:
    async with Publisher(kafka) as pub:
        yield pub


@pytest.fixture(scope="module")
async def sftp(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SftpServer]:
    root = tmp_path_factory.mktemp("replica-host") / "root"
    root.mkdir(parents=True)
    server = SftpServer(root, free_port(), asyncssh.generate_private_key("ssh-ed25519"))
    chroot = os.fsencode(root)
    server.acceptor = await asyncssh.listen(
        "127.0.0.1",
        server.port,
        server_host_keys=[server.key],
        server_factory=_Server,
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=chroot),
        allow_scp=False,
    )
    yield server
    server.acceptor.close()
    await server.acceptor.wait_closed()
