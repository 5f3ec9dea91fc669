"""The ingest API as a real process (``python -m producers.api.runner``): killed in the middle
of an upload and restarted, and driven by ``ecpds put`` (``python -m cli.put``) as a
subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bus.config.apply import events_for, plan
from bus.config.view import ConfigView, config_spec
from bus.events.config import PortalOperation
from bus.events.datafiles import DataFileRegistered, DataFileRegistrationFailed
from bus.events.transfers import TransferQueued
from bus.publisher import Publisher
from bus.settings import ROOT
from bus.topics import apply_topics
from store.local import LocalStore
from store.objects import ObjectId
from tests.config import factories as f
from tests.conftest import free_port
from tests.ingest.conftest import TOKEN, Names, events_of, read_topic

pytestmark = pytest.mark.kafka
PYTHON = sys.executable


@dataclass
class Server:
    """The runner process of this module (restarted by the crash test)."""

    names: Names
    port: int
    process: subprocess.Popen[bytes] | None = None
    schema: str | None = None  # the read models' schema its monitoring summary reads

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        n = self.names
        self.process = subprocess.Popen(
            [
                PYTHON, "-m", "producers.api.runner", "--port", str(self.port),
                "--config-topic", n.config, "--datafiles-topic", n.topics.datafiles,
                "--transfers-topic", n.topics.transfers, "--store-root", str(n.store),
                "--tokens-file", str(n.tokens),
                *(("--schema", self.schema) if self.schema else ()),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the ingest runner exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v1/openapi.json", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        pytest.fail("the ingest runner did not start within 60 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
async def server(kafka: str, names: Names) -> AsyncIterator[Server]:
    await apply_topics(kafka, [config_spec(names.config)])
    entities = [
        f.destination("site-a"),
        f.user("carol", destinations=("site-a",), operations=(PortalOperation.PUT,)),
    ]
    async with Publisher(kafka) as publisher:
        for key, event in events_for(plan(ConfigView(), entities), source="test"):  # type: ignore[arg-type]
            await publisher.publish(names.config, key, event)
    s = Server(names, free_port())
    await asyncio.to_thread(s.start)
    yield s
    await asyncio.to_thread(s.stop)


async def _slow_body(started: asyncio.Event) -> AsyncIterator[bytes]:
    yield bytes(64 * 1024)
    started.set()
    await asyncio.sleep(3600)  # never finishes: the server is killed meanwhile
    yield b""


async def _registered(kafka: str, names: Names, target: str) -> DataFileRegistered:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for _, _, event in await read_topic(kafka, names.topics.datafiles):
            if isinstance(event, DataFileRegistered) and event.target == target:
                return event
        await asyncio.sleep(0.2)
    pytest.fail(f"no registration of {target} seen")


async def test_killed_mid_upload_is_marked_failed_on_restart(
    server: Server, kafka: str, names: Names
) -> None:
    """A runner killed (SIGKILL) while bytes stream in leaves a registration that the next
    start marks failed ("interrupted before storage"); no transfer is queued and no object
    is left for it."""
    started = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as client:
        upload = asyncio.create_task(
            client.post(
                f"{server.url}/api/v1/datafiles",
                params={"destination": "site-a", "target": "crash.bin"},
                headers={"Authorization": f"Bearer {TOKEN}"},
                content=_slow_body(started),
            )
        )
        await asyncio.wait_for(started.wait(), 20)
        registered = await _registered(kafka, names, "crash.bin")
        await asyncio.to_thread(server.kill)
        upload.cancel()  # the body never ends by itself
        with contextlib.suppress(httpx.HTTPError, asyncio.CancelledError):
            await upload
    await asyncio.to_thread(server.start)
    events = await events_of(kafka, names.topics, registered.data_file_id)
    assert [type(e).__name__ for e in events] == [
        "DataFileRegistered",
        "DataFileRegistrationFailed",
    ]
    failed = events[1]
    assert isinstance(failed, DataFileRegistrationFailed)
    assert (failed.stage, failed.message) == ("recovery", "interrupted before storage")
    assert not any(isinstance(e, TransferQueued) for e in events)
    store = LocalStore(names.store, durable=False)
    try:
        assert not await store.exists(ObjectId(registered.data_file_id))
    finally:
        await store.close()


async def test_client_gone_mid_upload_fails_the_registration(
    server: Server, kafka: str, names: Names
) -> None:
    """A client that disconnects while its bytes stream in gets its registration closed by
    DataFileRegistrationFailed (stage receive) at once; nothing is queued or left stored."""
    started = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as client:
        upload = asyncio.create_task(
            client.post(
                f"{server.url}/api/v1/datafiles",
                params={"destination": "site-a", "target": "gone.bin"},
                headers={"Authorization": f"Bearer {TOKEN}"},
                content=_slow_body(started),
            )
        )
        await asyncio.wait_for(started.wait(), 20)
        registered = await _registered(kafka, names, "gone.bin")
        upload.cancel()  # closes the connection mid-body
        with contextlib.suppress(httpx.HTTPError, asyncio.CancelledError):
            await upload
    deadline = time.monotonic() + 20
    events = await events_of(kafka, names.topics, registered.data_file_id)
    while len(events) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        events = await events_of(kafka, names.topics, registered.data_file_id)
    assert [type(e).__name__ for e in events] == [
        "DataFileRegistered",
        "DataFileRegistrationFailed",
    ]
    failed = events[1]
    assert isinstance(failed, DataFileRegistrationFailed)
    assert failed.stage == "receive"
    store = LocalStore(names.store, durable=False)
    try:
        assert not await store.exists(ObjectId(registered.data_file_id))
    finally:
        await store.close()


def data_file_id(result: subprocess.CompletedProcess[bytes]) -> str:
    """The data file id a put printed (its ``data-file <id>`` line)."""
    lines = result.stdout.decode().splitlines()
    return next(line.split()[1] for line in lines if line.startswith("data-file "))


def put(
    server: Server, *args: str, stdin: bytes | None = None, token: bool = True
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "ECPDS_API_URL": server.url}
    if token:
        env["ECPDS_API_TOKEN"] = TOKEN
    return subprocess.run(
        [PYTHON, "-m", "cli.put", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.grib"
    path.write_bytes(os.urandom(5 * 1024 * 1024))  # large enough for the progress bar
    return path


def test_cli_put_prints_the_id_and_refuses_a_duplicate(
    server: Server, sample: Path, tmp_path: Path
) -> None:
    """`ecpds put FILE` prints the data file id and the transfer it queued; the same put again
    prints the same id (a safe retry); other bytes under the same name are refused with the
    option and the reason, exit code 2; --force makes a new instance."""
    first = put(server, str(sample), "--destination", "site-a", "--priority", "5")
    assert first.returncode == 0, first.stderr.decode()
    dfid = data_file_id(first)
    assert re.fullmatch(r"[0-9a-f]{32}", dfid)
    assert f"transfer {dfid}-site-a site-a " in first.stdout.decode()
    got = httpx.get(
        f"{server.url}/api/v1/datafiles/{dfid}", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert (got["target"], got["size"], got["priority"]) == ("sample.grib", 5 * 1024 * 1024, 5)
    same = put(server, str(sample), "--destination", "site-a")
    assert (same.returncode, data_file_id(same)) == (0, dfid), same.stderr.decode()
    other = tmp_path / "other" / sample.name
    other.parent.mkdir()
    other.write_bytes(b"other bytes")
    again = put(server, str(other), "--destination", "site-a")
    assert again.returncode == 2
    assert "target" in again.stderr.decode()
    assert "Duplicate" in again.stderr.decode()
    forced = put(server, str(sample), "--destination", "site-a", "--force")
    assert forced.returncode == 0, forced.stderr.decode()
    assert data_file_id(forced) != dfid


def test_cli_put_reads_stdin_with_a_data_user(server: Server) -> None:
    """`ecpds put --target T` reads stdin; a data user authenticates with --user/--password."""
    result = put(
        server, "--destination", "site-a", "--target", "piped.txt",
        "--user", "carol", "--password", "portal-secret", "--metadata", "stream=oper,step=6",
        stdin=b"from a pipe", token=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    dfid = data_file_id(result)
    got = httpx.get(
        f"{server.url}/api/v1/datafiles/{dfid}", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert (got["size"], got["metadata"], got["requested_by"]) == (
        11,
        {"stream": "oper", "step": "6"},
        "user:carol",
    )


def test_cli_put_unknown_destination_exits_2(server: Server, sample: Path) -> None:
    """A refusal (unknown destination) prints the option and message and exits 2."""
    result = put(server, str(sample), "--destination", "nowhere")
    assert result.returncode == 2
    assert "destination" in result.stderr.decode()
    assert "not found" in result.stderr.decode()
