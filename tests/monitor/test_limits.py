"""The monitor's limits: bodies capped by route after the role check (never read for a caller
who may not act, never buffered past the cap), bad JSON answered 400 naming the field, actions
on unknown destinations, hosts or transfers answered 404 with nothing published, and the
security headers on every route."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from bus.web import CSP
from projections.monitor.app import MonitorConfig, create_app, routes
from tests.monitor.conftest import TOKEN, Monitor, csrf_of
from tests.monitor.test_api import requests_on

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

BEARER = {"Authorization": f"Bearer {TOKEN}"}
MiB = 1024 * 1024


@dataclass
class Sent:
    """What the app answered, and how many body bytes it pulled from the client."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    consumed: int = 0


async def call(
    app: ASGIApp,
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: int,
    chunk: int = MiB,
) -> Sent:
    """Send ``chunks`` chunks of ``chunk`` bytes to ``app`` straight through ASGI, counting
    what the app asks for (a body the app never reads is never produced)."""
    sent = Sent()
    given = 0

    async def receive() -> Message:
        nonlocal given
        if given >= chunks:
            await asyncio.sleep(3600)  # the client has nothing more; the app must not wait
        given += 1
        sent.consumed += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": given < chunks}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            sent.status = message["status"]
            sent.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            sent.body += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 20)
    return sent


@contextlib.asynccontextmanager
async def started(app: ASGIApp) -> AsyncIterator[ASGIApp]:
    """``app`` with its lifespan run (the state opened), in this process."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def send(message: Message) -> None:
        await outbox.put(message)

    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield app
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


@pytest.fixture
async def app(monitor: Monitor) -> AsyncIterator[ASGIApp]:
    """A second monitor app over the same read models and secrets, called in-process."""
    models = monitor.models
    config = MonitorConfig(
        dsn=models.dsn,
        bootstrap=models.bootstrap,
        secrets_dir=monitor.secrets_dir,
        schema=models.schema,
        transfers_topic=models.transfers_topic,
    )
    async with started(create_app(config)) as running:
        yield running


def session_of(client: httpx.AsyncClient) -> dict[str, str]:
    """The signed-in client's cookie and CSRF header, to replay through ASGI."""
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return {"cookie": cookie}


async def csrf_header(client: httpx.AsyncClient) -> dict[str, str]:
    page = await client.get("/")
    return {**session_of(client), "x-csrf-token": csrf_of(page.text)}


async def test_a_viewers_body_is_refused_403_unread(
    app: ASGIApp, viewer: httpx.AsyncClient
) -> None:
    """A viewer posting 100 MB to an operator action (JSON or form, with or without a
    Content-Length) is refused 403 before one byte of the body is read."""
    headers = await csrf_header(viewer)
    for path in ("/api/v1/destinations/dest-1/hold", "/destinations/dest-1/action"):
        for length in ({}, {"content-length": str(100 * MiB)}):
            sent = await call(app, "POST", path, {**headers, **length}, chunks=100)
            assert (sent.status, sent.consumed) == (403, 0), (path, length, sent.body)


async def test_an_oversized_body_is_refused_413_before_or_while_it_streams(
    app: ASGIApp, operator: httpx.AsyncClient
) -> None:
    """An operator's 200 MB body is refused 413: at once from its Content-Length, else as soon
    as the count passes the route's cap, so no more than a chunk past the cap is ever read."""
    form = await csrf_header(operator)
    cases = [
        ("/api/v1/destinations/dest-1/hold", BEARER),
        ("/api/v1/transfers/transfer-5/priority", BEARER),
        ("/destinations/dest-1/action", form),
        ("/login", form),
    ]
    for path, headers in cases:
        declared = await call(
            app, "POST", path, {**headers, "content-length": str(200 * MiB)}, chunks=200
        )
        assert (declared.status, declared.consumed) == (413, 0), (path, declared.body)
        streamed = await call(app, "POST", path, headers, chunks=200)
        assert streamed.status == 413, (path, streamed.body)
        assert streamed.consumed <= MiB, (path, streamed.consumed)
    nowhere = await call(app, "POST", "/no/such/route", {}, chunks=200)
    assert (nowhere.status, nowhere.consumed) == (404, 0)  # no route reads it


