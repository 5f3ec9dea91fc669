"""The store backend over the Azure and GCS transfer modules keeps the store contract.

Each server is a real emulator started here for this module: Azurite (npm, shared-key checked)
and gcp-storage-emulator (in memory), on free 127.0.0.1 ports, stopped at the end.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from protocols.base import Location
from store.ports import ObjectStore
from store.remote import RemoteStore
from tests.conftest import free_port
from tests.store.test_remote import RemoteContract

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / "infra" / "npm" / "node_modules" / ".bin" / "azurite-blob"
GCS_EMULATOR = ROOT / ".venv" / "bin" / "gcp-storage-emulator"
ACCOUNT = "devstoreaccount1"
# Azurite's published development key (in Microsoft's documentation, not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _serve(argv: list[str], port: int, log: Path) -> Iterator[int]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"{argv[0]} exited with {process.returncode}: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{argv[0]} did not listen on 127.0.0.1:{port}")
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def azurite_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Azurite's blob service for this module."""
    if not AZURITE.exists():
        pytest.skip(f"{AZURITE} missing: run `npm install --prefix infra/npm`")
    port = free_port()
    data = tmp_path_factory.mktemp("azurite-store")
    argv = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    argv += ["--location", str(data), "--disableTelemetry", "--skipApiVersionCheck", "--silent"]
    yield from _serve(argv, port, data / "azurite.log")


@pytest.fixture(scope="module")
def gcs_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """gcp-storage-emulator (in memory) for this module."""
    if not GCS_EMULATOR.exists():
        pytest.skip(f"{GCS_EMULATOR} missing: install the dev extras")
    port = free_port()
    log = tmp_path_factory.mktemp("gcs-store") / "emulator.log"
    argv = [str(GCS_EMULATOR), "start", "--host", "127.0.0.1", "--port", str(port)]
    yield from _serve([*argv, "--in-memory", "-q"], port, log)


class TestAzureRemoteStore(RemoteContract):
    @pytest.fixture
    async def store(self, azurite_port: int) -> AsyncIterator[ObjectStore]:
        location = Location(
            scheme="az",
            host="127.0.0.1",
            port=azurite_port,
            user=ACCOUNT,
            password=KEY,
            path=f"/store/{uuid.uuid4().hex[:8]}",
            options={"scheme": "http", "mkContainer": "yes", "retryCount": "1"},
        )
        remote = RemoteStore(location)
        yield remote
        await remote.close()


class TestGcsRemoteStore(RemoteContract):
    @pytest.fixture
    async def store(self, gcs_port: int) -> AsyncIterator[ObjectStore]:
        location = Location(
            scheme="gs",
            host="127.0.0.1",
            port=gcs_port,
            path=f"/store/{uuid.uuid4().hex[:8]}",
            options={"emulator": "yes", "timeOut": "30", "mkBucket": "yes"},
        )
        remote = RemoteStore(location)
        yield remote
        await remote.close()
