"""The ingest API against the real Kafka and a real local store in a temporary folder: events
in order, the object readable with the right checksums, every refusal an event that leaves
nothing stored, data-user permissions, recovery and the index rebuilt after a restart."""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bus.config.secrets import OperatorKey, seal_password
from bus.events.base import Envelope, TransferStatus
from bus.events.config import Alias, MqttSettings, PortalOperation
from bus.events.datafiles import (
    Checksums,
    DataFileRegistered,
    DataFileRegistrationFailed,
    DataFileRegistrationRefused,
    DataFileStored,
    RefusalReason,
)
from bus.events.transfers import TransferQueued
from bus.publisher import Publisher
from bus.settings import Settings
from bus.tokens import TokenFile, TokenRole
from producers.api.app import create_app
from producers.api.ingest import ApiState
from producers.api.runtime import running
from store.local import LocalStore
from store.objects import ObjectId, ObjectSpec, new_object_id
from tests.config import factories as f
from tests.ingest.conftest import TOKEN, Names, define, events_of, read_topic

pytestmark = pytest.mark.kafka

PAYLOAD = bytes(range(256)) * 400  # 100 KiB
MD5 = hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module", autouse=True)
async def configured(
    stack: ApiState, publisher: Publisher, names: Names, settings: Settings
) -> None:
    sealed = seal_password("portal-secret", OperatorKey.load(settings.key_file))
    await define(
        stack,
        publisher,
        names.config,
        f.destination("site-a", aliases=(Alias(destination="site-b"),)),
        f.destination("site-b"),
        f.destination("small", max_file_size=100),
        f.destination("busy", max_pending=1),
        f.destination("off", active=False),
        f.destination("short", default_lifetime_ms=3_600_000),
        f.destination("wis2", mqtt=MqttSettings(publish=True)),
        f.user("alice", destinations=("site-a",), operations=(PortalOperation.PUT,)),
        f.user("bob", destinations=("site-a",), operations=(PortalOperation.GET,)),
        f.user(
            "dave",
            password_hash=None,
            password_secret=sealed,
            destinations=("site-a",),
            operations=(PortalOperation.PUT,),
        ),
    )


async def objects(names: Names) -> int:
    store = LocalStore(names.store, durable=False)
    try:
        return len(await store.list())
    finally:
        await store.close()