D1 = "/api/v1/destinations/dest-1"
T5 = "/api/v1/transfers/transfer-5"
BIG = b"1000000000000000000000"  # 22 digits


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/api/v1/destinations/dest-1/hold", b"[" * 5000 + b"]" * 5000, "body"),
        ("/api/v1/destinations/dest-1/hold", b"[1, 2]", "body"),
        ("/api/v1/destinations/dest-1/hold", b"{not json", "body"),
        ("/api/v1/destinations/dest-1/hold", b'{"reason": {"a": 1}}', "reason"),
        ("/api/v1/destinations/dest-1/hold", b'{"immediate": "yes"}', "immediate"),
        (f"{T5}/priority", b'{"priority": ' + BIG + b"}", "priority"),
        (f"{T5}/priority", b'{"priority": "' + BIG + b'"}', "priority"),
        ("/api/v1/transfers/transfer-5/priority", b'{"priority": 100}', "priority"),
        ("/api/v1/transfers/transfer-5/priority", b'{"priority": -1}', "priority"),
        ("/api/v1/transfers/transfer-5/priority", b'{"priority": {"p": 1}}', "priority"),
        ("/api/v1/transfers/transfer-5/priority", b'{"priority": true}', "priority"),
        ("/api/v1/transfers/transfer-5/extend", b'{"lifetime": "99999999999d"}', "lifetime"),
        ("/api/v1/transfers/transfer-5/extend", b'{"lifetime": ["2d"]}', "lifetime"),
        (f"{D1}/hosts/host-1/priority", b'{"priority": 2147483648}', "priority"),
        ("/api/v1/destinations/dest-1/nonsense", b"{}", "verb"),
    ],
)  # fmt: skip
async def test_bad_json_is_answered_400_naming_the_field(
    monitor: Monitor, path: str, body: bytes, named: str
) -> None:
    """Malformed, too deep, wrongly typed or out-of-range JSON is a 400 naming the field
    (not a 500 from RecursionError, TypeError or OverflowError), and nothing is published."""
    before = (await requests_on(monitor.models))[1]
    async with httpx.AsyncClient(base_url=monitor.url, headers=BEARER, timeout=20) as script:
        answer = await script.post(path, content=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == named, answer.text
    assert named in answer.json()["message"] or named == "body", answer.text
    assert (await requests_on(monitor.models))[1] == before


async def test_deep_nesting_past_the_cap_is_413_not_500(monitor: Monitor) -> None:
    """100k-deep nesting (which made the old parser recurse to death) is refused by size."""
    async with httpx.AsyncClient(base_url=monitor.url, headers=BEARER, timeout=20) as script:
        answer = await script.post(
            "/api/v1/destinations/dest-1/hold", content=b"[" * 100_000 + b"]" * 100_000
        )
    assert (answer.status_code, answer.json()["field"]) == (413, "body")


async def test_unknown_targets_are_404_and_nothing_is_published(
    monitor: Monitor, operator: httpx.AsyncClient
) -> None:
    """Actions on a destination, a host of a destination or a transfer that the read models do
    not have are answered 404, through the API and the forms, and the requests topic is
    unchanged."""
    before = (await requests_on(monitor.models))[1]
    async with httpx.AsyncClient(base_url=monitor.url, headers=BEARER, timeout=20) as script:
        for path in (
            "/api/v1/destinations/no-such-dest/hold",
            "/api/v1/destinations/no-such-dest/hosts/host-1/off",
            "/api/v1/destinations/dest-1/hosts/no-such-host/off",
            "/api/v1/destinations/dest-1/hosts/host-2/on",  # a host of another destination
            "/api/v1/transfers/no-such-transfer/hold",
        ):
            answer = await script.post(path, json={})
            assert answer.status_code == 404, (path, answer.text)
    csrf = csrf_of((await operator.get("/")).text)
    for path, form in (
        ("/destinations/no-such-dest/action", {"verb": "hold"}),
        ("/destinations/dest-1/action", {"verb": "host-off", "host": "no-such-host"}),
        ("/transfers/no-such-transfer/action", {"verb": "hold"}),
    ):
        answer = await operator.post(path, data={**form, "csrf": csrf})
        assert answer.status_code == 404, (path, answer.text)
    assert (await requests_on(monitor.models))[1] == before


def _paths() -> list[tuple[str, str]]:
    """Every route of the monitor (method, a concrete path), from the app's own route list."""
    values = {
        "name": "dest-1",
        "transfer_id": "transfer-5",
        "data_file_id": "no-such-file",
        "verb": "hold",
        "host": "host-1",
        "switch": "off",
        "status": "expected",
    }
    found = []
    for route in routes(object()):  # type: ignore[arg-type]
        if not isinstance(route, Route):
            continue
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m[1]], route.path)
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                found.append((method, path))
    return found


def _secured(answer: httpx.Response, cacheable: bool = False) -> None:
    h = answer.headers
    where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    assert h.get("content-security-policy") == CSP, where
    assert "frame-ancestors 'none'" in CSP
    assert "'unsafe-inline'" not in CSP
    assert h.get("x-frame-options") == "DENY", where
    assert h.get("x-content-type-options") == "nosniff", where
    assert h.get("referrer-policy") == "same-origin", where
    assert "server" not in h, where
    if not cacheable:
        assert h.get("cache-control") == "no-store", where


async def test_every_route_answers_with_the_security_headers(
    monitor: Monitor, operator: httpx.AsyncClient
) -> None:
    """Pages, JSON, actions, metrics, static assets, the live stream, redirects and errors all
    carry the CSP, no framing, nosniff, same-origin referrers, no-store (but static) and no
    server banner, whether signed in or not."""
    paths = _paths()
    assert len(paths) > 25
    async with httpx.AsyncClient(base_url=monitor.url, timeout=20) as anonymous:
        for client in (operator, anonymous):
            for method, path in paths:
                if path == "/live":
                    continue  # a stream: below
                answer = await client.request(method, path)
                _secured(answer, cacheable=path.startswith("/static/"))
            _secured(await client.get("/no/such/page"))
            _secured(await client.get("/static/monitor.js"), cacheable=True)
            _secured(await client.get("/static/monitor.css"), cacheable=True)
    async with operator.stream("GET", "/live") as live:
        assert live.status_code == 200
        _secured(live)


async def test_pages_have_no_inline_script_or_style(operator: httpx.AsyncClient) -> None:
    """No page carries an inline script, event handler attribute or style: the CSP allows
    only the monitor's own files."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)|\son[a-z]+\s*=|<style|\sstyle\s*=", re.I)
    for method, path in _paths():
        if method == "GET" and not path.startswith(("/api/", "/metrics", "/live")):
            page = await operator.get(path)
            assert not inline.search(page.text), (path, inline.search(page.text))
