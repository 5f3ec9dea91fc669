"""The web servers' shared guards (``bus.web``): a body capped at the app's first read (from
its Content-Length, or as it streams) and never pulled past the cap; the security headers on
every answer, replacing the app's own, with ``no-store`` outside ``/static/``."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bus.web import CSP, BodyLimit, SecureHeaders, read_body

CAP = 1000


async def whole(request: Request) -> Response:
    """Reads the body without a cap of its own (what ``BodyLimit`` guards against)."""
    return PlainTextResponse(str(len(await request.body())))


async def capped(request: Request) -> Response:
    return PlainTextResponse(str(len(await read_body(request, 100))))


async def unread(request: Request) -> Response:
    return PlainTextResponse(
        "refused", status_code=403, headers={"Server": "x", "X-Frame-Options": "ALLOW"}
    )


APP = SecureHeaders(
    Starlette(
        routes=[
            Route("/whole", whole, methods=["POST"]),
            Route("/capped", capped, methods=["POST"]),
            Route("/unread", unread, methods=["POST"]),
            Route("/static/x.css", unread, methods=["GET"]),
        ],
        middleware=[Middleware(BodyLimit, cap=CAP)],
    )
)


class Counted:
    """A body of ``chunks`` chunks of 100 bytes that counts what the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.chunks, self.pulled = chunks, 0

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for _ in range(self.chunks):
            self.pulled += 100
            yield b"x" * 100


async def post(path: str, body: Counted, declared: bool) -> httpx.Response:
    headers = {"Content-Length": str(body.chunks * 100)} if declared else {}
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post(path, content=body, headers=headers)


async def test_a_body_is_capped_at_the_first_read_and_never_pulled_past_the_cap() -> None:
    """Over the app's cap (or a route's own), a declared body is refused 413 unread and a
    streamed one as soon as it passes; within it, the body arrives whole; a route that does not
    read answers first, unread."""
    for path, cap in (("/whole", CAP), ("/capped", 100)):
        declared = Counted(50)
        answer = await post(path, declared, declared=True)
        assert (answer.status_code, declared.pulled) == (413, 0), path
        assert answer.json()["field"] == "body"
        streamed = Counted(50)
        answer = await post(path, streamed, declared=False)
        assert answer.status_code == 413, path
        assert streamed.pulled <= cap + 100, path
    fits = Counted(10)
    assert (await post("/whole", fits, declared=False)).text == "1000"
    refused = Counted(50)
    answer = await post("/unread", refused, declared=True)
    assert (answer.status_code, refused.pulled) == (403, 0)


async def test_security_headers_replace_the_apps_own() -> None:
    """Every answer gets the CSP, DENY, nosniff and same-origin (the app's own values
    replaced, its ``server`` header dropped), and ``no-store`` except under /static/."""
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.post("/unread")
        asset = await client.get("/static/x.css")
        missing = await client.get("/nowhere")
    for a in (answer, asset, missing):
        assert a.headers["content-security-policy"] == CSP
        assert a.headers.get_list("x-frame-options") == ["DENY"]
        assert a.headers["x-content-type-options"] == "nosniff"
        assert a.headers["referrer-policy"] == "same-origin"
        assert "server" not in a.headers
    assert answer.headers["cache-control"] == missing.headers["cache-control"] == "no-store"
    assert "cache-control" not in asset.headers
