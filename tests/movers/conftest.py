"""Fixtures of the mover tests: the real protocol servers of ``tests/protocols``, a key file,
a local object store and private topics.

The server fixtures are the protocol suite's own (imported, so each runs as that suite runs it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store.local import LocalStore
from tests.movers.support import Outcomes, Topics
from tests.protocols.conftest import free_port, ram_dir, tls_files
from tests.protocols.test_azure import azurite
from tests.protocols.test_gcs import gcs_emulator
from tests.protocols.test_http import http_server
from tests.protocols.test_s3 import moto
from tests.protocols.test_sftp import sshd

__all__ = [
    "azurite",
    "free_port",
    "gcs_emulator",
    "http_server",
    "moto",
    "ram_dir",
    "sshd",
    "tls_files",
]


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An operator key file (created on first encrypt)."""
    return tmp_path_factory.mktemp("secrets") / "ecpds.key"


@pytest.fixture(scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStore]:
    """A local object store in a temporary directory."""
    local = LocalStore(tmp_path_factory.mktemp("store"), durable=False)
    yield local
    await local.close()


@pytest.fixture(scope="module")
async def topics(kafka: str) -> Topics:
    """Private orders, transfers, movers and dead-letter topics for one module."""
    made = Topics.unique()
    await made.create(kafka)
    return made


@pytest.fixture(scope="module")
async def outcomes(kafka: str, topics: Topics) -> AsyncIterator[Outcomes]:
    """Every event the movers publish on the module's transfers topic."""
    seen = Outcomes(kafka, topics.transfers)
    await seen.start()
    yield seen
    await seen.stop()
