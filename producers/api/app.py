"""The ingest routes of the REST API (Starlette): put a data file, read one back, OpenAPI.

``routes(state)`` returns the routes so the lead can mount them beside the monitor in one web
server; ``create_app(state)`` is a standalone app around them, with ``POST /api/v1/datafiles``
served by a lean ASGI front (``producers.api.fast``) that answers exactly as the route does.
Every refusal answers 4xx with ``{"status": "error", "field": ..., "reason": ...,
"message": ...}`` and is an event (``DataFileRegistrationRefused``); a request without valid
credentials is answered 401 and is not an event (it is not a submission). The body of
``POST /api/v1/datafiles`` is streamed straight into the store: it is never held whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bus.config.source import ConfigSource
from bus.events.datafiles import RefusalReason
from bus.events.transfers import TransferQueued
from producers.api import openapi, params
from producers.api.auth import Authenticator, Principal
from producers.ingest.core import Refused
from producers.ingest.index import TransferEntry
from producers.ingest.service import Failure, IngestService, Receipt

STATUS: Mapping[RefusalReason, int] = {
    RefusalReason.INVALID: 400,
    RefusalReason.ALREADY_EXPIRED: 400,
    RefusalReason.NOT_PERMITTED: 403,
    RefusalReason.UNKNOWN_DESTINATION: 404,
    RefusalReason.DUPLICATE: 409,
    RefusalReason.TOO_LARGE: 413,
    RefusalReason.TOO_MANY_PENDING: 429,
}
DATAFILES_PATH = "/api/v1/datafiles"
_CHALLENGE = (("WWW-Authenticate", 'Bearer, Basic realm="ecpds"'),)


@dataclass(frozen=True, slots=True)
class ApiState:
    """What the routes need: the ingest service, the live configuration and the authenticator."""

    service: IngestService
    config: ConfigSource
    auth: Authenticator


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer: status, encoded body and extra headers (the same for every front)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> Response:
        headers = dict(self.headers) if self.headers else None
        return Response(self.body, self.status, headers, media_type="application/json")


def answer_error(status: int, field: str, message: str, **extra: Any) -> Answer:
    body = {"status": "error", "field": field, "message": message, **extra}
    return Answer(status, orjson.dumps(body), _CHALLENGE if status == 401 else ())


def error(status: int, field: str, message: str, **extra: Any) -> Response:
    return answer_error(status, field, message, **extra).response()


def refusal(r: Refused, data_file_id: str | None = None) -> Answer:
    extra = {"reason": r.reason.value}
    if data_file_id:
        extra["data_file_id"] = data_file_id
    return answer_error(STATUS.get(r.reason, 400), r.field, r.message, **extra)


def _queued(q: TransferQueued) -> dict[str, Any]:
    return {
        "transfer_id": q.transfer_id,
        "destination": q.destination,
        "status": q.status.value,
        "priority": q.priority,
        "queue_time": q.queue_time.isoformat(),
        "expiry_time": q.expiry_time.isoformat(),
        "alias_of": q.alias_of,
    }


def _entry(t: TransferEntry) -> dict[str, Any]:
    return {
        "transfer_id": t.transfer_id,
        "destination": t.destination,
        "status": t.status.value,
        "priority": t.priority,
        "queue_time": t.queue_time.isoformat(),
        "expiry_time": t.expiry_time.isoformat(),
        "alias_of": t.alias_of,
    }


async def put(
    state: ApiState,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: AsyncIterable[bytes],
) -> Answer:
    """``POST /api/v1/datafiles``, whatever serves it: ``headers`` by lower-case name."""
    principal = await state.auth.principal(headers.get("authorization"), state.config.view)
    if principal is None:
        return answer_error(401, "authorization", "a Bearer token or data user credentials needed")
    raw = params.options(query, headers)
    length = headers.get("content-length")
    size = int(length) if length and length.isdigit() else None
    parsed = params.submission(raw, size=size, user=principal.user, requested_by=principal.label)
    if isinstance(parsed, Refused):
        await state.service.refuse(raw.get("destination", ""), raw.get("target", ""), parsed)
        return refusal(parsed)
    outcome = await state.service.submit(parsed, body)
    if isinstance(outcome, Refused):
        return refusal(outcome)
    if isinstance(outcome, Failure):
        return answer_error(
            503 if outcome.retriable else 500,
            "body" if outcome.stage == "receive" else "store",
            f"the file was not stored ({outcome.stage}): {outcome.message}",
            data_file_id=outcome.data_file_id,
        )
    assert isinstance(outcome, Receipt)
    sums = outcome.checksums
    return Answer(
        201,
        orjson.dumps(
            {
                "status": "ok",
                "data_file_id": outcome.data_file_id,
                "file_instance": outcome.file_instance,
                "size": outcome.size,
                "checksums": {"adler32": sums.adler32, "md5": sums.md5},
                "transfers": [_queued(q) for q in outcome.transfers],
            }
        ),
    )


def routes(state: ApiState) -> list[Route]:
    """The ingest routes, to mount in any Starlette app."""

    async def who(request: Request) -> Principal | None:
        return await state.auth.principal(request.headers.get("authorization"), state.config.view)

    async def put_datafile(request: Request) -> Response:
        answer = await put(state, request.query_params, request.headers, request.stream())
        return answer.response()

    async def get_datafile(request: Request) -> Response:
        principal = await who(request)
        if principal is None:
            return error(401, "authorization", "a Bearer token or data user credentials needed")
        dfid = request.path_params["data_file_id"]
        index = state.service.index
        entry = index.file(dfid)
        visible = entry is not None and (
            principal.user is None
            or principal.user in state.config.view.users_for(entry.registered.destination)
        )
        if entry is None or not visible:
            return error(404, "data_file_id", f"no data file {dfid!r}")
        r, stored = entry.registered, entry.stored
        return JSONResponse(
            {
                "status": "ok",
                "data_file_id": dfid,
                "state": entry.state.value,
                "destination": r.destination,
                "target": r.target,
                "version": r.version,
                "file_instance": r.file_instance,
                "priority": r.priority,
                "registered_at": r.envelope.occurred_at.isoformat(),
                "expiry_time": r.expiry_time.isoformat(),
                "scheduled_time": r.scheduled_time.isoformat() if r.scheduled_time else None,
                "standby": r.standby,
                "requested_by": r.requested_by,
                "metadata": dict(r.metadata),
                "size": stored.size if stored else None,
                "checksums": (
                    {"adler32": stored.checksums.adler32, "md5": stored.checksums.md5}
                    if stored
                    else None
                ),
                "store": stored.store if stored else None,
                "guid": stored.guid if stored else None,
                "failure": entry.failure,
                "transfers": [_entry(t) for t in index.transfers_of(dfid)],
            }
        )

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi.document())

    return [
        Route(DATAFILES_PATH, put_datafile, methods=["POST"]),
        Route("/api/v1/datafiles/{data_file_id}", get_datafile, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
    ]


def create_app(state: ApiState, **kwargs: Any) -> ASGIApp:
    """The ingest routes as an ASGI app: ``POST /api/v1/datafiles`` by the lean front, the
    rest by a Starlette app around ``routes`` (``kwargs`` go to ``Starlette``)."""
    from producers.api.fast import IngestFront  # it imports this module

    return IngestFront(state, Starlette(routes=routes(state), **kwargs))


__all__ = ["Answer", "ApiState", "create_app", "put", "routes"]
