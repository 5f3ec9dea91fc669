"""The monitor's HTML pages: sign-in, overview, destination, transfer, data files, hosts,
movers, acquisition console, charts (drawn in the browser from ``/api/v1/charts``, see
``charts``), the live event stream, and the action forms.

Rules kept here: every page but sign-in needs a signed-in user (else a redirect to
``/login``); every POST needs the session's CSRF token; actions need the operator role and only
publish a request event (``actions``), then redirect back to the page, which shows the result
once the projection has it. A form is read only after the caller is known to be allowed (an
action route refuses a viewer 403 before reading a byte), and capped at ``FORM_CAP`` (413);
an action on a destination, host or transfer the read models do not have is 404 and publishes
nothing. ``?partial=1`` renders only a page's live region, which the
page's script fetches again when the read models change.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bus.errors import EcpdsError
from bus.requests import (
    DESTINATION_VERBS,
    HOST_VERBS,
    MAX_HOST_PRIORITY,
    MAX_PRIORITY,
    TRANSFER_VERBS,
    Action,
    Invalid,
    Verb,
    lifetime_expiry,
    parse_priority,
)
from bus.signin import Banned
from bus.web import BodyTooLarge, read_body
from projections.monitor import live, timeliness
from projections.monitor.auth import User, csrf_ok, new_csrf
from projections.monitor.charts import RANGES, range_named
from projections.monitor.queries import Filter
from projections.monitor.search import SearchError
from projections.monitor.tables import overview_table
from projections.monitor.view import DESTINATION, TRANSFER

Page = Callable[[Request, User], Awaitable[Response]]
FORM_CAP = 16 * 1024  # sign-in and action forms are a few short fields


async def _form_csrf_ok(request: Request) -> bool:
    """Whether the (capped) form carries the session's CSRF token."""
    await read_body(request, FORM_CAP)
    form = await request.form()
    given = form.get("csrf")
    return csrf_ok(request.session.get("csrf"), given if isinstance(given, str) else None)


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = new_csrf()
        request.session["csrf"] = token
    return token


def _named(error: Invalid) -> str:
    return f"{error} (field {error.field})" if error.field else str(error)


