"""Fixtures of the monitor's pipeline tests: the monitor over read models the real projector
fills from a real running chain (ingest API, scheduler runner and a mover as subprocesses, the
end-to-end ``stack``), so what the browser sees was decided, moved and projected for real.

Isolation: the chain's topics are the stack's own (``e2e.<tag>.*``); the projector writes a
unique read-model schema (``mon_pipe_<tag>``, dropped at the end) under a unique projection
name; the monitor publishes operator requests on the stack's transfers topic, where the
scheduler answers them. Nothing here is a mock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from bus.config.secrets import hash_password
from bus.tokens import token_digest
from projections.migrate import migrate
from projections.monitor.app import MonitorConfig, create_app
from projections.projector import Projector
from tests.conftest import free_port
from tests.e2e.conftest import Stack, stack
from tests.monitor.conftest import PASSWORDS, TOKEN
from tests.projections.support import drop

__all__ = ["Pipeline", "pipeline", "serve", "stack"]


@dataclass(frozen=True)
class Pipeline:
    """The running chain, its read-model schema and the monitor over it (``TOKEN`` is a
    script token of it)."""

    stack: Stack
    schema: str
    url: str
    secrets_dir: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


@contextlib.asynccontextmanager
async def serve(config: MonitorConfig) -> AsyncIterator[str]:
    """The monitor app under uvicorn on a free 127.0.0.1 port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        assert server.started, "the monitor did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def projecting(postgres: str, made: Stack, schema: str) -> AsyncIterator[None]:
    """The real projector following every topic of the stack into ``schema``."""
    await migrate(postgres, schema)
    topics = [made.topic(n) for n in ("config", "datafiles", "transfers", "movers")]
    projector = Projector(
        dsn=postgres,
        bootstrap=made.kafka,
        schema=schema,
        name=f"pipe-{made.tag}",
        topics=[*topics, made.orders],
        max_wait_ms=50,
    )
    task = asyncio.create_task(projector.run())
    try:
        yield
    finally:
        projector.stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture(scope="module")
async def pipeline(
    stack: Stack, postgres: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """The stack's events projected live into a fresh schema, and the monitor over it with an
    operator and a viewer."""
    schema = f"mon_pipe_{stack.tag}"
    secrets_dir = tmp_path_factory.mktemp("pipeline-monitor-secrets")
    config = MonitorConfig(
        dsn=postgres,
        bootstrap=stack.kafka,
        secrets_dir=secrets_dir,
        schema=schema,
        transfers_topic=stack.topic("transfers"),
        poll_seconds=0.2,
    )
    try:
        async with projecting(postgres, stack, schema), serve(config) as url:
            with (secrets_dir / "web-users").open("a") as out:
                for role, password in PASSWORDS.items():
                    out.write(f"{role}1:{role}:{hash_password(password)}\n")
            (secrets_dir / "api-tokens").write_text(f"script:{token_digest(TOKEN)}\n")
            yield Pipeline(stack, schema, url, secrets_dir)
    finally:
        await drop(postgres, schema)
