"""The monitor's sign-in against an attacker on the same machine: brute force ends in a ban
(and events), parallel sign-ins do not stall other requests, unknown and known logins cost the
same, and a session ends at sign-out, at a password change and at a role change."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bus.config.secrets import hash_password
from bus.defender import Policy, Scope
from bus.events.portal import SignInBanned, SignInFailed
from projections.monitor.auth import Sessions
from tests.ingest.conftest import read_topic
from tests.monitor.conftest import ReadModels, csrf_of, monitor_config, serve, sign_in

PASSWORD = "the-right-password"
USERS = ("target1", "timing1", "session1", "session2", "session3")


@dataclass(frozen=True)
class Guarded:
    """A monitor of its own (its bans must not reach the shared one), with its portal topic."""

    url: str
    secrets_dir: Path
    portal_topic: str


@pytest.fixture(scope="module")
async def guarded(
    read_models: ReadModels, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Guarded]:
    """Every test client here comes from 127.0.0.1, so the address threshold is out of reach
    and the account bans are what the tests see (address bans: tests/bus/test_defender.py)."""
    secrets_dir = tmp_path_factory.mktemp("guarded-secrets")
    topic = f"{read_models.prefix}.portal"
    config = monitor_config(
        read_models, secrets_dir, portal_topic=topic, defender=Policy(address_threshold=100_000)
    )
    async with serve(config) as url:
        with (secrets_dir / "web-users").open("a") as out:
            for login in USERS:
                out.write(f"{login}:operator:{hash_password(PASSWORD)}\n")
        yield Guarded(url, secrets_dir, topic)


@pytest.mark.kafka
@pytest.mark.postgres
async def test_brute_force_bans_the_account_and_the_right_password_waits(
    guarded: Guarded, kafka: str
) -> None:
    """50 wrong passwords: 401 until the account's score reaches the threshold (8 failures of
    2 points against 15), then 429 with Retry-After and no check at all; the right password is
    refused while banned; each failure and the ban are events on the portal topic."""
    async with httpx.AsyncClient(base_url=guarded.url, timeout=30) as client:
        answers = [(await sign_in(client, "target1", f"guess-{i}")) for i in range(50)]
        right = await sign_in(client, "target1", PASSWORD)
    statuses = [a.status_code for a in answers]
    assert statuses == [401] * 8 + [429] * 42
    retry_after = int(answers[-1].headers["retry-after"])
    assert 1700 < retry_after <= 1800
    assert "Too many failed sign-ins" in answers[-1].text
    assert (right.status_code, right.headers.get("retry-after") is not None) == (429, True)

    failed: list[SignInFailed] = []
    bans: list[SignInBanned] = []
    for _ in range(100):
        events = [e for _, _, e in await read_topic(kafka, guarded.portal_topic)]
        failed = [e for e in events if isinstance(e, SignInFailed) and e.login == "target1"]
        bans = [e for e in events if isinstance(e, SignInBanned) and e.login == "target1"]
        if len(failed) >= 8 and bans:
            break
        await asyncio.sleep(0.2)
    assert len(failed) == 8
    assert {(e.door, e.client_address) for e in failed} == {("monitor", "127.0.0.1")}
    assert [(b.scope, b.banned, b.offence) for b in bans] == [(Scope.ACCOUNT, "target1", 1)]


@pytest.mark.kafka
@pytest.mark.postgres
async def test_parallel_sign_ins_keep_the_monitor_answering(guarded: Guarded) -> None:
    """While 40 wrong sign-ins run at once, a cheap request keeps answering: p95 < 300 ms
    (argon2 runs in a small pool off the event loop; before, one such request took 4.3 s)."""
    async with httpx.AsyncClient(base_url=guarded.url, timeout=60) as client:
        forms = [(await client.get("/login")).text for _ in range(40)]
        tokens = [csrf_of(form) for form in forms]

        async def attempt(i: int) -> int:
            data = {"login": f"nobody-{i}", "password": "x", "csrf": tokens[i], "next": "/"}
            return (await client.post("/login", data=data)).status_code

        storm = asyncio.gather(*(attempt(i) for i in range(40)))
        latencies: list[float] = []
        while not storm.done() or len(latencies) < 20:
            started = time.perf_counter()
            answer = await client.get("/static/monitor.css")
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200
            await asyncio.sleep(0.01)
        statuses = await storm
    assert statuses == [401] * 40
    median = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(f"\nduring 40 parallel sign-ins: {len(latencies)} requests, "
          f"median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")  # fmt: skip
    assert p95 < 0.3


@pytest.mark.kafka
@pytest.mark.postgres
async def test_unknown_and_known_logins_cost_the_same(guarded: Guarded) -> None:
    """A wrong password for a known login and any password for an unknown one take about the
    same time (an unknown login is checked against a dummy hash), so timing names no login."""
    known: list[float] = []
    unknown: list[float] = []
    async with httpx.AsyncClient(base_url=guarded.url, timeout=30) as client:
        for i in range(6):  # 6 x 2 points stays under the account threshold of 15
            for login, times in (("timing1", known), (f"ghost-{i}", unknown)):
                token = csrf_of((await client.get("/login")).text)
                data = {"login": login, "password": f"wrong-{i}", "csrf": token, "next": "/"}
                started = time.perf_counter()
                answer = await client.post("/login", data=data)
                times.append(time.perf_counter() - started)
                assert answer.status_code == 401
    ratio = statistics.median(known) / statistics.median(unknown)
    print(f"\nknown {statistics.median(known) * 1000:.1f} ms, "
          f"unknown {statistics.median(unknown) * 1000:.1f} ms, ratio {ratio:.2f}")  # fmt: skip
    assert 0.5 < ratio < 2.0


@contextlib.asynccontextmanager
async def _signed_in(guarded: Guarded, login: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=guarded.url, timeout=30) as client:
        answer = await sign_in(client, login, PASSWORD)
        assert answer.status_code == 303
        assert (await client.get("/")).status_code == 200
        yield client


def _replay(guarded: Guarded, cookies: httpx.Cookies) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=guarded.url, timeout=30, cookies=cookies)


@pytest.mark.kafka
@pytest.mark.postgres
async def test_a_signed_out_cookie_is_refused(guarded: Guarded) -> None:
    """A copy of the session cookie taken before sign-out opens nothing after it."""
    async with _signed_in(guarded, "session1") as client:
        copied = httpx.Cookies(client.cookies)
        page = await client.get("/")
        out = await client.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
    async with _replay(guarded, copied) as replay:
        answer = await replay.get("/")
        assert (answer.status_code, answer.headers["location"]) == (303, "/login?next=/")
        assert (await replay.get("/api/v1/destinations")).status_code == 401


def _rewrite(secrets_dir: Path, login: str, role: str, password: str) -> None:
    path = secrets_dir / "web-users"
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith(f"{login}:")]
    lines.append(f"{login}:{role}:{hash_password(password)}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.kafka
@pytest.mark.postgres
async def test_a_cookie_from_before_a_password_change_is_refused(guarded: Guarded) -> None:
    """A password change ends the user's sessions at once; the new password signs in."""
    async with _signed_in(guarded, "session2") as client:
        _rewrite(guarded.secrets_dir, "session2", "operator", "a-new-password")
        assert (await client.get("/")).status_code == 303
    async with httpx.AsyncClient(base_url=guarded.url, timeout=30) as fresh:
        assert (await sign_in(fresh, "session2", "a-new-password")).status_code == 303


@pytest.mark.kafka
@pytest.mark.postgres
async def test_a_role_change_ends_the_session(guarded: Guarded) -> None:
    """An operator made a viewer must sign in again (the session held the old role)."""
    async with _signed_in(guarded, "session3") as client:
        path = guarded.secrets_dir / "web-users"
        text = path.read_text()
        path.write_text(text.replace("session3:operator:", "session3:viewer:"))
        assert (await client.get("/")).status_code == 303


def test_sessions_end_when_idle_or_old() -> None:
    """A session is good while its stamp holds, used within ``idle``, begun within ``max_age``."""
    rules = Sessions(idle=60, max_age=600)
    session: dict[str, object] = {"stamp": "s", "begun": 1000, "seen": 1500}
    assert rules.valid(session, "s", 1550)
    assert not rules.valid(session, "s", 1561)  # idle for 61 s
    assert not rules.valid({**session, "seen": 1590}, "s", 1600)  # 600 s since sign-in
    assert not rules.valid(session, "other", 1550)  # password, role or epoch changed
    assert not rules.valid(session, None, 1550)  # user removed
    assert not rules.valid({"stamp": "s"}, "s", 1550)  # a cookie from before versioning
