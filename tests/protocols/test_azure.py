"""The ``az`` module against a real Azurite blob server, plus SAS, MD5 and staged uploads.

Azurite comes from npm (``infra/npm``) and runs as a subprocess on a free 127.0.0.1 port with
the well-known development account; it checks shared-key and SAS signatures, so a wrong key
really fails. Clients reach it through ``KillableProxy`` so the server-gone cases can cut
every connection abruptly and come back with the same data.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import BlobServiceClient

from protocols.base import (
    Location,
    NotFound,
    PermissionDenied,
    from_bytes,
    read_all,
)
from protocols.registry import connect
from tests.protocols.contract import MIB, SourceBrokeError, TransferContract, payload
from tests.protocols.faultproxy import (
    KillableProxy,
    LocalServer,
    broken,
    generated,
    listening,
    put_many,
    relay,
    server_process,
    traced_peak,
)

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / "infra" / "npm" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret: it is in Microsoft's documentation).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "ecpds-test"
_counter = itertools.count()


class Azurite(LocalServer):
    """A running Azurite blob service (the development account)."""

    @property
    def account_url(self) -> str:
        return f"{self.url}/{ACCOUNT}"


@pytest.fixture(scope="session")
def azurite(
    free_port: Callable[[], int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Azurite]:
    """Azurite's blob service on a free port, data in a temporary directory."""
    port = free_port()
    data = tmp_path_factory.mktemp("azurite")
    argv = [
        str(AZURITE),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(data),
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
    ]
    npm = "run `npm install --prefix infra/npm`"
    with server_process(argv, data / "azurite.log", listening(port), missing=npm, seconds=60):
        yield Azurite(port)


@pytest.fixture(scope="session")
async def az_proxy(azurite: Azurite) -> AsyncIterator[KillableProxy]:
    async with relay(azurite.port) as proxy:
        connection = await connect(
            replace(_base(proxy), options={"scheme": "http", "mkContainer": "yes"})
        )
        await connection.close()
        yield proxy


def _base(proxy: KillableProxy) -> Location:
    return Location(
        scheme="az",
        host="127.0.0.1",
        port=proxy.port,
        user=ACCOUNT,
        password=KEY,
        path=f"/{CONTAINER}/t{next(_counter)}",
        options={"scheme": "http"},
    )


def _location(proxy: KillableProxy, **options: str) -> Location:
    base = _base(proxy)
    return replace(base, options={**base.options, "retryCount": "1", **options})


def _blob_name(location: Location, name: str) -> str:
    return f"{location.path.split('/', 2)[2]}/{name}"


class TestAzureContract(TransferContract):
    """The az module keeps the whole transfer contract on Azurite."""

    # Azurite (one Node process, in-memory LokiJS metadata) takes only ~100 puts/s here, so
    # 10,000 blobs would take minutes; 1,500 listed 400 per page still cross three page
    # boundaries (continuation markers), which is what the big listing must exercise.
    many_entries = 1_500

    @pytest.fixture
    def location(self, az_proxy: KillableProxy) -> Location:
        # 1 MiB blocks so the 3 MiB round trip and the killed put go through staged blocks.
        return _location(az_proxy, dirMarker="yes", blockSize="1", listPageSize="400")

    @pytest.fixture
    def bad_location(self, location: Location) -> Location:
        wrong = base64.b64encode(b"not the key of this account, 64 bytes long.........").decode()
        return replace(location, password=wrong)

    @pytest.fixture
    def kill_server(self, az_proxy: KillableProxy) -> KillableProxy:
        return az_proxy

    async def populate(self, location: Location, directory: str, count: int) -> None:
        """Put the entries with 32 requests in flight on one connection."""
        await put_many(location, directory, count, in_flight=32)