def routes(state: Any) -> list[BaseRoute]:
    """The page routes over ``state`` (a ``MonitorState``)."""

    def render(
        request: Request, user: User | None, name: str, status: int = 200, **context: Any
    ) -> Response:
        return state.templates.TemplateResponse(  # type: ignore[no-any-return]
            request,
            name,
            {
                "user": user,
                "csrf": _csrf(request),
                "partial": request.query_params.get("partial") == "1",
                "requested": request.query_params.get("requested"),
                **context,
            },
            status_code=status,
        )

    def signed_in(page: Page, *, acts: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = state.user(request)
            if user is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            if acts and not user.can_act:
                return PlainTextResponse("your role cannot act", status_code=403)
            if request.method == "POST":
                try:
                    if not await _form_csrf_ok(request):
                        return PlainTextResponse("CSRF token missing or wrong", status_code=403)
                except BodyTooLarge as error:
                    return PlainTextResponse(str(error), status_code=413)
            return await page(request, user)

        return endpoint

    async def login_form(request: Request) -> Response:
        return render(request, None, "login.html", next=request.query_params.get("next", "/"))

    async def login(request: Request) -> Response:
        try:
            if not await _form_csrf_ok(request):
                return PlainTextResponse("CSRF token missing or wrong", status_code=403)
        except BodyTooLarge as error:
            return PlainTextResponse(str(error), status_code=413)
        form = await request.form()
        login_name, password = str(form.get("login", "")), str(form.get("password", ""))
        target = str(form.get("next", "/"))
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # never redirect off the monitor
        if not login_name or not password:
            return render(request, None, "login.html", next=target, failed=True, status=401)
        address = request.client.host if request.client else None
        found = state.users.lookup(login_name)
        outcome = await state.gate.check(address, login_name, found[1] if found else None, password)
        if isinstance(outcome, Banned):
            answer = render(
                request, None, "login.html", next=target, banned=outcome.retry_after, status=429
            )
            answer.headers["Retry-After"] = str(outcome.retry_after)
            return answer
        stamp = state.users.stamp(login_name) if outcome else None
        if stamp is None:
            return render(request, None, "login.html", next=target, failed=True, status=401)
        request.session.clear()  # a fresh session (and CSRF token) at each sign-in
        now = int(time.time())
        request.session.update(
            {"user": login_name, "csrf": new_csrf(), "stamp": stamp, "begun": now, "seen": now}
        )
        return RedirectResponse(target, status_code=303)

    async def logout(request: Request, user: User) -> Response:
        if request.session.get("user") == user.login:
            state.users.end_sessions(user.login)  # every copy of this cookie ends too
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def overview(request: Request, user: User) -> Response:
        q = request.query_params
        f = Filter(search=q.get("q", "").strip(), status=q.get("status", "").strip())

        async def table() -> Markup:
            return overview_table(await state.queries.overview(f))

        version = await state.queries.version()
        try:
            rendered = await state.pages_cache.get(("overview", f), version, table)
        except SearchError as error:
            rendered, said = overview_table([]), str(error)
        else:
            said = ""
        return render(
            request,
            user,
            "overview.html",
            table=rendered,
            filter=f,
            statuses=DESTINATION,
            search_error=said,
        )

    async def destination(request: Request, user: User) -> Response:
        name = request.path_params["name"]
        row = await state.queries.destination(name)
        if row is None:
            return render(request, user, "missing.html", what=f"destination {name}", status=404)
        return render(
            request,
            user,
            "destination.html",
            d=row,
            queue=await state.queries.queue(name),
            running=await state.queries.running(name),
            finished=await state.queries.finished(name),
            hosts=await state.queries.destination_hosts(name),
            chart_library=state.chart_library,
            range=range_named(request.query_params.get("range")),
            ranges=RANGES,
            verbs=DESTINATION_VERBS,
            host_verbs=HOST_VERBS,
        )

    async def transfers(request: Request, user: User) -> Response:
        q = request.query_params
        status, search = q.get("status", "").strip(), q.get("q", "").strip()
        try:
            rows, said = await state.queries.transfers(status, search), ""
        except SearchError as error:
            rows, said = [], str(error)
        return render(
            request,
            user,
            "transfers.html",
            rows=rows,
            search_error=said,
            status_filter=status,
            q=search,
            statuses=TRANSFER,
        )

    async def transfer(request: Request, user: User) -> Response:
        tid = request.path_params["transfer_id"]
        row = await state.queries.transfer(tid)
        if row is None:
            return render(request, user, "missing.html", what=f"transfer {tid}", status=404)
        return render(
            request,
            user,
            "transfer.html",
            t=row,
            timeline=await state.queries.timeline(tid),
            verbs=TRANSFER_VERBS,
        )

    async def data_files(request: Request, user: User) -> Response:
        search = request.query_params.get("q", "").strip()
        rows = await state.queries.data_files(search)
        return render(request, user, "datafiles.html", rows=rows, q=search)

    async def data_file(request: Request, user: User) -> Response:
        fid = request.path_params["data_file_id"]
        row = await state.queries.data_file(fid)
        if row is None:
            return render(request, user, "missing.html", what=f"data file {fid}", status=404)
        transfers_of = await state.queries.transfers_of_file(fid)
        return render(request, user, "datafile.html", f=row, transfers=transfers_of)

    async def hosts(request: Request, user: User) -> Response:
        return render(request, user, "hosts.html", rows=await state.queries.hosts())

    async def movers(request: Request, user: User) -> Response:
        return render(request, user, "movers.html", rows=await state.queries.movers())

    async def portal(request: Request, user: User) -> Response:
        return render(
            request,
            user,
            "portal.html",
            sessions=await state.queries.portal_sessions(),
            rows=await state.queries.portal_traffic(),
            recent=await state.queries.portal_recent(),
        )

    async def acquisition(request: Request, user: User) -> Response:
        return render(
            request,
            user,
            "acquisition.html",
            rows=await state.queries.acquisition(),
            files=await state.queries.acquisition_files(),
        )

    async def charts(request: Request, user: User) -> Response:
        return render(
            request,
            user,
            "charts.html",
            chart_library=state.chart_library,
            range=range_named(request.query_params.get("range")),
            ranges=RANGES,
            errors=await state.queries.errors_by_destination(),
        )

    async def events(request: Request, user: User) -> Response:
        return StreamingResponse(
            live.frames(state.hub),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def act(request: Request, user: User, back: str, req: Action) -> Response:
        if not user.can_act:
            return PlainTextResponse("your role cannot act", status_code=403)
        try:
            await state.actions.request(req)
        except Invalid as error:
            return PlainTextResponse(_named(error), status_code=400)
        except EcpdsError as error:
            return PlainTextResponse(f"could not publish: {error}", status_code=503)
        return RedirectResponse(f"{back}?requested={quote(req.verb.value)}", status_code=303)

    async def transfer_action(request: Request, user: User) -> Response:
        tid = request.path_params["transfer_id"]
        row = await state.queries.transfer(tid)
        if row is None:
            return PlainTextResponse("no such transfer", status_code=404)
        form = await request.form()
        try:
            verb = Verb(str(form.get("verb", "")))
            if verb not in TRANSFER_VERBS:
                raise Invalid(f"{verb} is not a transfer action", "verb")
            priority = parse_priority(form.get("priority"))
            expiry = lifetime_expiry(form.get("lifetime"), datetime.now(UTC))
        except Invalid as error:
            return PlainTextResponse(_named(error), status_code=400)
        except ValueError:
            return PlainTextResponse("unknown action (field verb)", status_code=400)
        req = Action(
            verb,
            row["destination"],
            user.login,
            transfer_id=tid,
            priority=priority,
            reason=str(form.get("reason") or "") or None,
            immediate=form.get("immediate") == "on",
            expiry_time=expiry,
        )
        return await act(request, user, f"/transfers/{quote(tid)}", req)

    async def destination_action(request: Request, user: User) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        try:
            verb = Verb(str(form.get("verb", "")))
        except ValueError:
            return PlainTextResponse("unknown action", status_code=400)
        host = str(form.get("host") or "") or None
        if verb not in DESTINATION_VERBS and verb not in HOST_VERBS:
            return PlainTextResponse("unknown action", status_code=400)
        try:
            top = MAX_HOST_PRIORITY if verb in HOST_VERBS else MAX_PRIORITY
            priority = parse_priority(form.get("priority"), top)
        except Invalid as error:
            return PlainTextResponse(_named(error), status_code=400)
        row = await state.queries.destination(name)
        if row is None or row.get("removed"):
            return PlainTextResponse("no such destination", status_code=404)
        if (
            verb in HOST_VERBS
            and host is not None
            and host not in {h["host"] for h in await state.queries.destination_hosts(name)}
        ):
            return PlainTextResponse("no such host on this destination", status_code=404)
        req = Action(
            verb,
            name,
            user.login,
            host_id=host,
            priority=priority,
            immediate=form.get("immediate") == "on",
        )
        return await act(request, user, f"/destinations/{quote(name)}", req)

    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", signed_in(logout), methods=["POST"]),
        Route("/", signed_in(overview)),
        Route("/destinations/{name}", signed_in(destination)),
        Route(
            "/destinations/{name}/action",
            signed_in(destination_action, acts=True),
            methods=["POST"],
        ),
        Route("/transfers", signed_in(transfers)),
        Route("/transfers/{transfer_id}", signed_in(transfer)),
        Route(
            "/transfers/{transfer_id}/action",
            signed_in(transfer_action, acts=True),
            methods=["POST"],
        ),
        Route("/datafiles", signed_in(data_files)),
        Route("/datafiles/{data_file_id}", signed_in(data_file)),
        Route("/hosts", signed_in(hosts)),
        Route("/movers", signed_in(movers)),
        Route("/acquisition", signed_in(acquisition)),
        Route("/portal", signed_in(portal)),
        Route("/charts", signed_in(charts)),
        Route("/live", signed_in(events)),
        *timeliness.routes(state, render, signed_in),
    ]
