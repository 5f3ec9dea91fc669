"""The monitor's JSON API under ``/api/v1`` (what the pages show, every action), its OpenAPI
document, and ``/metrics`` in the Prometheus text format.

Rules kept here: a caller is a script token (``Authorization: Bearer``) or a signed-in web
user; a web user's POST also needs the session's CSRF token in ``X-CSRF-Token`` (a token caller
needs none: nothing ambient authorises it). Answers are ``{"status": "ok", ...}`` or
``{"status": "error", "message": ..., "field": ...}`` with 400/401/403/404/413/503. Paths do
not overlap the ingest API's (``/api/v1/datafiles`` there; ``/api/v1/data-files`` here).

An action is checked in this order, so that no body is read for a caller who may not act:
credentials (401), CSRF for a session (403), role (403), then the body, capped at
``ACTION_BODY_CAP`` (413 from its ``Content-Length`` or as it streams), parsed (a JSON object,
fields of the right type and range, else 400 naming the field), then the target: an unknown
destination, host of that destination or transfer is 404 and nothing is published.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bus.errors import EcpdsError
from bus.products import parse_at, parse_status, product_key, publish_product_status
from bus.requests import (
    DESTINATION_VERBS,
    MAX_HOST_PRIORITY,
    TRANSFER_VERBS,
    Action,
    Invalid,
    Verb,
    lifetime_expiry,
    parse_priority,
)
from bus.web import BodyTooLarge, read_body
from projections.monitor import charts as charts_data
from projections.monitor.auth import User, csrf_ok
from projections.monitor.queries import Filter
from projections.monitor.search import SearchError

Handler = Callable[[Request, User], Awaitable[Response]]
ACTION_BODY_CAP = 16 * 1024  # an action's JSON is a few small fields


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def dumps(body: Mapping[str, Any]) -> bytes:
    """JSON bytes (orjson: times in RFC 3339, fast enough for thousands of rows)."""
    return orjson.dumps(body, default=_default)


def ok(**body: Any) -> Response:
    return Response(dumps({"status": "ok", **body}), media_type="application/json")


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="ecpds"'} if status == 401 else None
    body = {"status": "error", "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def invalid(e: Invalid) -> JSONResponse:
    return error(400, str(e), e.field)


async def _body(request: Request) -> dict[str, Any]:
    """The action's JSON object (orjson refuses nesting deeper than 1024 as malformed)."""
    raw = await read_body(request, ACTION_BODY_CAP)
    if not raw:
        return {}
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Invalid(f"the body is not JSON: {e}", "body") from None
    if not isinstance(found, dict):
        raise Invalid("the body must be a JSON object", "body")
    return found


def _immediate(body: Mapping[str, Any]) -> bool:
    value = body.get("immediate", False)
    if not isinstance(value, bool):
        raise Invalid("immediate must be true or false", "immediate")
    return value


def _reason(body: Mapping[str, Any]) -> str | None:
    value = body.get("reason")
    if value is not None and not isinstance(value, str):
        raise Invalid("reason must be a text", "reason")
    return value


