"""Fixtures of the end-to-end tests: the ingest API, the scheduler and movers as real
subprocesses (as ``ecpds up`` runs them) on private topics of the test broker.

Isolation: every module gets its own topic names (``e2e.<tag>.*``), transfer group, store,
operator key and API token file, so nothing it does is seen by another test or by ``ecpds up``.
Configuration goes in through the same code ``ecpds config apply -f`` runs (YAML ->
``yamlio.load`` -> ``resolve`` -> ``plan`` -> events); files go in through ``POST
/api/v1/datafiles`` with the admin token the API writes on its first start. Outcomes are read
back from the transfers topic (``Tail``). Components stop with SIGTERM; each one's stderr is in
``<root>/log/<name>.log`` for diagnosis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from bus.config.apply import events_for, plan, resolve
from bus.config.secrets import OperatorKey
from bus.config.view import LiveConfig
from bus.config.yamlio import load
from bus.events import Event
from bus.events.transfers import TransferQueued, TransferSucceeded
from bus.feeds import decode, partitions_of
from bus.kafka_access import kafka_options
from bus.publisher import Publisher
from bus.settings import ROOT
from bus.topics import DAY_MS, TopicSpec, apply_topics
from tests.conftest import free_port

PYTHON = sys.executable
WAIT = 90.0  # bound on any one expectation (a faust group join alone takes seconds)
CONFIG_LAG = 30.0  # bound on the API catching up with a configuration just applied
E = TypeVar("E", bound=Event)


class Tail:
    """Every event of some topics from the beginning, collected in the background."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kafka_options(),  # as every client of ours: over SASL_SSL in the SASL leg
        )
        await self._consumer.start()
        partitions = await partitions_of(self.bootstrap, self.topics)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            got = [e for rs in batches.values() for r in rs if (e := decode(r)) is not None]
            if got:
                async with self._changed:
                    self.events.extend(got)
                    self._changed.notify_all()

    async def until(self, found: Callable[[list[Event]], bool], timeout: float = WAIT) -> None:
        """Wait until ``found(events)`` holds."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found(self.events)), timeout)

    def of(self, cls: type[E], destination: str) -> list[E]:
        """The events of one type about one destination, in log order."""
        return [
            e
            for e in self.events
            if isinstance(e, cls) and getattr(e, "destination", None) == destination
        ]

    def done(self, destination: str) -> set[str]:
        """The transfers of ``destination`` with at least one TransferSucceeded."""
        return {e.transfer_id for e in self.of(TransferSucceeded, destination)}

    async def all_done(self, destination: str, count: int, timeout: float = WAIT) -> None:
        """Wait until ``count`` transfers of ``destination`` succeeded."""

        def enough(_: list[Event]) -> bool:
            return len(self.done(destination)) >= count

        try:
            await self.until(enough, timeout)
        except TimeoutError:
            story = "\n".join(_line(e) for e in self.events if _about(e, destination))
            pytest.fail(f"{destination}: {len(self.done(destination))}/{count} done:\n{story}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


def _about(event: Event, destination: str) -> bool:
    return getattr(event, "destination", None) == destination


def _line(event: Event) -> str:
    """One event as a diagnostic line: time, type and its short fields."""
    fields = {
        k: v
        for k in ("transfer_id", "attempt", "host_id", "new_status", "reason", "to_host", "until")
        if (v := getattr(event, k, None)) is not None
    }
    return f"{event.envelope.occurred_at:%H:%M:%S.%f} {type(event).__name__} {fields}"


@dataclass
class Stack:
    """One module's ingest API, scheduler and movers, and how to drive them."""

    kafka: str
    root: Path
    tag: str
    api_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""
    tail: Tail | None = None

    # -- names --------------------------------------------------------------------------------

    @property
    def group(self) -> str:
        return f"e2e{self.tag}"

    def topic(self, name: str) -> str:
        return f"e2e.{self.tag}.{name}"

    @property
    def orders(self) -> str:
        return f"{self.topic('orders')}.{self.group}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def key_file(self) -> Path:
        return self.root / "secrets" / "ecpds.key"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ECPDS_KEY_FILE": str(self.key_file),
            "ECPDS_STORE_ROOT": str(self.root / "store"),
        }

    # -- processes ----------------------------------------------------------------------------

    def _spawn(
        self, name: str, argv: list[str], extra: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        logs = self.root / "log"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**self.env(), **(extra or {})}
        with (logs / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(
                [PYTHON, *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        return process

    def start_api(self) -> None:
        process = self._spawn(
            "api",
            [
                "-m", "producers.api.runner", "--port", str(self.api_port),
                "--config-topic", self.topic("config"),
                "--datafiles-topic", self.topic("datafiles"),
                "--transfers-topic", self.topic("transfers"),
                "--store-root", str(self.root / "store"),
                "--tokens-file", str(self.root / "secrets" / "api-tokens"),
            ],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the API exited with {process.returncode}: {self.log('api')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v1/openapi.json", timeout=1).status_code == 200:
                    self.token = (self.root / "secrets" / "admin.token").read_text().strip()
                    return
            time.sleep(0.2)
        pytest.fail("the API did not start within 60 s")

    def start_scheduler(self) -> None:
        self._spawn(
            "scheduler",
            [
                "-m", "consumers.scheduler.runner", "--app-id", f"e2e-scheduler-{self.tag}",
                "--transfers", self.topic("transfers"), "--config", self.topic("config"),
                "--movers", self.topic("movers"), "--orders-prefix", f"{self.topic('orders')}.",
            ],
        )  # fmt: skip

    def start_mover(self, name: str = "mover", capacity: int = 8, group: str | None = None) -> None:
        """A mover of this module's transfer group, or of ``group`` (its own orders topic)."""
        orders = self.orders if group is None else f"{self.topic('orders')}.{group}"
        self._spawn(
            name,
            [
                "-m", "consumers.movers.runner", "--group", group or self.group,
                "--capacity", str(capacity), "--mover-id", f"{name}-{self.tag}",
                "--orders-topic", orders, "--transfers-topic", self.topic("transfers"),
                "--movers-topic", self.topic("movers"), "--session-timeout-ms", "6000",
                "--heartbeat", "0.5", "--config-topic", self.topic("config"),
            ],
        )  # fmt: skip

    def start_replicator(self) -> None:
        """The replicator (replication and pre-staging) on this module's topics."""
        self._spawn(
            "replicator",
            [
                "-m", "consumers.replicator.runner", "--config-topic", self.topic("config"),
                "--datafiles-topic", self.topic("datafiles"),
                "--transfers-topic", self.topic("transfers"),
                "--deadletter-topic", self.topic("deadletter"),
                "--group-id", f"e2e-replicator-{self.tag}",
            ],
        )  # fmt: skip

    def mover_id(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def kill(self, name: str) -> None:
        """SIGKILL: no outcome, no commit, no goodbye to the group."""
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def stop(self, name: str, grace: float = 30.0) -> None:
        """SIGTERM and wait (SIGKILL after ``grace``)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def log(self, name: str) -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- driving ------------------------------------------------------------------------------

    async def apply(self, document: str) -> None:
        """What ``ecpds config apply -f`` does with ``document``, on this module's topic."""
        parsed = load(document)
        key = OperatorKey.load(self.key_file)
        async with LiveConfig(self.kafka, self.topic("config")) as live:
            changes = plan(live.view, resolve(parsed, live.view, key))
            items = [
                (self.topic("config"), k, ev) for k, ev in events_for(changes, source="e2e-test")
            ]
            if items:
                async with Publisher(self.kafka, client_id="e2e-test") as publisher:
                    published = await publisher.publish_many(items)
                await live.reached(published)

    async def put(
        self,
        client: httpx.AsyncClient,
        destination: str,
        target: str,
        data: bytes,
        metadata: str | None = None,
    ) -> str:
        """POST one file; returns its transfer id to ``destination``.

        The API follows the config topic on its own, so a destination applied a moment ago
        may not be known to it yet: a refusal for an unknown destination (which stores
        nothing) is retried for a bounded time.
        """
        params = {"destination": destination, "target": target}
        if metadata:
            params["metadata"] = metadata
        deadline = time.monotonic() + CONFIG_LAG
        while True:
            response = await client.post(
                f"{self.url}/api/v1/datafiles",
                params=params,
                content=data,
                headers={"Authorization": f"Bearer {self.token}"},
            )
            unknown = response.status_code == 404 and "UNKNOWN_DESTINATION" in response.text
            if not unknown or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert response.status_code == 201, response.text
        transfers = response.json()["transfers"]
        return str(transfers[0]["transfer_id"])

    def queued(self, destination: str) -> list[TransferQueued]:
        assert self.tail is not None
        return self.tail.of(TransferQueued, destination)


async def create_topics(stack: Stack) -> None:
    """The module's topics, made before any component starts (movers subscribe at once)."""
    specs = [
        TopicSpec(stack.orders, "destination", 2, "delete", DAY_MS, (), "e2e orders"),
        TopicSpec(stack.topic("movers"), "mover id", 1, "delete", DAY_MS, (), "e2e movers"),
    ]
    await apply_topics(stack.kafka, specs)


PROBE = """
transfer_groups:
  - name: {group}
hosts:
  - id: probe-{tag}
    nickname: probe outbox
    type: dissemination
    protocol: file
    address: localhost{root}
    directory: probe/
destinations:
  - name: probe-{tag}
    type: dissemination
    transfer_group: {group}
associations:
  - destination: probe-{tag}
    host: probe-{tag}
    priority: 0
"""


@pytest.fixture(scope="module")
async def stack(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """API, scheduler and one mover ("mover") running for a unique transfer group; ready once a
    probe file went through the whole chain."""
    tag = uuid.uuid4().hex[:8]
    made = Stack(kafka, tmp_path_factory.mktemp(f"e2e-{tag}"), tag)
    (made.root / "secrets").mkdir()
    (made.root / "outbox").mkdir()
    await create_topics(made)
    try:
        await asyncio.to_thread(made.start_api)
        made.start_scheduler()
        made.start_mover()
        made.tail = Tail(kafka, [made.topic("transfers")])
        await made.tail.start()
        probe = PROBE.format(group=made.group, tag=tag, root=made.root / "outbox")
        await made.apply(probe)
        async with httpx.AsyncClient(timeout=30) as client:
            await made.put(client, f"probe-{tag}", "probe.txt", b"probe")
        try:
            await made.tail.all_done(f"probe-{tag}", 1, timeout=120)
        except BaseException:
            print("scheduler:", made.log("scheduler"), "mover:", made.log("mover"))
            raise
        assert (made.root / "outbox" / "probe" / "probe.txt").read_bytes() == b"probe"
        yield made
    finally:
        # the scheduler and the movers stop side by side (faust takes seconds to leave)
        others = [n for n in made.processes if n != "api"]
        await asyncio.gather(*(asyncio.to_thread(made.stop, n) for n in others))
        await asyncio.to_thread(made.stop, "api")
        if made.tail is not None:
            await made.tail.stop()
