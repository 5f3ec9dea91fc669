"""Acquisition from cloud object stores: an Azure container (Azurite, from npm) and a Google
Cloud Storage bucket (gcp-storage-emulator), both polled by the real runner. Objects under the
listed prefix are filtered by name and size, the selected ones are stored with their listed
size and queued to the destination, the others never discovered."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bus.events.acquisition import FileDiscovered, ListingCompleted, RetrievalSucceeded
from bus.events.config import Association, Host
from bus.events.datafiles import DataFileStored
from bus.events.transfers import TransferQueued
from protocols.base import Location, from_bytes
from protocols.registry import connect
from store.local import LocalStore
from store.objects import ObjectId
from tests.acquisition.conftest import Env
from tests.acquisition.test_runner import GROUP, destination, host, kinds
from tests.conftest import free_port as _free_port
from tests.protocols.test_azure import ACCOUNT, CONTAINER, KEY, Azurite
from tests.protocols.test_azure import azurite as azurite  # the session fixture
from tests.protocols.test_gcs import BUCKET, Emulator
from tests.protocols.test_gcs import gcs_emulator as gcs_emulator  # the session fixture

# name -> size: only the big .nc objects pass the line's regex and its size filter
OBJECTS = {"big.nc": 6000, "other.nc": 4500, "small.nc": 10, "big.txt": 6000}
WANTED = {"big.nc": 6000, "other.nc": 4500}
FILTER = {"acquisition.filesize": ">=1000"}


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """What the Azurite and emulator fixtures ask for: a free TCP port on 127.0.0.1."""
    return _free_port


def payload(name: str, size: int) -> bytes:
    return (name.encode() * (size // len(name) + 1))[:size]


async def upload(location: Location, prefix: str) -> None:
    """Put ``OBJECTS`` under ``prefix`` through the project's own module (container made)."""
    conn = await connect(location)
    try:
        for name, size in OBJECTS.items():
            await conn.put(f"{prefix}/{name}", from_bytes(payload(name, size)))
    finally:
        await conn.close()


async def acquire(env: Env, dest: str, provider: Host) -> list[object]:
    """Run the runner until ``provider`` acquired the wanted objects; its events."""
    await env.define(
        GROUP, destination(dest), provider, Association(destination=dest, host=provider.id)
    )
    async with env.runner():
        await env.until(
            env.names.acquisition,
            lambda es: (
                len([e for e in kinds(es, RetrievalSucceeded) if e.host_id == provider.id])
                >= len(WANTED)
            ),
            timeout=60,
        )
    return list(await env.acquisition(provider.id))


async def check_acquired(env: Env, dest: str, events: list[object]) -> None:
    """Only the wanted objects were discovered; they are in the store whole and queued."""
    listing = kinds(events, ListingCompleted)[0]
    assert listing.errors == ()
    assert (listing.entries_listed, listing.files_matched) == (len(OBJECTS), len(WANTED))
    assert {e.name: e.size for e in kinds(events, FileDiscovered)} == WANTED
    done = kinds(events, RetrievalSucceeded)
    assert {e.path.rpartition("/")[2]: e.size for e in done} == WANTED
    stored = {
        e.data_file_id: e
        for e in kinds(await env.events(env.names.topics.datafiles), DataFileStored)
    }
    store = LocalStore(env.names.store, durable=False)
    try:
        for e in done:
            name = e.path.rpartition("/")[2]
            assert stored[e.data_file_id].size == WANTED[name]
            body = b"".join([c async for c in store.get(ObjectId(e.data_file_id))])
            assert body == payload(name, WANTED[name])
    finally:
        await store.close()
    queued = {
        e.target: e.size
        for e in kinds(await env.events(env.names.topics.transfers), TransferQueued)
        if e.destination == dest
    }
    assert queued == WANTED


async def test_azure_container_prefix_provider(env: Env, azurite: Azurite) -> None:
    """Blobs under an Azure prefix are listed, filtered by name and size, and acquired whole."""
    await upload(
        Location(
            scheme="az", host="127.0.0.1", port=azurite.port, user=ACCOUNT, password=KEY,
            path=f"/{CONTAINER}", options={"scheme": "http", "mkContainer": "yes"},
        ),
        "acqin",
    )  # fmt: skip
    provider = host(
        "az-p", "az", f"127.0.0.1:{azurite.port}", f"/{CONTAINER}/acqin/{{.*\\.nc}}",
        login=ACCOUNT, credentials=env.key.encrypt(KEY),
        options={"azure.scheme": "http", **FILTER},
    )  # fmt: skip
    await check_acquired(env, "acq-az", await acquire(env, "acq-az", provider))


async def test_gcs_bucket_prefix_provider(env: Env, gcs_emulator: Emulator) -> None:
    """Objects under a GCS prefix are listed, filtered by name and size, and acquired whole."""
    await upload(
        Location(
            scheme="gs", host="127.0.0.1", port=gcs_emulator.port, path=f"/{BUCKET}",
            options={"emulator": "yes", "mkBucket": "yes"},
        ),
        "acqin",
    )  # fmt: skip
    provider = host(
        "gs-p", "gs", f"127.0.0.1:{gcs_emulator.port}", f"/{BUCKET}/acqin/{{.*\\.nc}}",
        options={"gcs.emulator": "yes", **FILTER},
    )  # fmt: skip
    await check_acquired(env, "acq-gs", await acquire(env, "acq-gs", provider))
