"""OpenECPDS's REST API v1 under ``/ecpds/v1/`` (ECPDS-REFERENCE.md §10.2), for migrating
sites: its paths, its parameters and its ``{"status": "ok", ...}`` /
``{"status": "error", "message": ...}`` answers, over ecpds's own ingest API.

Rules kept here: nothing is decided twice. A put goes through ``ingest.put`` and a data file
read through ``ingest.datafile`` (the very functions ``/api/v1`` calls), so refusals, events,
size caps and idempotency are the same; callers are authenticated by the same
``Authenticator`` (a token, or a data user with Basic). Data users may put and read sizes for
their destinations; everything else needs a token, and a change a token that can act
(``ConfigWriter``: planned and validated by ``bus.config.apply`` as ``ecpds config`` is).
``version`` needs no credentials, as in OpenECPDS. What ecpds does not offer answers 501 with
the reason; a file's bytes travel in the request body (ecpds never reads a path on the server).
The monitoring summary is read from the read models (``projections.products``, read-only).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import psycopg_pool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bus.config.apply import Change, events_for, plan
from bus.config.secrets import OperatorKey, seal_password
from bus.config.view import ConfigView, LiveConfig
from bus.errors import ConfigurationError
from bus.events.config import DataUser
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.signin import Banned
from producers.api.auth import Principal
from producers.api.ingest import Answer, ApiState, datafile, put

PREFIX = "/ecpds/v1"
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigWriter:
    """Publishes configuration changes as ``ecpds config`` does: planned against the live
    view, published on the configuration topic, returned once the live view has them."""

    live: LiveConfig
    publisher: Publisher
    topic: str
    source: str
    key_file: Path

    async def apply(self, make: Callable[[ConfigView], list[Change]], actor: str) -> int:
        """Plan with ``make``, publish, wait for the view; the number of changes made."""
        changes = make(self.live.view)
        if not changes:
            return 0
        items = [
            (self.topic, key, event)
            for key, event in events_for(changes, source=self.source, actor=actor)
        ]
        published = await self.publisher.publish_many(items)
        await self.live.reached(published)
        return len(changes)


def ok(status: int = 200, **body: Any) -> Response:
    return Response(orjson.dumps({"status": "ok", **body}), status, media_type="application/json")


def error(status: int, message: str) -> Response:
    body = orjson.dumps({"status": "error", "message": message})
    headers = {"WWW-Authenticate": 'Basic realm="ecpds"'} if status == 401 else None
    return Response(body, status, headers, media_type="application/json")


def _translated(answer: Answer, **extra: Callable[[Mapping[str, Any]], Any]) -> Response:
    """An ``/api/v1`` answer in OpenECPDS's shape: ok with the ``extra`` fields drawn from it,
    or the error's ``field: message``; the same HTTP status."""
    body = orjson.loads(answer.body)
    if answer.status < 400:
        return ok(answer.status, **{k: f(body) for k, f in extra.items()})
    field, message = body.get("field"), body.get("message", "")
    return error(answer.status, f"{field}: {message}" if field else message)


