"""The ingest API's sign-in defender against the real Kafka: brute force on a data user's
password ends in a ban (429 with Retry-After, and events), the right password is refused while
banned, a banned address is refused even with a good token, and unknown logins cost as much
as known ones."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import pytest

from bus.defender import Scope
from bus.events.config import PortalOperation
from bus.events.portal import SignInAttempt, SignInBanned, SignInFailed
from bus.publisher import Publisher
from producers.api.app import create_app
from producers.api.ingest import ApiState
from tests.config import factories as f
from tests.ingest.conftest import TOKEN, Names, define, read_topic

pytestmark = pytest.mark.kafka

PARAMS = {"destination": "guarded", "target": "x.bin"}


@pytest.fixture(scope="module", autouse=True)
async def configured(stack: ApiState, publisher: Publisher, names: Names) -> None:
    await define(
        stack,
        publisher,
        names.config,
        f.destination("guarded"),
        f.user("carol", destinations=("guarded",), operations=(PortalOperation.PUT,)),
        f.user("dave", destinations=("guarded",), operations=(PortalOperation.PUT,)),
    )


def _client(stack: ApiState, address: str) -> httpx.AsyncClient:
    """A client seen by the API as coming from ``address`` (each test its own: bans stay put)."""
    transport = httpx.ASGITransport(app=create_app(stack), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://ingest.test", timeout=60)


async def _events(kafka: str, names: Names, login: str, want: int) -> list[object]:
    found: list[object] = []
    for _ in range(100):
        found = [
            e
            for _, _, e in await read_topic(kafka, names.portal)
            if isinstance(e, (SignInFailed, SignInBanned)) and e.login == login
        ]
        if len(found) >= want:
            break
        await asyncio.sleep(0.2)
    return found


async def test_brute_force_on_basic_auth_bans_the_account(
    stack: ApiState, names: Names, kafka: str
) -> None:
    """20 wrong passwords for carol: 401 for the first 8 (16 points against 15), then 429 with
    Retry-After unchecked; her right password is refused while banned, from another address
    too; each failure and both bans (her account, that address) are events."""
    async with _client(stack, "10.20.0.1") as client:
        statuses = []
        for i in range(20):
            answer = await client.post(
                "/api/v1/datafiles", params=PARAMS, content=b"x", auth=("carol", f"guess-{i}")
            )
            statuses.append(answer.status_code)
        assert statuses == [401] * 8 + [429] * 12
        assert 1700 < int(answer.headers["retry-after"]) <= 1800
        assert answer.json()["field"] == "authorization"
    async with _client(stack, "10.20.0.2") as elsewhere:
        right = await elsewhere.post(
            "/api/v1/datafiles", params=PARAMS, content=b"x", auth=("carol", "portal-secret")
        )
        assert right.status_code == 429
    events = await _events(kafka, names, "carol", 10)  # 8 failures and 2 bans
    failed = [e for e in events if isinstance(e, SignInFailed)]
    bans = [e for e in events if isinstance(e, SignInBanned)]
    assert {(e.door, e.attempt, e.client_address) for e in failed} == {
        ("api", SignInAttempt.PASSWORD, "10.20.0.1")
    }
    assert len(failed) == 8
    # the address reached its threshold with the same eighth failure
    assert {(b.scope, b.banned) for b in bans} == {
        (Scope.ACCOUNT, "carol"),
        (Scope.ADDRESS, "10.20.0.1"),
    }


async def test_a_banned_address_is_refused_even_with_a_good_token(stack: ApiState) -> None:
    """Eight unknown tokens from one address (16 points) ban it: its next call, with the right
    token, is 429; another address with the same token is served."""
    async with _client(stack, "10.30.0.1") as client:
        for i in range(8):
            answer = await client.get(
                "/api/v1/datafiles/nothing", headers={"Authorization": f"Bearer wrong-{i}"}
            )
            assert answer.status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        banned = await client.get("/api/v1/datafiles/nothing", headers=good)
        assert banned.status_code == 429
    async with _client(stack, "10.30.0.2") as other:
        served = await other.get("/api/v1/datafiles/nothing", headers=good)
        assert served.status_code == 404


async def test_unknown_and_known_logins_cost_the_same(stack: ApiState) -> None:
    """A wrong password for dave and any password for a login that does not exist take about
    the same time, so timing names no login (before: ~100x apart)."""
    known: list[float] = []
    unknown: list[float] = []
    for i in range(6):  # dave: 6 x 2 points, each address 2 x 2: under every threshold
        async with _client(stack, f"10.40.{i}.1") as client:
            for login, times in (("dave", known), (f"ghost-{i}", unknown)):
                started = time.perf_counter()
                answer = await client.post(
                    "/api/v1/datafiles", params=PARAMS, content=b"x", auth=(login, f"bad-{i}")
                )
                times.append(time.perf_counter() - started)
                assert answer.status_code == 401
    ratio = statistics.median(known) / statistics.median(unknown)
    print(f"\napi: known {statistics.median(known) * 1000:.1f} ms, "
          f"unknown {statistics.median(unknown) * 1000:.1f} ms, ratio {ratio:.2f}")  # fmt: skip
    assert 0.5 < ratio < 2.0
