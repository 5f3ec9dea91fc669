"""The ingest API's default upload cap (ECPDS_MAX_UPLOAD) and a data user's own cap: a put
over it is refused 413 from its Content-Length before a byte is read, or as soon as the
streamed count passes it, leaving no object; a destination's own max_file_size replaces the
default; and every answer carries the security headers."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from bus.config.secrets import hash_password
from bus.errors import ConfigurationError
from bus.events.config import PortalOperation
from bus.events.datafiles import DataFileRegistered
from bus.publisher import Publisher
from bus.settings import Settings
from bus.web import CSP
from producers.api.app import create_app
from producers.api.ingest import ApiState
from store.local import LocalStore
from tests.config import factories as f
from tests.ingest.conftest import TOKEN, Names, define, events_of, read_topic

pytestmark = pytest.mark.kafka

CAP = 200  # the default cap of these tests (ECPDS_MAX_UPLOAD), in bytes


@pytest.fixture(scope="module", autouse=True)
async def configured(stack: ApiState, publisher: Publisher, names: Names) -> None:
    await define(
        stack,
        publisher,
        names.config,
        f.destination("plain"),
        f.destination("roomy", max_file_size=1000),
        f.user(
            "carol",
            password_hash=hash_password("carol-secret"),
            destinations=("roomy",),
            operations=(PortalOperation.PUT,),
            properties={"max_file_size": "100"},
        ),
    )


@pytest.fixture(scope="module")
async def capped(stack: ApiState) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a default upload cap of ``CAP`` bytes."""
    app = create_app(dataclasses.replace(stack, max_upload=CAP))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://ingest.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


class Counted:
    """A body of ``chunks`` chunks of ``size`` bytes that counts what the server pulled."""

    def __init__(self, chunks: int, size: int) -> None:
        self.chunks, self.size, self.pulled = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += self.size
            yield b"x" * self.size


async def objects(names: Names) -> int:
    store = LocalStore(names.store, durable=False)
    try:
        return len(await store.list())
    finally:
        await store.close()


async def test_a_declared_size_over_the_default_cap_is_refused_unread(
    capped: httpx.AsyncClient, names: Names
) -> None:
    """A put announcing more than ECPDS_MAX_UPLOAD is refused 413 TOO_LARGE naming the
    setting, without reading the body or storing anything."""
    before = await objects(names)
    body = Counted(300, 1)
    answer = await capped.post(
        "/api/v1/datafiles",
        params={"destination": "plain", "target": "declared.bin"},
        content=body,
        headers={"Content-Length": "300"},
    )
    assert answer.status_code == 413, answer.text
    assert (answer.json()["reason"], answer.json()["field"]) == ("TOO_LARGE", "size")
    assert "ECPDS_MAX_UPLOAD" in answer.json()["message"]
    assert body.pulled == 0
    assert await objects(names) == before


async def test_a_stream_passing_the_default_cap_is_refused_midway(
    capped: httpx.AsyncClient, kafka: str, names: Names
) -> None:
    """A body of unknown length is refused 413 as soon as it passes the cap (no more than a
    chunk past it is read), the registration is closed refused and failed, and no object is
    left behind."""
    before = await objects(names)
    body = Counted(1000, 50)
    answer = await capped.post(
        "/api/v1/datafiles",
        params={"destination": "plain", "target": "streamed.bin"},
        content=body,
    )
    assert (answer.status_code, answer.json()["reason"]) == (413, "TOO_LARGE"), answer.text
    assert body.pulled <= CAP + 2 * 50
    registered = [
        e
        for _, _, e in await read_topic(kafka, names.topics.datafiles)
        if isinstance(e, DataFileRegistered) and e.target == "streamed.bin"
    ]
    assert len(registered) == 1
    assert answer.json()["data_file_id"] == registered[0].data_file_id
    events = await events_of(kafka, names.topics, registered[0].data_file_id)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "DataFileRegistered",
        "DataFileRegistrationFailed",
        "DataFileRegistrationRefused",
    ]
    assert await objects(names) == before


async def test_a_destinations_own_limit_replaces_the_default(capped: httpx.AsyncClient) -> None:
    """A destination with its own max_file_size takes files up to it, past the default."""
    params = {"destination": "roomy", "target": "big.bin"}
    answer = await capped.post("/api/v1/datafiles", params=params, content=b"x" * 500)
    assert answer.status_code == 201, answer.text


async def test_a_data_users_own_cap_applies(capped: httpx.AsyncClient) -> None:
    """A data user whose max_file_size property is set cannot put more, whatever the
    destination allows."""
    params = {"destination": "roomy", "target": "carol.bin"}
    auth = httpx.BasicAuth("carol", "carol-secret")
    answer = await capped.post(
        "/api/v1/datafiles", params=params, content=b"x" * 150, auth=auth,
        headers={"Authorization": ""},
    )  # fmt: skip
    assert answer.status_code == 413, answer.text
    assert "carol" in answer.json()["message"]
    small = await capped.post(
        "/api/v1/datafiles", params={**params, "target": "carol-small.bin"}, content=b"x" * 50,
        auth=auth, headers={"Authorization": ""},
    )  # fmt: skip
    assert small.status_code == 201, small.text


async def test_every_ingest_answer_carries_the_security_headers(
    capped: httpx.AsyncClient,
) -> None:
    """The put (accepted or refused), the data file read, the OpenAPI document and a 404 all
    carry the CSP, no framing, nosniff, same-origin referrers and no-store."""
    answers = [
        await capped.post(
            "/api/v1/datafiles", params={"destination": "plain", "target": "h.bin"}, content=b"x"
        ),
        await capped.post("/api/v1/datafiles", params={"destination": "nope", "target": "h"}),
        await capped.post("/api/v1/datafiles", headers={"Authorization": ""}),
        await capped.get("/api/v1/datafiles/no-such-file"),
        await capped.get("/api/v1/openapi.json"),
        await capped.get("/no/such/path"),
    ]
    for answer in answers:
        h = answer.headers
        where = f"{answer.request.url.path} {answer.status_code}"
        assert h.get("content-security-policy") == CSP, where
        assert h.get("x-frame-options") == "DENY", where
        assert h.get("x-content-type-options") == "nosniff", where
        assert h.get("referrer-policy") == "same-origin", where
        assert h.get("cache-control") == "no-store", where


def test_the_default_cap_is_a_setting() -> None:
    """ECPDS_MAX_UPLOAD takes a size (10 GiB when unset); a bad value is refused by name."""
    assert Settings.from_env({}).max_upload == 10 * 1024**3
    assert Settings.from_env({"ECPDS_MAX_UPLOAD": "5GiB"}).max_upload == 5 * 1024**3
    for bad in ("lots", "0"):
        with pytest.raises(ConfigurationError, match="ECPDS_MAX_UPLOAD"):
            Settings.from_env({"ECPDS_MAX_UPLOAD": bad})