def _version() -> str:
    try:
        return importlib.metadata.version("ecpds")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def routes(state: ApiState) -> list[Route]:
    """The ``/ecpds/v1`` routes over ``state`` (the ingest API's)."""

    async def caller(request: Request, *, token: bool = True) -> Principal | Response:
        client = request.client.host if request.client else None
        found = await state.auth.principal(
            request.headers.get("authorization"), state.config.view, client
        )
        if isinstance(found, Banned):
            return error(429, "too many failed sign-ins: try again later")
        if found is None:
            return error(401, "authorization: a Bearer token or data user credentials needed")
        if token and found.user is not None:
            return error(403, "authorization: this call needs an API token, not a data user")
        return found

    async def params(request: Request) -> dict[str, str]:
        """Query parameters, then form or JSON body fields (OpenECPDS sends either)."""
        found = dict(request.query_params)
        if request.method in ("POST", "PUT", "DELETE"):
            kind = request.headers.get("content-type", "")
            if kind.startswith("application/x-www-form-urlencoded"):
                form = await request.form()
                found |= {k: v for k, v in form.items() if isinstance(v, str)}
            elif kind.startswith("application/json"):
                body = orjson.loads(await request.body() or b"{}")
                if isinstance(body, dict):
                    found |= {k: str(v) for k, v in body.items() if v is not None}
        return found

    async def version(request: Request) -> Response:
        return ok(version=_version())

    async def datafile_put(request: Request) -> Response:
        query = dict(request.query_params)
        source = query.pop("source", "")
        if "target" not in query and source:
            query["target"] = source.rstrip("/").rpartition("/")[2]
        unique = query.pop("uniquename", None)
        if unique:  # kept with the file: ecpds's uniqueness is destination + target + version
            extra = f"uniquename={unique}"
            query["metadata"] = f"{query['metadata']},{extra}" if query.get("metadata") else extra
        headers = {k.lower(): v for k, v in request.headers.items()}
        if headers.get("content-length") in (None, "0") and "chunked" not in headers.get(
            "transfer-encoding", ""
        ):
            return error(
                400,
                "source: ecpds never reads a file on the server; send its bytes as the request"
                " body (curl -T FILE or --data-binary @FILE)",
            )
        client = request.client.host if request.client else None
        answer = await put(state, query, headers, _body(request), client)
        return _translated(
            answer,
            id=lambda b: b["data_file_id"],
            transfers=lambda b: [t["transfer_id"] for t in b.get("transfers", ())],
        )

    async def datafile_size(request: Request) -> Response:
        ident = request.query_params.get("id") or request.query_params.get("datafileid", "")
        client = request.client.host if request.client else None
        answer = await datafile(state, request.headers.get("authorization"), ident, client)
        return _translated(answer, size=lambda b: b["size"])

    async def not_offered(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        return error(501, f"{request.url.path}: not offered by ecpds yet")

    async def monitoring_summary(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        if state.products is None:
            return error(501, "monitoring summary: this API reads no read models (--schema)")
        p = request.path_params
        try:
            found = await state.products.summary(
                p["product"], p["time"], p.get("step"), p.get("type")
            )
        except (psycopg.Error, psycopg_pool.PoolTimeout) as failed:
            log.warning("monitoring summary: read models not readable", error=str(failed))
            return error(503, "monitoring summary: the read models cannot be read now")
        product = "/".join(p[k] for k in ("product", "time", "step", "type") if k in p)
        if not found:
            return error(404, f"no product {product} (no status set, no file of it)")
        return ok(summary=found)

    async def destination_list(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        q = request.query_params
        iso, name, kind = q.get("iso"), q.get("id"), q.get("type")
        found = [
            _destination(d)
            for d in sorted(state.config.view.destinations.values(), key=lambda d: d.name)
            if (not iso or (d.country or "").lower() == iso.lower())
            and (not name or name.lower() in d.name.lower())
            and (not kind or d.type.value.lower() == kind.lower())
        ]
        return ok(destinationList=found)

    async def destination_get(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        d = state.config.view.destinations.get(request.path_params["name"])
        if d is None:
            return error(400, f"destination: no destination {request.path_params['name']!r}")
        return ok(destination=_destination(d))

    async def destination_metadata(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        d = state.config.view.destinations.get(request.path_params["name"])
        if d is None:
            return error(400, f"destination: no destination {request.path_params['name']!r}")
        return ok(metadata=dict(d.properties))

    async def destination_types(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        kinds = sorted({d.type.value.lower() for d in state.config.view.destinations.values()})
        return ok(typeList=kinds)

    async def destination_countries(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        found = {d.country for d in state.config.view.destinations.values() if d.country}
        return ok(countryList=sorted(found))

    async def user_list(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        view = state.config.view
        wanted = request.query_params.get("destination")
        logins = view.users_for(wanted) if wanted else tuple(sorted(view.users))
        return ok(userList=[_user(view.users[u]) for u in logins if u in view.users])

    async def association_list(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        q = request.query_params
        wanted_user, wanted_dest = q.get("id"), q.get("destination")
        pairs = [
            {"id": u.login, "destination": d}
            for u in sorted(state.config.view.users.values(), key=lambda u: u.login)
            for d in u.destinations
            if (not wanted_user or u.login == wanted_user) and (not wanted_dest or d == wanted_dest)
        ]
        return ok(associationList=pairs)

    def changing(
        work: Callable[[Request, dict[str, str], Principal], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A route that changes the configuration: a token that can act, a writer, and a
        refusal of the change answered 400 with the field and the reason."""

        async def endpoint(request: Request) -> Response:
            who = await caller(request)
            if isinstance(who, Response):
                return who
            if not who.can_act:
                return error(403, "authorization: a read-only (viewer) token cannot change")
            if state.config_writer is None:
                return error(503, "configuration changes are not available on this server")
            try:
                return await work(request, await params(request), who)
            except ConfigurationError as refused:
                return error(400, f"{refused.field}: {refused.reason}")
            except ValueError as refused:
                return error(400, str(refused))

        return endpoint

    async def user_add(request: Request, p: dict[str, str], who: Principal) -> Response:
        writer = state.config_writer
        assert writer is not None
        login, password = p.get("id", ""), p.get("pass", "")
        if not login or not password:
            return error(400, "id and pass are required")
        if login in state.config.view.users:
            return error(412, f"id: the data user {login!r} exists already")
        properties = {"email": p["email"]} if p.get("email") else {}
        user = DataUser(
            login=login,
            country=p.get("iso") or None,
            comment=p.get("comment", ""),
            properties=properties,
            password_secret=seal_password(password, OperatorKey.load(writer.key_file)),
        )
        await writer.apply(lambda view: plan(view, [user]), who.label)
        return ok(id=login)

    async def user_del(request: Request, p: dict[str, str], who: Principal) -> Response:
        return await _change_user(request.path_params["id"], who, lambda u: {"active": False})

    async def association_add(request: Request, p: dict[str, str], who: Principal) -> Response:
        login, dest = p.get("id", ""), p.get("destination", "")
        if dest not in state.config.view.destinations:
            return error(400, f"destination: no destination {dest!r}")

        def more(u: DataUser) -> dict[str, Any]:
            return {"destinations": (*u.destinations, dest)} if dest not in u.destinations else {}

        return await _change_user(login, who, more)

    async def association_del(request: Request, p: dict[str, str], who: Principal) -> Response:
        login, dest = p.get("id", ""), p.get("destination", "")

        def fewer(u: DataUser) -> dict[str, Any]:
            return {"destinations": tuple(d for d in u.destinations if d != dest)}

        return await _change_user(login, who, fewer)

    async def _change_user(
        login: str, who: Principal, change: Callable[[DataUser], Mapping[str, Any]]
    ) -> Response:
        writer = state.config_writer
        assert writer is not None
        user = state.config.view.users.get(login)
        if user is None:
            return error(400, f"id: no data user {login!r}")
        fields = change(user)
        if fields and any(getattr(user, k) != v for k, v in fields.items()):
            changed = dataclasses.replace(user, **fields)
            await writer.apply(lambda view: plan(view, [changed]), who.label)
        return ok(id=login)

    p = PREFIX
    return [
        Route(f"{p}/version", version, methods=["GET"]),
        Route(f"{p}/datafile/put", datafile_put, methods=["GET", "POST", "PUT"]),
        Route(f"{p}/datafile/size", datafile_size, methods=["GET"]),
        Route(f"{p}/datafile/del", not_offered, methods=["DELETE"]),
        Route(f"{p}/destination/list", destination_list, methods=["GET"]),
        Route(f"{p}/destination/type/list", destination_types, methods=["GET"]),
        Route(f"{p}/destination/country/list", destination_countries, methods=["GET"]),
        Route(f"{p}/destination/metadata/fields", not_offered, methods=["GET"]),
        Route(f"{p}/destination/backup", not_offered, methods=["GET", "PUT"]),
        Route(f"{p}/destination/backup/{{name}}", not_offered, methods=["GET"]),
        Route(f"{p}/destination/{{name}}/metadata", destination_metadata, methods=["GET"]),
        Route(f"{p}/destination/{{name}}/metadata", not_offered, methods=["PUT"]),
        Route(f"{p}/destination/{{name}}", destination_get, methods=["GET"]),
        Route(f"{p}/incoming/user/add", changing(user_add), methods=["POST"]),
        Route(f"{p}/incoming/user/add2", changing(user_add), methods=["POST"]),
        Route(f"{p}/incoming/user/list", user_list, methods=["GET"]),
        Route(f"{p}/incoming/user/del/{{id}}", changing(user_del), methods=["DELETE"]),
        Route(f"{p}/incoming/category/add", not_offered, methods=["POST"]),
        Route(f"{p}/incoming/association/add", changing(association_add), methods=["POST"]),
        Route(f"{p}/incoming/association/del", changing(association_del), methods=["DELETE"]),
        Route(f"{p}/incoming/association/list", association_list, methods=["GET"]),
        Route(f"{p}/host/option", not_offered, methods=["POST"]),
        Route(f"{p}/monitoring/summary/{{product}}/{{time}}", monitoring_summary),
        Route(f"{p}/monitoring/summary/{{product}}/{{time}}/{{step}}/{{type}}", monitoring_summary),
    ]


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _destination(d: Any) -> dict[str, Any]:
    return {
        "name": d.name,
        "type": d.type.value.lower(),
        "country": d.country,
        "comment": d.comment,
        "active": d.active,
        "transferGroup": d.transfer_group,
    }


def _user(u: DataUser) -> dict[str, Any]:
    return {
        "id": u.login,
        "active": u.active,
        "iso": u.country,
        "email": u.properties.get("email"),
        "comment": u.comment,
        "destinations": list(u.destinations),
    }


__all__: Sequence[str] = ("PREFIX", "ConfigWriter", "routes")
