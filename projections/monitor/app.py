"""The monitor app factory: state (read pool, publisher, users, tokens, live hub), the routes
and the middleware, composable into one web server with the ingest API.

``routes(state)`` and ``middleware(state)`` let the lead mount the monitor beside
``producers.api.app.routes``; ``create_app(config)`` is a standalone app whose lifespan opens
and closes the state. No route answers anything but the sign-in page, static assets and the
OpenAPI document without a signed-in user or a script token. The chart library (uPlot) is
served from ``infra/npm/node_modules`` (installed by ``infra/install.sh``, never a CDN) under
``/static/vendor/``, only the files ``VENDOR`` names; without it the charts say so and every
other page works. The standalone app is wrapped in
``bus.web.SecureHeaders`` (CSP, no framing, nosniff, no-store: on every answer, errors
included) and ``bus.web.BodyLimit`` (no monitor body is larger than ``BODY_CAP``; routes that
read one cap it lower, after checking the caller); a server mounting ``routes`` wraps itself
the same way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from bus.defender import Policy
from bus.events import Event
from bus.settings import Settings
from bus.signin import SignInGate
from bus.tokens import tokens_path
from bus.topics import PORTAL, TRANSFERS
from bus.web import BodyLimit, SecureHeaders
from projections.db import DEFAULT_SCHEMA
from projections.monitor import view
from projections.monitor.actions import Actions
from projections.monitor.auth import Role, Sessions, TokenBook, User, WebUsers, session_key
from projections.monitor.cache import VersionCache
from projections.monitor.live import Hub
from projections.monitor.queries import Queries, pool

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE.parents[1] / "infra" / "npm" / "node_modules"
VENDOR: Mapping[str, tuple[str, str]] = {
    "uplot/uPlot.iife.min.js": ("uplot/dist/uPlot.iife.min.js", "text/javascript"),
    "uplot/uPlot.min.css": ("uplot/dist/uPlot.min.css", "text/css"),
}
"""What ``/static/vendor/<name>`` serves: the file under the node modules and its type."""
CHART_LIBRARY = "uplot/uPlot.iife.min.js"
SESSION_COOKIE = "ecpds_monitor"
BODY_CAP = 64 * 1024  # the monitor takes forms and small JSON actions, never files


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Where the monitor reads, publishes and keeps its secrets."""

    dsn: str
    bootstrap: str
    secrets_dir: Path
    schema: str = DEFAULT_SCHEMA
    transfers_topic: str = TRANSFERS
    poll_seconds: float = 1.0
    https_only: bool = False  # set behind TLS so the cookie is never sent in clear
    session_idle: float = 3600.0  # seconds unused after which a session ends
    session_max: float = 12 * 3600.0  # seconds after sign-in at which a session ends
    portal_topic: str = PORTAL  # where sign-in failures and bans are published
    defender: Policy = field(default_factory=Policy)  # when failed sign-ins ban
    node_modules: Path = NODE_MODULES  # where npm installed the chart library

    @classmethod
    def from_settings(cls, settings: Settings, schema: str = DEFAULT_SCHEMA) -> MonitorConfig:
        return cls(
            dsn=settings.pg_dsn,
            bootstrap=settings.kafka_bootstrap,
            secrets_dir=settings.var_dir / "secrets",
            schema=schema,
            session_idle=settings.session_idle,
            session_max=settings.session_max,
        )