async def test_put_registers_stores_and_queues_in_order(
    client: httpx.AsyncClient, kafka: str, names: Names
) -> None:
    """A put publishes Registered, then Stored, then one Queued per destination and alias,
    each caused by the previous one, and the object reads back with the right checksums."""
    response = await client.post(
        "/api/v1/datafiles",
        params={"destination": "site-a", "target": "in/order.bin", "priority": "7"},
        content=PAYLOAD,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    dfid = body["data_file_id"]
    assert body["checksums"]["adler32"] == f"{zlib.adler32(PAYLOAD):08x}"
    assert body["checksums"]["md5"] == MD5
    events = await events_of(kafka, names.topics, dfid)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["DataFileRegistered", "DataFileStored", "TransferQueued", "TransferQueued"]
    registered, stored, *queued = events
    assert isinstance(registered, DataFileRegistered)
    assert isinstance(stored, DataFileStored)
    assert stored.envelope.causation_id == registered.envelope.event_id
    assert registered.envelope.occurred_at <= stored.envelope.occurred_at
    assert stored.size == len(PAYLOAD)
    assert stored.checksums.md5 == MD5
    assert stored.checksums.sha512 is None  # no destination of it announces over WIS2
    transfers = sorted(
        (q.destination, q.status, q.priority, q.alias_of, q.size)
        for q in queued
        if isinstance(q, TransferQueued) and q.envelope.causation_id == stored.envelope.event_id
    )
    assert transfers == [
        ("site-a", TransferStatus.WAIT, 7, None, len(PAYLOAD)),
        ("site-b", TransferStatus.WAIT, 7, "site-a", len(PAYLOAD)),
    ]
    store = LocalStore(names.store, durable=False)
    try:
        data = b"".join([chunk async for chunk in store.get(ObjectId(stored.guid))])
    finally:
        await store.close()
    assert data == PAYLOAD


async def test_a_file_announced_over_wis2_gets_its_sha512(
    client: httpx.AsyncClient, kafka: str, names: Names
) -> None:
    """A file for a destination that publishes WIS2 notifications is stored with its SHA-512
    (the notification's integrity), carried by DataFileStored and TransferQueued."""
    response = await client.post(
        "/api/v1/datafiles", params={"destination": "wis2", "target": "w/x.bin"}, content=PAYLOAD
    )
    assert response.status_code == 201, response.text
    events = await events_of(kafka, names.topics, response.json()["data_file_id"])
    stored = next(e for e in events if isinstance(e, DataFileStored))
    queued = next(e for e in events if isinstance(e, TransferQueued))
    assert stored.checksums.sha512 == hashlib.sha512(PAYLOAD).hexdigest()
    assert queued.checksums is not None
    assert queued.checksums.sha512 == stored.checksums.sha512


async def test_get_datafile_shows_the_file_and_its_transfers(client: httpx.AsyncClient) -> None:
    """GET /api/v1/datafiles/{id} returns the stored file and its transfers' queued state."""
    put = await client.post(
        "/api/v1/datafiles",
        params={"destination": "site-a", "target": "get/me.bin", "standby": "true"},
        content=b"hello",
    )
    dfid = put.json()["data_file_id"]
    got = await client.get(f"/api/v1/datafiles/{dfid}")
    assert got.status_code == 200
    body = got.json()
    assert (body["state"], body["size"], body["target"]) == ("stored", 5, "get/me.bin")
    assert sorted((t["destination"], t["status"]) for t in body["transfers"]) == [
        ("site-a", "HOLD"),
        ("site-b", "HOLD"),
    ]
    assert (await client.get("/api/v1/datafiles/nope")).status_code == 404


async def _stream(data: bytes, size: int = 64) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


R = RefusalReason


@pytest.mark.parametrize(
    ("query", "status", "reason", "field"),
    [
        ({"destination": "nowhere", "target": "x"}, 404, R.UNKNOWN_DESTINATION, "destination"),
        ({"destination": "off", "target": "x"}, 403, R.NOT_PERMITTED, "destination"),
        ({"destination": "small", "target": "x"}, 413, R.TOO_LARGE, "size"),
        ({"destination": "short", "target": "x", "delay": "2h"}, 400, R.ALREADY_EXPIRED, "delay"),
        ({"destination": "site-a", "target": "x", "priority": "100"}, 400, R.INVALID, "priority"),
        ({"destination": "site-a", "target": "x", "lifetime": "soon"}, 400, R.INVALID, "lifetime"),
        ({"destination": "site-a", "target": "../x"}, 400, R.INVALID, "target"),
    ],
)
async def test_refusals_are_events_and_store_nothing(
    client: httpx.AsyncClient,
    kafka: str,
    names: Names,
    query: dict[str, str],
    status: int,
    reason: RefusalReason,
    field: str,
) -> None:
    """Each refusal answers its 4xx with the option and message, is recorded as a
    DataFileRegistrationRefused event and stores nothing."""
    before = await objects(names)
    response = await client.post("/api/v1/datafiles", params=query, content=PAYLOAD)
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["status"], body["field"], body["reason"]) == ("error", field, reason.value)
    assert body["message"]
    refusals = [
        e
        for _, _, e in await read_topic(kafka, names.topics.datafiles)
        if isinstance(e, DataFileRegistrationRefused) and e.message == body["message"]
    ]
    assert [(r.destination, r.reason) for r in refusals] == [(query["destination"], reason)]
    assert await objects(names) == before


async def test_duplicate_is_refused_unless_requeue_or_force(client: httpx.AsyncClient) -> None:
    """A second put of the same name with other bytes is refused (409); --requeue and --force
    make instances 2 and 3."""
    params = {"destination": "site-b", "target": "dup.bin"}
    first = await client.post("/api/v1/datafiles", params=params, content=b"1")
    assert first.json()["file_instance"] == 1
    again = await client.post("/api/v1/datafiles", params=params, content=b"other")
    assert (again.status_code, again.json()["reason"]) == (409, "DUPLICATE")
    requeued = await client.post(
        "/api/v1/datafiles", params={**params, "requeue": ""}, content=b"2"
    )
    forced = await client.post("/api/v1/datafiles", params={**params, "force": "1"}, content=b"3")
    assert (requeued.json()["file_instance"], forced.json()["file_instance"]) == (2, 3)


async def test_more_pending_than_allowed_is_refused(client: httpx.AsyncClient) -> None:
    """Once a destination has max_pending transfers waiting, the next put is refused (429)."""
    first = await client.post(
        "/api/v1/datafiles", params={"destination": "busy", "target": "1"}, content=b"1"
    )
    assert first.status_code == 201
    second = await client.post(
        "/api/v1/datafiles", params={"destination": "busy", "target": "2"}, content=b"2"
    )
    assert (second.status_code, second.json()["reason"]) == (429, "TOO_MANY_PENDING")


