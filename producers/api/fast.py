"""A lean ASGI front for the hot endpoint: ``POST /api/v1/datafiles`` without Starlette's layers.

Every other request goes to the Starlette app behind it. The put is the same function the
Starlette route calls (``producers.api.ingest.put``): same authentication, refusals, events and
answers, byte for byte. Starlette's routing, middleware stack, ``Request``/``Headers``/
``QueryParams`` objects and response classes cost the put path about a tenth of the API's CPU
per file; here the scope is read directly and the answer sent as two ASGI messages.

The body is streamed from ``receive`` as it arrives (never held whole); a client that goes
away mid-body ends the stream with ``ClientDisconnect``, as Starlette's ``Request.stream`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from producers.api.ingest import DATAFILES_PATH, ApiState, put

_JSON = (b"content-type", b"application/json")


class IngestFront:
    """Serves ``POST /api/v1/datafiles`` itself and hands everything else to ``fallback``."""

    def __init__(self, state: ApiState, fallback: ASGIApp) -> None:
        self.state = state
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == DATAFILES_PATH
        ):
            await self._put(scope, receive, send)
        else:
            await self.fallback(scope, receive, send)

    async def _put(self, scope: Scope, receive: Receive, send: Send) -> None:
        # the last value wins for a repeated name, as in Starlette's QueryParams.get
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        # the first value wins for a repeated header, as in Starlette's Headers.get
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        peer = scope.get("client")
        client = peer[0] if peer else None
        answer = await put(self.state, query, headers, _body(receive), client)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-length", str(len(answer.body)).encode()),
                    _JSON,
                    *((k.lower().encode(), v.encode()) for k, v in answer.headers),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


__all__ = ["IngestFront"]
