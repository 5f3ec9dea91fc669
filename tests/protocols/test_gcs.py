"""The ``gs`` module against a real gcp-storage-emulator, plus resumable uploads and auth set-up.

The emulator runs as a subprocess (``gcp-storage-emulator start --in-memory``) on a free
127.0.0.1 port. It authenticates nobody, so the contract's wrong-password case cannot fail
there; instead a service account whose token endpoint refuses it is shown to be a permanent
AuthenticationFailed. Clients reach the emulator through ``KillableProxy`` so the server-gone
cases can cut every connection and come back with the same (in-memory) data.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from protocols.base import AuthenticationFailed, Location, NotFound, from_bytes, read_all
from protocols.registry import connect
from tests.protocols.contract import MIB, SourceBrokeError, TransferContract, payload
from tests.protocols.faultproxy import (
    KillableProxy,
    LocalServer,
    broken,
    generated,
    listening,
    relay,
    server_process,
    traced_peak,
)

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / ".venv" / "bin" / "gcp-storage-emulator"
BUCKET = "ecpds-test"
_counter = itertools.count()


class Emulator(LocalServer):
    """A running gcp-storage-emulator; ``root`` is its API root."""

    @property
    def root(self) -> str:
        return self.url


@pytest.fixture(scope="session")
def gcs_emulator(
    free_port: Callable[[], int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    """gcp-storage-emulator on a free port, keeping its data in memory."""
    port = free_port()
    argv = [str(EMULATOR), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    extras = "install the dev extras (gcp-storage-emulator)"
    with server_process([*argv, "-q"], log, listening(port), missing=extras):
        yield Emulator(port)


@pytest.fixture(scope="session")
async def gcs_proxy(gcs_emulator: Emulator) -> AsyncIterator[KillableProxy]:
    async with relay(gcs_emulator.port) as proxy:
        connection = await connect(_location(proxy, mkBucket="yes"))
        await connection.close()
        yield proxy


def _location(proxy: KillableProxy, **options: str) -> Location:
    return Location(
        scheme="gs",
        host="127.0.0.1",
        port=proxy.port,
        path=f"/{BUCKET}/t{next(_counter)}",
        options={"emulator": "yes", "timeOut": "30", **options},
    )


class TestGcsContract(TransferContract):
    """The gs module keeps the whole transfer contract on gcp-storage-emulator."""

    # The emulator takes only ~40 uploads/s here (Python server, 2 busy cores) and does not
    # paginate listings at all, so 10,000 objects would only measure its speed for minutes.
    many_entries = 500

    @pytest.fixture
    def location(self, gcs_proxy: KillableProxy) -> Location:
        # 1 MiB chunks so the 3 MiB round trip and the killed put use resumable sessions (the
        # emulator re-copies the whole upload on every chunk, so smaller ones get slow).
        return _location(gcs_proxy, dirMarker="yes", chunkSize="1")

    @pytest.fixture
    def kill_server(self, gcs_proxy: KillableProxy) -> KillableProxy:
        return gcs_proxy

    async def test_wrong_password_is_permanent_auth_failure(
        self, bad_location: Location | None
    ) -> None:
        """Not applicable: the emulator accepts every request (see the service-account test)."""
        pytest.skip("gcp-storage-emulator does not authenticate; see test_refused_service_account")


def _service_account(token_uri: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "ecpds-test",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "mover@ecpds-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        }
    )


async def test_refused_service_account_is_permanent_auth_failure(gcs_emulator: Emulator) -> None:
    """A service account whose token request is refused raises a non-retriable auth failure."""
    # The emulator has no OAuth endpoint; an upload URL without uploadType answers 400 there,
    # standing in for Google's 400 invalid_grant when it refuses a key.
    account = _service_account(f"{gcs_emulator.root}/upload/storage/v1/b/{BUCKET}/o")
    location = Location(
        scheme="gs",
        host="127.0.0.1",
        port=gcs_emulator.port,
        password=account,
        path=f"/{BUCKET}/sa",
        options={"scheme": "http"},
    )
    connection = await connect(location)
    try:
        with pytest.raises(AuthenticationFailed) as info:
            await connection.list(".")
        assert info.value.retriable is False
    finally:
        await connection.close()


async def test_unreadable_service_account_is_auth_failure(gcs_emulator: Emulator) -> None:
    """A password that is not a service-account JSON fails at connect as AuthenticationFailed."""
    location = Location(
        scheme="gs", host="127.0.0.1", port=gcs_emulator.port, password="not json", path="/b"
    )
    with pytest.raises(AuthenticationFailed):
        await connect(location)


async def test_emulator_host_from_environment(
    gcs_emulator: Emulator, gcs_proxy: KillableProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With STORAGE_EMULATOR_HOST set, a location without host reaches the emulator unsigned."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.root)
    location = Location(scheme="gs", path=f"/{BUCKET}/env{next(_counter)}")
    connection = await connect(location)
    try:
        await connection.put("e.bin", from_bytes(b"env"))
        assert await read_all(connection.get("e.bin")) == b"env"
    finally:
        await connection.close()


async def test_resumable_upload_memory_is_one_chunk(gcs_proxy: KillableProxy) -> None:
    """A resumable upload of 8 chunks holds about one chunk in memory, not the object."""
    location = _location(gcs_proxy, chunkSize="2")
    total = 15 * MIB + 3
    connection = await connect(location)
    try:
        written, peak = await traced_peak(connection.put("resumable.bin", generated(total)))
        assert written == total
        assert await connection.size("resumable.bin") == total
        tail = await read_all(connection.get("resumable.bin", offset=total - 5))
        block = payload(MIB)  # what ``generated`` repeats
        assert tail == bytes(block[(total - 5 + i) % MIB] for i in range(5))
    finally:
        await connection.close()
    # One 2 MiB chunk (plus BytesIO slack), the source's 1 MiB block and HTTP buffers.
    assert peak < 3 * 2 * MIB, f"peak {peak / MIB:.1f} MiB for 2 MiB chunks of a 15 MiB object"


async def test_exact_multiple_of_chunk_is_finalised(gcs_proxy: KillableProxy) -> None:
    """An object that ends exactly on a chunk boundary is finalised by an empty last request."""
    location = _location(gcs_proxy, chunkSize="0.25")
    data = payload(4 * 256 * 1024)
    connection = await connect(location)
    try:
        assert await connection.put("exact.bin", from_bytes(data, 100_000)) == len(data)
        assert await read_all(connection.get("exact.bin")) == data
    finally:
        await connection.close()


async def test_failed_resumable_upload_leaves_no_object(gcs_proxy: KillableProxy) -> None:
    """A resumable put whose source fails midway creates no object."""
    location = _location(gcs_proxy, chunkSize="0.25")
    connection = await connect(location)
    try:
        with pytest.raises(SourceBrokeError):
            await connection.put("half.bin", broken(MIB, chunk=128 * 1024))
        assert await connection.list(".") == []
        with pytest.raises(NotFound):
            await connection.size("half.bin")
    finally:
        await connection.close()


async def test_missing_bucket_is_not_found(gcs_proxy: KillableProxy) -> None:
    """Listing in a bucket that does not exist raises NotFound."""
    location = replace(_location(gcs_proxy), path="/no-such-bucket/x")
    connection = await connect(location)
    try:
        with pytest.raises(NotFound):
            await connection.list(".")
    finally:
        await connection.close()


async def test_bucket_name_option(gcs_emulator: Emulator, gcs_proxy: KillableProxy) -> None:
    """With bucketName (and mkBucket) the whole path is the object-name prefix."""
    bucket = f"named{next(_counter)}"
    location = replace(_location(gcs_proxy, bucketName=bucket, mkBucket="yes"), path="/in/here")
    connection = await connect(location)
    try:
        await connection.put("f.bin", from_bytes(b"abc"))
    finally:
        await connection.close()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gcs_emulator.root}/storage/v1/b/{bucket}/o") as response,
    ):
        listed = await response.json()
    assert [item["name"] for item in listed["items"]] == ["in/here/f.bin"]
