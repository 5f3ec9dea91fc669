"""Suite-wide fixtures: the real services every integration test uses.

Kafka and PostgreSQL are started through the same infra scripts ``make up`` uses, under
``var/test`` on their own ports (see the Makefile's TEST_ENV), once per session; if they were
already running they are left running, otherwise they are stopped at the end. The MQTT
broker is the embedded amqtt one on a free port. Nothing here is a mock.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from bus.settings import ROOT, Settings
from bus.tokens import TokenFile, TokenRole

os.environ.setdefault("ECPDS_VAR", "var/test")
os.environ.setdefault("ECPDS_KAFKA_PORT", "29092")
os.environ.setdefault("ECPDS_PG_PORT", "25433")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    """Wait until ``check()`` is true, polling; fail the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _script(settings: Settings, script: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "infra" / script), action],
        env={**os.environ, **settings.infra_env()},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session", autouse=True)
def cli_token(settings: Settings) -> Iterator[str]:
    """An operator token (``ECPDS_TOKEN``) for the CLI verbs the suite runs: they publish only
    with one (``cli.credentials``)."""
    book = TokenFile(settings.var_dir / "secrets" / "api-tokens")
    book.revoke("tests-cli")
    token = book.create("tests-cli", TokenRole.OPERATOR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECPDS_TOKEN", token)
        yield token
    book.revoke("tests-cli")


OWNED: dict[str, bool] = {}  # script -> whether this session started the service


def _service(settings: Settings, script: str) -> Iterator[None]:
    was_running = _script(settings, script, "status").returncode == 0
    OWNED[script] = not was_running
    started = _script(settings, script, "start")
    if started.returncode != 0:
        pytest.fail(f"{script} start failed: {started.stderr or started.stdout}")
    yield
    if not was_running:
        _script(settings, script, "stop")


@pytest.fixture(scope="session")
def kafka(settings: Settings) -> Iterator[str]:
    """A running single-node Kafka; yields its bootstrap address."""
    for _ in _service(settings, "kafka/kafka.sh"):
        yield settings.kafka_bootstrap


@pytest.fixture(scope="session")
def own_kafka(kafka: str) -> bool:
    """Whether this session started the broker (and so may restart it): one that was running
    before is shared with other sessions, which a restart would disturb."""
    return OWNED.get("kafka/kafka.sh", False)


@pytest.fixture(scope="session")
def postgres(settings: Settings) -> Iterator[str]:
    """A running private PostgreSQL; yields its DSN."""
    for _ in _service(settings, "pg/pg.sh"):
        yield settings.pg_dsn


@pytest.fixture(scope="session")
async def mqtt_port() -> AsyncIterator[int]:
    """The embedded amqtt broker on a free port for the whole session."""
    from bus.mqtt import embedded_broker

    port = free_port()
    async with embedded_broker("127.0.0.1", port):
        yield port


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and bucket names."""
    return uuid.uuid4().hex[:10]


# --- tiers ------------------------------------------------------------------------------------

# Fixtures that start or need a server (broker, database, protocol server, mail server, browser),
# by name in whichever test module defines them. A test that uses one, directly or through
# another fixture, or that is marked kafka/postgres/slow, is marked "services"; `make check`
# runs the rest (pure cores, codecs, in-memory adapters) with `-m "not services"`.
SERVICE_FIXTURES = frozenset(
    {
        "kafka", "own_kafka", "postgres", "mqtt_port", "mosquitto_port",
        "moto", "moto_port", "s3_proxy", "azurite", "azurite_port", "az_proxy",
        "gcs_emulator", "gcs_port", "gcs_proxy", "sshd", "asyncssh_server", "sftp",
        "ftp", "ftp_server", "ftps_server", "plain_server", "explicit_server",
        "implicit_server", "server", "kill_server", "http", "http_server", "smtp", "auth_smtp",
        "browser", "up_env",
    }
)  # fmt: skip
SERVICE_MARKERS = ("kafka", "postgres", "slow")
# suites that take minutes and kill processes: they run only when the marker expression names
# them (``-m chaos``, ``-m cluster``), so ``make test`` skips them
OPT_IN_MARKERS = {"chaos": "make chaos", "cluster": "make test-cluster"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a running service "services" (see SERVICE_FIXTURES), and
    skip the opt-in suites unless asked for."""
    asked = config.getoption("markexpr") or ""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SERVICE_FIXTURES or any(item.get_closest_marker(m) for m in SERVICE_MARKERS):
            item.add_marker(pytest.mark.services)
        for marker, command in OPT_IN_MARKERS.items():
            if marker not in asked and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=f"runs with `{command}` (-m {marker})"))