@dataclass
class MonitorState:
    """Everything the routes use; ``open_state`` builds and closes it."""

    config: MonitorConfig
    queries: Queries
    actions: Actions
    users: WebUsers
    tokens: TokenBook
    hub: Hub
    gate: SignInGate
    templates: Jinja2Templates = field(init=False)
    pages_cache: VersionCache[Markup] = field(default_factory=VersionCache)
    api_cache: VersionCache[bytes] = field(default_factory=VersionCache)

    def __post_init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(when=view.when, size=view.size)
        env.globals.update(
            destination_badge=view.destination_badge,
            status_badge=view.status_badge,
            explain=view.explain,
            transfer_badge=view.transfer_badge,
        )

    @property
    def chart_library(self) -> bool:
        """Whether the chart library is installed (the charts need it, nothing else does)."""
        return (self.config.node_modules / VENDOR[CHART_LIBRARY][0]).is_file()

    @property
    def sessions(self) -> Sessions:
        return Sessions(self.config.session_idle, self.config.session_max)

    def user(self, conn: HTTPConnection) -> User | None:
        """The caller: a bearer token, else the session's user while its session is good
        (``Sessions.valid``: the user's stamp unchanged, within the idle and absolute limits;
        a session that is over is emptied)."""
        header = conn.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return self.tokens.check(token.strip())
        if "session" not in conn.scope:
            return None
        login = conn.session.get("user")
        if not isinstance(login, str):
            return None
        now = time.time()
        if not self.sessions.valid(conn.session, self.users.stamp(login), now):
            conn.session.clear()
            return None
        role = self.users.role_of(login)
        if role is None:
            return None
        conn.session["seen"] = int(now)
        return User(login, role)


@contextlib.asynccontextmanager
async def open_state(config: MonitorConfig) -> AsyncIterator[MonitorState]:
    """The monitor's state, opened: the pool connected, the live hub running."""
    connections = pool(config.dsn, config.schema)
    await connections.open()
    queries = Queries(connections)
    hub = Hub(queries, config.poll_seconds)
    users = WebUsers.open(config.secrets_dir)
    actions = Actions(config.bootstrap, config.transfers_topic)

    async def publish(key: str, event: Event) -> None:
        await actions.publish(config.portal_topic, key, event)

    state = MonitorState(
        config=config,
        queries=queries,
        actions=actions,
        users=users,
        tokens=TokenBook(tokens_path(config.secrets_dir)),
        hub=hub,
        gate=SignInGate("monitor", publish, policy=config.defender),
    )
    hub.start()
    try:
        yield state
    finally:
        await hub.stop()
        await state.gate.close()
        await state.actions.close()
        await connections.close()


def middleware(config: MonitorConfig) -> list[Middleware]:
    """The signed session cookie the monitor's sign-in needs."""
    return [
        Middleware(
            SessionMiddleware,
            secret_key=session_key(config.secrets_dir),
            session_cookie=SESSION_COOKIE,
            same_site="strict",
            https_only=config.https_only,
            max_age=int(config.session_max),
        )
    ]


def routes(state: MonitorState) -> list[BaseRoute]:
    """Every monitor route: pages, live events, the JSON API, metrics and static assets."""
    from projections.monitor import api, pages

    async def vendor(request: Request) -> Response:
        found = VENDOR.get(request.path_params["name"])
        path = state.config.node_modules / found[0] if found else None
        if found is None or path is None or not path.is_file():
            return PlainTextResponse("not installed: run bash infra/install.sh", status_code=404)
        return FileResponse(path, media_type=found[1])

    static: Sequence[BaseRoute] = [
        Route("/static/vendor/{name:path}", vendor),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return [*pages.routes(state), *api.routes(state), *static]


def create_app(config: MonitorConfig) -> ASGIApp:
    """A standalone monitor app (headers set, bodies capped); its lifespan opens and closes
    the state."""
    proxy = _LazyState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_state(config) as state:
            proxy.set(state)
            yield

    app = Starlette(
        routes=routes(proxy),  # type: ignore[arg-type]
        middleware=[Middleware(BodyLimit, cap=BODY_CAP), *middleware(config)],
        lifespan=lifespan,
    )
    return SecureHeaders(app)  # outside Starlette: its own 500 answers get the headers too


class _LazyState:
    """Stands for the ``MonitorState`` the lifespan will open (attribute access forwards)."""

    def __init__(self, config: MonitorConfig) -> None:
        self._state: MonitorState | None = None
        self.config = config

    def set(self, state: MonitorState) -> None:
        self._state = state

    def __getattr__(self, name: str) -> object:
        if self._state is None:
            raise RuntimeError("the monitor is not started")
        return getattr(self._state, name)


__all__ = [
    "MonitorConfig",
    "MonitorState",
    "Role",
    "create_app",
    "middleware",
    "open_state",
    "routes",
]
