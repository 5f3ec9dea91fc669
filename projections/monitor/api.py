"""The monitor's JSON API under ``/api/v1`` (what the pages show, every action), its OpenAPI
document, and ``/metrics`` in the Prometheus text format.

Rules kept here: a caller is a script token (``Authorization: Bearer``) or a signed-in web
user; a web user's POST also needs the session's CSRF token in ``X-CSRF-Token`` (a token caller
needs none: nothing ambient authorises it). Answers are ``{"status": "ok", ...}`` or
``{"status": "error", "message": ...}`` with 400/401/403/404/503. Paths do not overlap the
ingest API's (``/api/v1/datafiles`` there; ``/api/v1/data-files`` here).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bus.errors import EcpdsError
from bus.requests import (
    DESTINATION_VERBS,
    TRANSFER_VERBS,
    Action,
    Invalid,
    Verb,
    lifetime_expiry,
    parse_priority,
)
from projections.monitor.auth import User, csrf_ok
from projections.monitor.queries import Filter

Handler = Callable[[Request, User], Awaitable[Response]]


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def dumps(body: Mapping[str, Any]) -> bytes:
    """JSON bytes (orjson: times in RFC 3339, fast enough for thousands of rows)."""
    return orjson.dumps(body, default=_default)


def ok(**body: Any) -> Response:
    return Response(dumps({"status": "ok", **body}), media_type="application/json")


def error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="ecpds"'} if status == 401 else None
    return JSONResponse(
        {"status": "error", "message": message}, status_code=status, headers=headers
    )


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    found = json.loads(raw)
    if not isinstance(found, dict):
        raise Invalid("the body must be a JSON object")
    return found


def _immediate(body: Mapping[str, Any]) -> bool:
    value = body.get("immediate", False)
    if not isinstance(value, bool):
        raise Invalid("immediate must be true or false")
    return value


def routes(state: Any) -> list[BaseRoute]:
    """The API routes over ``state`` (a ``MonitorState``)."""

    def authed(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = state.user(request)
            if user is None:
                return error(401, "a bearer token or a signed-in session is needed")
            bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
            if request.method == "POST" and not bearer:
                session_csrf = request.session.get("csrf")
                if not csrf_ok(session_csrf, request.headers.get("x-csrf-token")):
                    return error(403, "CSRF token missing or wrong")
            return await handler(request, user)

        return endpoint

    async def destinations(request: Request, user: User) -> Response:
        q = request.query_params
        try:
            limit = min(int(q.get("limit", "2000")), 10000)
        except ValueError:
            return error(400, "limit must be a whole number")
        f = Filter(q.get("q", ""), q.get("status", ""), limit)

        async def body() -> bytes:
            return dumps({"status": "ok", "destinations": await state.queries.overview(f)})

        version = await state.queries.version()
        cached = await state.api_cache.get(("destinations", f), version, body)
        return Response(cached, media_type="application/json")

    async def destination(request: Request, user: User) -> Response:
        name = request.path_params["name"]
        row = await state.queries.destination(name)
        if row is None:
            return error(404, f"no destination {name}")
        return ok(
            destination=row,
            queue=await state.queries.queue(name),
            running=await state.queries.running(name),
            finished=await state.queries.finished(name),
            hosts=await state.queries.destination_hosts(name),
        )

    async def destination_minutes(request: Request, user: User) -> Response:
        return ok(minutes=await state.queries.minutes(request.path_params["name"]))

    async def transfers(request: Request, user: User) -> Response:
        q = request.query_params
        return ok(transfers=await state.queries.transfers(q.get("status", ""), q.get("q", "")))

    async def transfer(request: Request, user: User) -> Response:
        tid = request.path_params["transfer_id"]
        row = await state.queries.transfer(tid)
        if row is None:
            return error(404, f"no transfer {tid}")
        return ok(transfer=row, timeline=await state.queries.timeline(tid))

    async def data_files(request: Request, user: User) -> Response:
        return ok(data_files=await state.queries.data_files(request.query_params.get("q", "")))

    async def data_file(request: Request, user: User) -> Response:
        fid = request.path_params["data_file_id"]
        row = await state.queries.data_file(fid)
        if row is None:
            return error(404, f"no data file {fid}")
        return ok(data_file=row, transfers=await state.queries.transfers_of_file(fid))

    async def hosts(request: Request, user: User) -> Response:
        return ok(hosts=await state.queries.hosts())

    async def movers(request: Request, user: User) -> Response:
        return ok(movers=await state.queries.movers())

    async def acquisition(request: Request, user: User) -> Response:
        return ok(
            hosts=await state.queries.acquisition(), files=await state.queries.acquisition_files()
        )

    async def charts(request: Request, user: User) -> Response:
        return ok(
            minutes=await state.queries.minutes(None, 120),
            errors=await state.queries.errors_by_destination(),
        )

    async def act(user: User, req: Action) -> Response:
        if not user.can_act:
            return error(403, "your role cannot act")
        try:
            event = await state.actions.request(req)
        except Invalid as e:
            return error(400, str(e))
        except EcpdsError as e:
            return error(503, f"could not publish: {e}")
        return JSONResponse(
            {
                "status": "ok",
                "event_id": event.envelope.event_id,
                "event_type": type(event).__name__,
            },
            status_code=202,
        )

    async def transfer_action(request: Request, user: User) -> Response:
        tid = request.path_params["transfer_id"]
        try:
            verb = Verb(request.path_params["verb"])
            if verb not in TRANSFER_VERBS:
                raise Invalid(f"{verb} is not a transfer action")
            body = await _body(request)
            priority = parse_priority(body.get("priority"))
            immediate = _immediate(body)
            expiry = lifetime_expiry(body.get("lifetime"), datetime.now(UTC))
        except (ValueError, Invalid) as e:
            return error(400, str(e))
        if not user.can_act:
            return error(403, "your role cannot act")
        row = await state.queries.transfer(tid)
        if row is None:
            return error(404, f"no transfer {tid}")
        req = Action(
            verb,
            row["destination"],
            user.login,
            transfer_id=tid,
            priority=priority,
            reason=body.get("reason"),
            immediate=immediate,
            expiry_time=expiry,
        )
        return await act(user, req)

    async def destination_action(request: Request, user: User) -> Response:
        try:
            verb = Verb(request.path_params["verb"])
            if verb not in DESTINATION_VERBS:
                raise Invalid(f"{verb} is not a destination action")
            body = await _body(request)
            immediate = _immediate(body)
        except (ValueError, Invalid) as e:
            return error(400, str(e))
        name = request.path_params["name"]
        req = Action(verb, name, user.login, reason=body.get("reason"), immediate=immediate)
        return await act(user, req)

    async def host_action(request: Request, user: User) -> Response:
        switch = request.path_params["switch"]
        verbs = {"on": Verb.HOST_ON, "off": Verb.HOST_OFF, "priority": Verb.HOST_PRIORITY}
        if switch not in verbs:
            return error(400, "a host is switched on or off, or given a priority")
        try:
            body = await _body(request)
            priority = parse_priority(body.get("priority"))
        except (ValueError, Invalid) as e:
            return error(400, str(e))
        req = Action(
            verbs[switch],
            request.path_params["name"],
            user.login,
            host_id=request.path_params["host"],
            priority=priority,
            reason=body.get("reason"),
        )
        return await act(user, req)

    async def metrics(request: Request, user: User) -> Response:
        return PlainTextResponse(
            await prometheus(state), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def openapi(request: Request) -> Response:
        from projections.monitor.openapi import document

        return JSONResponse(document())

    v1 = "/api/v1"
    return [
        Route(f"{v1}/monitor/openapi.json", openapi),
        Route(f"{v1}/destinations", authed(destinations)),
        Route(f"{v1}/destinations/{{name}}", authed(destination)),
        Route(f"{v1}/destinations/{{name}}/minutes", authed(destination_minutes)),
        Route(
            f"{v1}/destinations/{{name}}/hosts/{{host}}/{{switch}}",
            authed(host_action),
            methods=["POST"],
        ),
        Route(f"{v1}/destinations/{{name}}/{{verb}}", authed(destination_action), methods=["POST"]),
        Route(f"{v1}/transfers", authed(transfers)),
        Route(f"{v1}/transfers/{{transfer_id}}", authed(transfer)),
        Route(
            f"{v1}/transfers/{{transfer_id}}/{{verb}}", authed(transfer_action), methods=["POST"]
        ),
        Route(f"{v1}/data-files", authed(data_files)),
        Route(f"{v1}/data-files/{{data_file_id}}", authed(data_file)),
        Route(f"{v1}/hosts", authed(hosts)),
        Route(f"{v1}/movers", authed(movers)),
        Route(f"{v1}/acquisition", authed(acquisition)),
        Route(f"{v1}/charts", authed(charts)),
        Route("/metrics", authed(metrics)),
    ]


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def prometheus(state: Any) -> str:
    """The metrics text: queue depths per destination, transfers by status, totals, positions."""
    lines = [
        "# HELP ecpds_transfers Transfers by destination and status in the read models.",
        "# TYPE ecpds_transfers gauge",
    ]
    by_status: dict[str, int] = {}
    queued: dict[str, int] = {}
    for r in await state.queries.status_counts():
        d, s, n = r["destination"], r["status"], int(r["count"])
        lines.append(f'ecpds_transfers{{destination="{_label(d)}",status="{s}"}} {n}')
        by_status[s] = by_status.get(s, 0) + n
        if s in ("WAIT", "RETR", "INIT", "SCHE", "FETC"):
            queued[d] = queued.get(d, 0) + n
    lines += [
        "# HELP ecpds_queue_depth Queued transfers per destination.",
        "# TYPE ecpds_queue_depth gauge",
    ]
    lines += [f'ecpds_queue_depth{{destination="{_label(d)}"}} {n}' for d, n in queued.items()]
    lines += [
        "# HELP ecpds_transfers_by_status Transfers by status.",
        "# TYPE ecpds_transfers_by_status gauge",
    ]
    lines += [
        f'ecpds_transfers_by_status{{status="{s}"}} {n}' for s, n in sorted(by_status.items())
    ]
    totals = await state.queries.totals()
    for name, key, text in (
        ("ecpds_transfer_errors_total", "errors", "Failed transfer attempts."),
        ("ecpds_files_delivered_total", "files", "Files delivered."),
        ("ecpds_bytes_delivered_total", "bytes", "Bytes delivered."),
        ("ecpds_dead_letters_total", "dead_letters", "Messages dead-lettered."),
    ):
        lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {int(totals[key])}"]
    lines += [
        "# HELP ecpds_projection_offset Last offset projected per topic partition.",
        "# TYPE ecpds_projection_offset gauge",
    ]
    for p in await state.queries.positions():
        lines.append(
            f'ecpds_projection_offset{{projection="{_label(p["projection"])}",'
            f'topic="{_label(p["topic"])}",partition="{p["partition"]}"}} {p["offset"]}'
        )
    return "\n".join(lines) + "\n"
