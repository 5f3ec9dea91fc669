"""What every ecpds web server sends and refuses: security headers and request-body caps.

Rules kept here (the monitor, the ingest API and, later, the portal's web door share them):

- every answer carries a strict Content-Security-Policy (scripts, styles and everything else
  only from the server itself, no inline script, no framing), ``X-Frame-Options: DENY``,
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``; every answer
  outside ``/static/`` is ``Cache-Control: no-store`` (answers are per user and signed-in);
  a ``server`` header set by the application is dropped (uvicorn's own banner is turned off
  by ``UVICORN_OPTIONS``);
- a request body is capped before it is read: a ``Content-Length`` over the cap is answered
  413 when the app first reads (so a route's own 401/403 comes first), and a body streamed
  without one is counted as it arrives and refused as soon as it passes the cap
  (``read_body`` for one route, ``BodyLimit`` around a whole app), so a body is never
  buffered past its cap.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
NO_STORE = (b"cache-control", b"no-store")
CACHEABLE_PREFIX = "/static/"  # assets only: every other answer is per user
UVICORN_OPTIONS: dict[str, Any] = {"server_header": False}  # no ``server: uvicorn`` banner
_REPLACED = {name for name, _ in SECURITY_HEADERS} | {b"cache-control", b"server"}


class BodyTooLarge(Exception):
    """A request body passed its route's cap (answered 413)."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"the request body is larger than {cap} bytes")
        self.cap = cap


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (None when absent or not a number)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else None
    return None


async def read_body(request: Request, cap: int) -> bytes:
    """The request's body, refused with ``BodyTooLarge`` from its ``Content-Length`` or as soon
    as the bytes received pass ``cap``; later ``request.form()``/``json()`` reuse it."""
    length = declared_length(request.scope)
    if length is not None and length > cap:
        raise BodyTooLarge(cap)
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > cap:
            raise BodyTooLarge(cap)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body
    return body


def too_large_answer(cap: int) -> tuple[int, bytes]:
    """The 413 answer's status and JSON body."""
    message = f"the request body is larger than the {cap} bytes this route accepts"
    return 413, orjson.dumps({"status": "error", "field": "body", "message": message})


class BodyLimit:
    """Caps every request body of ``app`` at ``cap`` bytes (413 before or while it streams).

    It must sit inside the framework's error handling (in Starlette: a ``Middleware`` of the
    app), or the framework answers the refusal 500 before this can answer 413."""

    def __init__(self, app: ASGIApp, cap: int) -> None:
        self.app = app
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # checked at the app's first read, not before: a route refuses a caller who may not
        # send a body (401/403) before any size question arises
        length = declared_length(scope)
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            if length is not None and length > self.cap:
                raise BodyTooLarge(self.cap)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.cap:
                    raise BodyTooLarge(self.cap)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await _send_too_large(send, self.cap)


async def _send_too_large(send: Send, cap: int) -> None:
    status, body = too_large_answer(cap)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecureHeaders:
    """Adds the security headers (and ``no-store`` outside ``/static/``) to every answer of
    ``app``, replacing any the app set, and drops an application ``server`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope.get("path", "")).startswith(CACHEABLE_PREFIX)

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in _REPLACED]
                message["headers"] = [
                    *kept,
                    *SECURITY_HEADERS,
                    *(() if cacheable else (NO_STORE,)),
                ]
            await send(message)

        await self.app(scope, receive, sending)


__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "UVICORN_OPTIONS",
    "BodyLimit",
    "BodyTooLarge",
    "SecureHeaders",
    "read_body",
    "too_large_answer",
]