def _sas(azurite: Azurite, permission: ContainerSasPermissions) -> str:
    return generate_container_sas(
        ACCOUNT,
        CONTAINER,
        account_key=KEY,
        permission=permission,
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


async def test_sas_token_reads_and_writes(azurite: Azurite, az_proxy: KillableProxy) -> None:
    """A container SAS given as sasToken (no account key) is enough to put, list and get."""
    token = _sas(azurite, ContainerSasPermissions(read=True, write=True, list=True, delete=True))
    location = replace(_location(az_proxy, sasToken=token), password=None)
    connection = await connect(location)
    try:
        await connection.put("sas.bin", from_bytes(b"signed"))
        assert [e.name for e in await connection.list(".")] == ["sas.bin"]
        assert await read_all(connection.get("sas.bin")) == b"signed"
    finally:
        await connection.close()


async def test_read_only_sas_cannot_write(azurite: Azurite, az_proxy: KillableProxy) -> None:
    """A SAS without write permission gets PermissionDenied on put, which is not retriable."""
    token = _sas(azurite, ContainerSasPermissions(read=True, list=True))
    location = replace(_location(az_proxy, sasToken=token), password=None)
    connection = await connect(location)
    try:
        assert await connection.list(".") == []
        with pytest.raises(PermissionDenied) as info:
            await connection.put("nope.bin", from_bytes(b"no"))
        assert info.value.retriable is False
    finally:
        await connection.close()


@pytest.mark.parametrize("size", [1000, 3 * MIB + 5])
async def test_use_md5_stores_content_md5(
    azurite: Azurite, az_proxy: KillableProxy, size: int
) -> None:
    """With useMD5 the blob's Content-MD5 is the MD5 of its bytes, for one PUT and for blocks."""
    location = _location(az_proxy, useMD5="yes", blockSize="1")
    data = payload(size)
    connection = await connect(location)
    try:
        await connection.put("md5.bin", from_bytes(data))
    finally:
        await connection.close()
    async with BlobServiceClient(azurite.account_url, credential=_credential()) as service:
        blob = service.get_blob_client(CONTAINER, _blob_name(location, "md5.bin"))
        props = await blob.get_blob_properties()
    stored = props.content_settings.content_md5
    assert stored is not None
    assert bytes(stored) == hashlib.md5(data, usedforsecurity=False).digest()


def _credential() -> dict[str, str]:
    return {"account_name": ACCOUNT, "account_key": KEY}


async def test_staged_upload_memory_is_bounded(azurite: Azurite, az_proxy: KillableProxy) -> None:
    """A 12-block upload holds at most numBuffers x blockSize of block buffers."""
    location = _location(az_proxy, blockSize="2", numBuffers="3")
    bound = 3 * 2 * MIB
    total = 23 * MIB + 9
    connection = await connect(location)
    try:
        written, peak = await traced_peak(connection.put("staged.bin", generated(total)))
        assert written == total
    finally:
        await connection.close()
    assert peak < bound + 4 * MIB, f"peak {peak / MIB:.1f} MiB over the {bound / MIB} MiB bound"
    async with BlobServiceClient(azurite.account_url, credential=_credential()) as service:
        blob = service.get_blob_client(CONTAINER, _blob_name(location, "staged.bin"))
        committed, _ = await blob.get_block_list("committed")
        props = await blob.get_blob_properties()
    assert len(committed) == 12
    assert props.size == total


async def test_failed_staged_upload_leaves_no_blob(az_proxy: KillableProxy) -> None:
    """A staged put whose source fails after some blocks commits nothing: no blob appears."""
    location = _location(az_proxy, blockSize="1")
    connection = await connect(location)
    try:
        with pytest.raises(SourceBrokeError):
            await connection.put("half.bin", broken(3 * MIB))
        assert await connection.list(".") == []
        with pytest.raises(NotFound):
            await connection.size("half.bin")
    finally:
        await connection.close()


async def test_missing_container_is_not_found(az_proxy: KillableProxy) -> None:
    """Listing in a container that does not exist raises NotFound."""
    location = replace(_location(az_proxy), path="/no-such-container/x")
    connection = await connect(location)
    try:
        with pytest.raises(NotFound):
            await connection.list(".")
    finally:
        await connection.close()


async def test_container_name_option(az_proxy: KillableProxy) -> None:
    """With containerName (and mkContainer) the whole path is the blob-name prefix."""
    location = replace(
        _location(az_proxy, containerName=f"named{next(_counter)}", mkContainer="yes"),
        path="/in/here",
    )
    connection = await connect(location)
    try:
        await connection.put("f.bin", from_bytes(b"abc"))
        assert [e.name for e in await connection.list("/in", recursive=True)] == ["here/f.bin"]
    finally:
        await connection.close()