def routes(state: Any) -> list[BaseRoute]:
    """The API routes over ``state`` (a ``MonitorState``)."""

    def authed(handler: Handler, *, acts: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = state.user(request)
            if user is None:
                return error(401, "a bearer token or a signed-in session is needed")
            bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
            if request.method == "POST" and not bearer:
                session_csrf = request.session.get("csrf")
                if not csrf_ok(session_csrf, request.headers.get("x-csrf-token")):
                    return error(403, "CSRF token missing or wrong")
            if acts and not user.can_act:
                return error(403, "your role cannot act")  # before a byte of the body is read
            try:
                return await handler(request, user)
            except BodyTooLarge as e:
                return error(413, str(e), "body")
            except Invalid as e:
                return invalid(e)

        return endpoint

    async def known_destination(name: str) -> bool:
        row = await state.queries.destination(name)
        return row is not None and not row.get("removed")

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
        try:
            cached = await state.api_cache.get(("destinations", f), version, body)
        except SearchError as refused:
            return error(400, str(refused), "q")
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
        try:
            rows = await state.queries.transfers(q.get("status", ""), q.get("q", ""))
        except SearchError as refused:
            return error(400, str(refused), "q")
        return ok(transfers=rows)

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
        """The charts of ``?range=hour|day|week`` (of ``?destination=``, else of all), with
        the per-minute totals and the errors by destination; made once per projector commit
        and bucket, however many pages follow them live."""
        q = request.query_params
        shown = charts_data.range_named(q.get("range"))
        destination = q.get("destination") or None
        now = datetime.now(UTC)

        async def body() -> bytes:
            series = await charts_data.load(state.queries, shown, now, destination)
            return dumps(
                {
                    "status": "ok",
                    **series,
                    "minutes": await state.queries.minutes(None, 120),
                    "errors": await state.queries.errors_by_destination(),
                }
            )

        key = ("charts", shown.name, destination, charts_data.window(shown, now).until)
        cached = await state.api_cache.get(key, await state.queries.version(), body)
        return Response(cached, media_type="application/json")

    async def act(user: User, req: Action) -> Response:
        if not user.can_act:
            return error(403, "your role cannot act")
        try:
            event = await state.actions.request(req)
        except Invalid as e:
            return invalid(e)
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

    def verb_of(request: Request, allowed: tuple[Verb, ...], what: str) -> Verb:
        text = request.path_params["verb"]
        if text not in {v.value for v in allowed}:
            raise Invalid(f"verb {text!r} is not a {what} action", "verb")
        return Verb(text)

    async def transfer_action(request: Request, user: User) -> Response:
        tid = request.path_params["transfer_id"]
        verb = verb_of(request, TRANSFER_VERBS, "transfer")
        body = await _body(request)
        priority = parse_priority(body.get("priority"))
        immediate = _immediate(body)
        expiry = lifetime_expiry(body.get("lifetime"), datetime.now(UTC))
        row = await state.queries.transfer(tid)
        if row is None:
            return error(404, f"no transfer {tid}", "transfer_id")
        req = Action(
            verb,
            row["destination"],
            user.login,
            transfer_id=tid,
            priority=priority,
            reason=_reason(body),
            immediate=immediate,
            expiry_time=expiry,
        )
        return await act(user, req)

    async def destination_action(request: Request, user: User) -> Response:
        verb = verb_of(request, DESTINATION_VERBS, "destination")
        body = await _body(request)
        immediate = _immediate(body)
        name = request.path_params["name"]
        reason = _reason(body)
        if not await known_destination(name):
            return error(404, f"no destination {name}", "destination")
        req = Action(verb, name, user.login, reason=reason, immediate=immediate)
        return await act(user, req)

    async def host_action(request: Request, user: User) -> Response:
        switch = request.path_params["switch"]
        verbs = {"on": Verb.HOST_ON, "off": Verb.HOST_OFF, "priority": Verb.HOST_PRIORITY}
        if switch not in verbs:
            return error(400, "a host is switched on or off, or given a priority", "switch")
        body = await _body(request)
        priority = parse_priority(body.get("priority"), MAX_HOST_PRIORITY)
        reason = _reason(body)
        name, host = request.path_params["name"], request.path_params["host"]
        if not await known_destination(name):
            return error(404, f"no destination {name}", "destination")
        if host not in {h["host"] for h in await state.queries.destination_hosts(name)}:
            return error(404, f"no host {host} on destination {name}", "host")
        req = Action(
            verbs[switch],
            name,
            user.login,
            host_id=host,
            priority=priority,
            reason=reason,
        )
        return await act(user, req)

    async def product_status(request: Request, user: User) -> Response:
        status = parse_status(request.path_params["status"])
        body = await _body(request)
        product = product_key(
            body.get("stream"), body.get("time"), body.get("step"), body.get("type")
        )
        at = parse_at(body.get("at"), datetime.now(UTC))
        try:
            event = await publish_product_status(
                state.actions, product, status, actor=user.login, source="monitor", at=at
            )
        except EcpdsError as e:
            return error(503, f"could not publish: {e}")
        return JSONResponse(
            {"status": "ok", "event_id": event.envelope.event_id, "product": product.text()},
            status_code=202,
        )

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
            authed(host_action, acts=True),
            methods=["POST"],
        ),
        Route(
            f"{v1}/destinations/{{name}}/{{verb}}",
            authed(destination_action, acts=True),
            methods=["POST"],
        ),
        Route(f"{v1}/transfers", authed(transfers)),
        Route(f"{v1}/transfers/{{transfer_id}}", authed(transfer)),
        Route(
            f"{v1}/transfers/{{transfer_id}}/{{verb}}",
            authed(transfer_action, acts=True),
            methods=["POST"],
        ),
        Route(f"{v1}/data-files", authed(data_files)),
        Route(f"{v1}/data-files/{{data_file_id}}", authed(data_file)),
        Route(f"{v1}/hosts", authed(hosts)),
        Route(f"{v1}/movers", authed(movers)),
        Route(f"{v1}/acquisition", authed(acquisition)),
        Route(f"{v1}/charts", authed(charts)),
        Route(f"{v1}/products/{{status}}", authed(product_status, acts=True), methods=["POST"]),
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