async def test_stream_passing_max_file_size_is_refused_midway(
    client: httpx.AsyncClient, kafka: str, names: Names
) -> None:
    """A body of unknown length passing max_file_size is refused as it streams: the
    registration is closed by Refused and Failed events and no object is left."""
    before = await objects(names)
    response = await client.post(
        "/api/v1/datafiles",
        params={"destination": "small", "target": "streamed.bin"},
        content=_stream(bytes(300)),
    )
    assert (response.status_code, response.json()["reason"]) == (413, "TOO_LARGE")
    registered = [
        e
        for _, _, e in await read_topic(kafka, names.topics.datafiles)
        if isinstance(e, DataFileRegistered) and e.target == "streamed.bin"
    ]
    assert len(registered) == 1
    events = await events_of(kafka, names.topics, registered[0].data_file_id)
    assert [type(e).__name__ for e in events] == [
        "DataFileRegistered",
        "DataFileRegistrationRefused",
        "DataFileRegistrationFailed",
    ]
    assert await objects(names) == before


async def test_data_user_basic_auth(client: httpx.AsyncClient, names: Names) -> None:
    """A data user with put on the destination may put (its hash in clear from an old event, or
    encrypted with the operator key); one without put is refused (403);
    a wrong password or no credentials at all is 401."""
    params = {"destination": "site-a", "target": "user/file.bin"}
    ok = await client.post(
        "/api/v1/datafiles", params=params, content=b"x", auth=("alice", "portal-secret"),
        headers={"Authorization": ""},
    )  # fmt: skip
    assert ok.status_code == 201, ok.text
    sealed = await client.post(
        "/api/v1/datafiles", params={**params, "target": "dave.bin"}, content=b"x",
        auth=("dave", "portal-secret"), headers={"Authorization": ""},
    )  # fmt: skip
    assert sealed.status_code == 201, sealed.text  # the hash decrypted with the operator key
    bob = await client.post(
        "/api/v1/datafiles", params={**params, "target": "bob.bin"}, content=b"x",
        auth=("bob", "portal-secret"), headers={"Authorization": ""},
    )  # fmt: skip
    assert (bob.status_code, bob.json()["reason"]) == (403, "NOT_PERMITTED")
    wrong = await client.post(
        "/api/v1/datafiles", params=params, content=b"x", auth=("alice", "nope"),
        headers={"Authorization": ""},
    )  # fmt: skip
    assert wrong.status_code == 401
    anonymous = await client.post(
        "/api/v1/datafiles", params=params, content=b"x", headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401
    bad_token = await client.post(
        "/api/v1/datafiles", params=params, content=b"x", headers={"Authorization": "Bearer x"}
    )
    assert bad_token.status_code == 401


async def test_a_viewer_token_cannot_put(
    client: httpx.AsyncClient, names: Names, kafka: str
) -> None:
    """A read-only (viewer) token's put is answered 403 and publishes nothing, while it may
    still read a data file back."""
    reader = TokenFile(names.tokens).create("reader", TokenRole.VIEWER)
    bearer = {"Authorization": f"Bearer {reader}"}
    params = {"destination": "site-a", "target": "viewer.bin"}
    refused = await client.post("/api/v1/datafiles", params=params, content=b"x", headers=bearer)
    assert (refused.status_code, refused.json()["field"]) == (403, "authorization")
    published = await read_topic(kafka, names.topics.datafiles)
    assert not [e for _, _, e in published if getattr(e, "target", None) == "viewer.bin"]
    stored = await client.post("/api/v1/datafiles", params=params, content=b"x")
    assert stored.status_code == 201, stored.text
    read = await client.get(f"/api/v1/datafiles/{stored.json()['data_file_id']}", headers=bearer)
    assert read.status_code == 200


async def test_options_may_come_as_headers(client: httpx.AsyncClient) -> None:
    """Options given as X-Ecpds-* headers are read like query parameters."""
    response = await client.post(
        "/api/v1/datafiles",
        headers={
            "X-Ecpds-Destination": "site-b",
            "X-Ecpds-Target": "hdr.bin",
            "X-Ecpds-Priority": "3",
        },
        content=b"h",
    )
    assert response.status_code == 201, response.text
    assert response.json()["transfers"][0]["priority"] == 3


async def test_openapi_document_covers_the_routes(client: httpx.AsyncClient) -> None:
    """The OpenAPI document lists the put and get routes with the put options."""
    doc = (await client.get("/api/v1/openapi.json")).json()
    assert set(doc["paths"]) == {"/api/v1/datafiles", "/api/v1/datafiles/{data_file_id}"}
    names = {p["name"] for p in doc["paths"]["/api/v1/datafiles"]["post"]["parameters"]}
    assert {"destination", "target", "priority", "lifetime", "delay", "at", "force"} <= names


def _env(dfid: str) -> Envelope:
    return Envelope(
        event_id=new_object_id(), occurred_at=datetime.now(UTC), source="test", correlation_id=dfid
    )


async def test_restart_recovers_and_still_refuses_duplicates(
    client: httpx.AsyncClient, kafka: str, settings: Settings, names: Names, publisher: Publisher
) -> None:
    """After a restart: a registration without Stored is marked failed and never queued, a
    stored file whose transfers were lost gets them queued, and duplicates are still refused;
    a registration acquisition has in flight is left to acquisition."""
    kept = await client.post(
        "/api/v1/datafiles", params={"destination": "site-b", "target": "kept.bin"}, content=b"k"
    )
    assert kept.status_code == 201
    orphan, half, acquired = new_object_id(), new_object_id(), new_object_id()
    expiry = datetime.now(UTC) + timedelta(days=1)
    for dfid, target, by in (
        (orphan, "orphan.bin", None),
        (half, "half.bin", None),
        (acquired, "acquired.bin", "acquisition/provider-1"),
    ):
        await publisher.publish(
            names.topics.datafiles,
            dfid,
            DataFileRegistered(
                envelope=_env(dfid), data_file_id=dfid, destination="site-b", target=target,
                transfer_group="default", expiry_time=expiry, requested_by=by,
            ),
        )  # fmt: skip
    store = LocalStore(names.store, durable=False)
    meta = await store.put(_stream(b"half"), ObjectSpec(name="site-b/half.bin", id=ObjectId(half)))
    await store.put(_stream(b"orphan"), ObjectSpec(name="o", id=ObjectId(orphan)))
    await publisher.publish(
        names.topics.datafiles,
        half,
        DataFileStored(
            envelope=_env(half), data_file_id=half, guid=meta.id, store=store.name,
            location=meta.id, size=meta.size,
            checksums=Checksums(adler32=meta.checksums.adler32),
            duration_ms=1,
        ),
    )  # fmt: skip
    async with running(settings, names.options()) as restarted:
        second = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(restarted)),
            base_url="http://ingest.test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        async with second:
            again = await second.post(
                "/api/v1/datafiles",
                params={"destination": "site-b", "target": "kept.bin"},
                content=b"other",
            )
            assert (again.status_code, again.json()["reason"]) == (409, "DUPLICATE")
            retry = await second.post(
                "/api/v1/datafiles",
                params={"destination": "site-b", "target": "orphan.bin"},
                content=b"o",
            )
            assert retry.status_code == 201  # the failed registration freed its key
    orphan_events = await events_of(kafka, names.topics, orphan)
    assert [type(e).__name__ for e in orphan_events] == [
        "DataFileRegistered",
        "DataFileRegistrationFailed",
    ]
    failed = orphan_events[1]
    assert isinstance(failed, DataFileRegistrationFailed)
    assert failed.message == "interrupted before storage"
    assert not await store.exists(ObjectId(orphan))
    acquired_events = await events_of(kafka, names.topics, acquired)
    assert [type(e).__name__ for e in acquired_events] == ["DataFileRegistered"]
    half_events = await events_of(kafka, names.topics, half)
    assert [type(e).__name__ for e in half_events] == [
        "DataFileRegistered",
        "DataFileStored",
        "TransferQueued",
    ]
    await store.close()


async def test_a_put_repeated_while_the_first_is_open_is_the_same_registration(
    client: httpx.AsyncClient,
) -> None:
    """A put of the same bytes under the same name, sent while the first put is still
    streaming (a client that gave up and retried), is answered 200 with the first's data file
    id once the first is stored: one registration, not a 409 nor a second file."""
    params = {"destination": "site-b", "target": "retried.bin"}

    async def slow() -> AsyncIterator[bytes]:
        for part in (PAYLOAD[:1000], PAYLOAD[1000:]):
            yield part
            await asyncio.sleep(0.3)

    first = asyncio.create_task(client.post("/api/v1/datafiles", params=params, content=slow()))
    await asyncio.sleep(0.1)  # the first is registered and streaming
    again = await client.post("/api/v1/datafiles", params=params, content=PAYLOAD)
    done = await first
    assert done.status_code == 201, done.text
    assert (again.status_code, again.json()["data_file_id"]) == (200, done.json()["data_file_id"])
    assert again.json()["checksums"]["md5"] == MD5
