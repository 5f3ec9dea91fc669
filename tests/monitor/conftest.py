"""Fixtures of the monitor tests: a read-model schema filled by the real projector from the
realistic test stream, and the monitor served by uvicorn on a free port, with one user of each
role and a script token."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bus.config.secrets import hash_password
from bus.tokens import token_digest
from bus.web import UVICORN_OPTIONS
from projections.migrate import migrate
from projections.monitor.app import MonitorConfig, create_app
from tests.conftest import free_port
from tests.projections import stream
from tests.projections.support import create_topics, drop, project, publish

TOKEN = "test-script-token-0123456789"
PASSWORDS = {"viewer": "viewer-pass", "operator": "operator-pass"}


@dataclass(frozen=True)
class ReadModels:
    """A filled read-model schema and the prefix of its test topics."""

    dsn: str
    bootstrap: str
    schema: str
    prefix: str
    topics: tuple[str, ...]
    projection: str

    @property
    def transfers_topic(self) -> str:
        return f"{self.prefix}.transfers"

    async def catch_up(self, ends: dict[str, int]) -> None:
        """Project what was published since, up to ``ends``."""
        await project(self.dsn, self.bootstrap, self.schema, self.projection, self.topics, ends)


@dataclass(frozen=True)
class Monitor:
    """A running monitor."""

    url: str
    secrets_dir: Path
    models: ReadModels


@pytest.fixture(scope="session")
async def read_models(kafka: str, postgres: str) -> AsyncIterator[ReadModels]:
    """The test stream (300 transfers over 6 destinations) projected into its own schema."""
    unique = uuid.uuid4().hex[:10]
    schema, prefix = f"mon_{unique}", f"test.mon{unique}"
    await migrate(postgres, schema)
    topics = await create_topics(kafka, prefix)
    ends = await publish(kafka, prefix, stream.events(300, destinations=6))
    name = f"monitor-{unique}"
    await project(postgres, kafka, schema, name, topics, ends)
    yield ReadModels(postgres, kafka, schema, prefix, tuple(topics), name)
    await drop(postgres, schema)


@contextlib.asynccontextmanager
async def serve(config: MonitorConfig) -> AsyncIterator[str]:
    """A monitor app of ``config`` under uvicorn on a free 127.0.0.1 port; its base URL."""
    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
            **UVICORN_OPTIONS,  # as the runner serves it
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "the monitor did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def monitor_config(read_models: ReadModels, secrets_dir: Path, **changes: Any) -> MonitorConfig:
    """The configuration of a test monitor over ``read_models``."""
    return MonitorConfig(
        dsn=read_models.dsn,
        bootstrap=read_models.bootstrap,
        secrets_dir=secrets_dir,
        schema=read_models.schema,
        transfers_topic=read_models.transfers_topic,
        poll_seconds=0.2,
        **changes,
    )


@pytest.fixture(scope="session")
async def monitor(
    read_models: ReadModels, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Monitor]:
    """The monitor app under uvicorn on 127.0.0.1 (admin, a viewer, an operator, a token)."""
    secrets_dir = tmp_path_factory.mktemp("monitor-secrets")
    async with serve(monitor_config(read_models, secrets_dir)) as url:
        with (secrets_dir / "web-users").open("a") as out:
            for role, password in PASSWORDS.items():
                out.write(f"{role}1:{role}:{hash_password(password)}\n")
        (secrets_dir / "api-tokens").write_text(f"script:{token_digest(TOKEN)}\n")
        yield Monitor(url, secrets_dir, read_models)


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found[1]


async def sign_in(client: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    """Sign in through the form, as a browser would."""
    form = await client.get("/login")
    return await client.post(
        "/login",
        data={"login": login, "password": password, "csrf": csrf_of(form.text), "next": "/"},
    )


@pytest.fixture
async def operator(monitor: Monitor) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as an operator."""
    async with httpx.AsyncClient(base_url=monitor.url, timeout=20) as client:
        answer = await sign_in(client, "operator1", PASSWORDS["operator"])
        assert answer.status_code == 303
        yield client


@pytest.fixture
async def viewer(monitor: Monitor) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as a viewer."""
    async with httpx.AsyncClient(base_url=monitor.url, timeout=20) as client:
        answer = await sign_in(client, "viewer1", PASSWORDS["viewer"])
        assert answer.status_code == 303
        yield client
