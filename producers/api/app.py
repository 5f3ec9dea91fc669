"""The ingest routes of the REST API (Starlette): put a data file, read one back, OpenAPI.

``routes(state)`` returns the routes so the lead can mount them beside the monitor in one web
server; ``create_app(state)`` is a standalone app around them, with ``POST /api/v1/datafiles``
served by a lean ASGI front (``producers.api.fast``) that answers exactly as the route does.
Both fronts are wiring only: what an endpoint answers is decided in ``producers.api.ingest``.
Every answer, the put's included, carries ``bus.web.SecureHeaders``' headers.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bus.web import SecureHeaders
from producers.api import openapi, openecpds
from producers.api.fast import IngestFront
from producers.api.ingest import DATAFILES_PATH, Answer, ApiState, datafile, put


def response(answer: Answer) -> Response:
    """The Starlette response of an ``Answer``."""
    headers = dict(answer.headers) if answer.headers else None
    return Response(answer.body, answer.status, headers, media_type="application/json")


def routes(state: ApiState) -> list[Route]:
    """The ingest routes, to mount in any Starlette app."""

    async def put_datafile(request: Request) -> Response:
        client = request.client.host if request.client else None
        return response(
            await put(state, request.query_params, request.headers, request.stream(), client)
        )

    async def get_datafile(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        client = request.client.host if request.client else None
        data_file_id = request.path_params["data_file_id"]
        return response(await datafile(state, authorization, data_file_id, client))

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi.document())

    return [
        Route(DATAFILES_PATH, put_datafile, methods=["POST"]),
        Route("/api/v1/datafiles/{data_file_id}", get_datafile, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
        *openecpds.routes(state),  # OpenECPDS's REST v1, over the same functions
    ]


def create_app(state: ApiState, **kwargs: Any) -> ASGIApp:
    """The ingest routes as an ASGI app: ``POST /api/v1/datafiles`` by the lean front, the
    rest by a Starlette app around ``routes`` (``kwargs`` go to ``Starlette``), every answer
    with the security headers."""
    return SecureHeaders(IngestFront(state, Starlette(routes=routes(state), **kwargs)))


__all__ = ["ApiState", "create_app", "response", "routes"]
