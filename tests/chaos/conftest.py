"""Fixtures of the chaos suite (``make chaos``): one private world for the whole module.

The suite is marked ``chaos`` and runs only when that marker is asked for (``-m chaos``, see
``tests/conftest.py``): ``make test`` skips it, since it takes minutes, kills processes and
mounts a tmpfs. The
world (see ``tests.chaos.world``): a private Kafka and PostgreSQL, the API, the scheduler,
two movers, the projector and the notifier as processes with their default topics, ten
destinations over SFTP, FTP and S3 (SFTP and S3 through Toxiproxy), and the object store on a
size-capped tmpfs. It is ready once a file reached every destination.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus.events.transfers import TransferSucceeded
from bus.settings import ROOT
from bus.topics import apply_topics, catalogue, orders_topic
from tests.chaos.load import Load
from tests.chaos.toxiproxy import SERVER, Toxiproxy, toxiproxy_server
from tests.chaos.world import (
    GROUP,
    ChaosStack,
    Destination,
    Infra,
    Servers,
    destinations,
    mount_tmpfs,
    unmount,
)
from tests.conftest import free_port as a_free_port
from tests.e2e.conftest import Tail
from tests.protocols.conftest import free_port
from tests.protocols.test_s3 import Moto, moto

__all__ = ["free_port", "moto"]  # the S3 server's fixture and the one it needs

CHAOS_VAR = ROOT / "var" / "chaos"
STORE_SIZE = "128m"
COMPONENTS = ("api", "scheduler", "mover-a", "mover-b", "projector", "notifier")


@dataclass
class World:
    """Everything a fault phase needs: the processes, the servers, the proxy, the log."""

    infra: Infra
    stack: ChaosStack
    servers: Servers
    destinations: list[Destination]
    proxy: Toxiproxy | None
    store: Path
    store_capped: bool
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tail(self) -> Tail:
        assert self.stack.tail is not None
        return self.stack.tail

    def load(self, rate: float) -> Load:
        return Load(self.stack.url, self.stack.token, self.destinations, rate)


PROXIED = {"sftp": "sftp", "s3": "s3"}  # protocol -> Toxiproxy proxy name


def configuration(
    world_destinations: list[Destination], servers: Servers, ports: dict[str, int]
) -> str:
    """The YAML of the destinations' transfer groups, every destination, its host (once for
    destinations sharing it) and their association."""
    groups = "".join(f"  - name: {g}\n" for g in sorted({d.group for d in world_destinations}))
    first = {d.host_id: d for d in reversed(world_destinations)}  # a shared host's first one
    hosts = "".join(d.host_yaml(servers, ports[d.protocol]) for d in first.values())
    dests = "".join(d.destination_yaml() for d in world_destinations)
    links = "".join(
        f"  - {{destination: {d.name}, host: {d.host_id}, priority: 0}}\n"
        for d in world_destinations
    )
    return f"transfer_groups:\n{groups}hosts:\n{hosts}destinations:\n{dests}associations:\n{links}"


@pytest.fixture(scope="module")
async def world(
    moto: Moto, mqtt_port: int, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    """The chaos world, ready once one file reached each destination."""
    tag = uuid.uuid4().hex[:6]
    root = tmp_path_factory.mktemp(f"chaos-{tag}")
    infra = Infra(CHAOS_VAR / "run")
    store = root / "store"
    await asyncio.to_thread(infra.start)
    capped = mount_tmpfs(store, STORE_SIZE)
    stack = ChaosStack(infra.bootstrap, root, tag, infra=infra, store=store)
    try:
        with Servers.running(root, moto) as servers:
            if SERVER.exists():
                with toxiproxy_server(a_free_port(), root / "toxiproxy.log") as proxy:
                    async for made in _world(stack, servers, proxy, store, capped, mqtt_port):
                        yield made
            else:
                async for made in _world(stack, servers, None, store, capped, mqtt_port):
                    yield made
    finally:
        if capped:
            unmount(store)
        await asyncio.to_thread(infra.stop)


async def _world(
    stack: ChaosStack,
    servers: Servers,
    proxy: Toxiproxy | None,
    store: Path,
    capped: bool,
    mqtt_port: int,
) -> AsyncIterator[World]:
    assert stack.infra is not None
    ports = {"sftp": servers.sshd.port, "ftp": servers.ftp.port, "s3": servers.moto.port}
    if proxy is not None:
        for protocol, name in PROXIED.items():
            listen = a_free_port()
            proxy.create(name, listen, ports[protocol])
            ports[protocol] = listen
    chosen = destinations(stack.tag)
    for d in chosen:
        if d.protocol == "sftp":
            servers.sftp_folder(d.base).mkdir(parents=True)
        elif d.protocol == "ftp":
            servers.ftp_folder(d.base).mkdir(parents=True)
    (stack.root / "secrets").mkdir()
    await apply_topics(stack.kafka, [*catalogue(), orders_topic(GROUP)])
    stack.mqtt_port = mqtt_port
    try:
        await asyncio.to_thread(stack.start_api)
        for name in COMPONENTS[1:]:
            stack.start(name)
        stack.tail = Tail(stack.kafka, [stack.topic("transfers")])
        await stack.tail.start()
        await stack.apply(configuration(chosen, servers, ports))
        made = World(stack.infra, stack, servers, chosen, proxy, store, capped)
        async with httpx.AsyncClient(timeout=30) as client:
            for d in chosen:
                await stack.put(client, d.name, "warm-up.bin", b"warm-up")
        for d in chosen:
            await made.tail.all_done(d.name, 1, timeout=180)
        yield made
    finally:
        others = [n for n in stack.processes if n != "api"]
        await asyncio.gather(*(asyncio.to_thread(stack.stop, n) for n in others))
        await asyncio.to_thread(stack.stop, "api")
        if stack.tail is not None:
            await stack.tail.stop()


def succeeded(tail: Tail) -> dict[str, list[tuple[str, str]]]:
    """Each transfer's TransferSucceeded records in log order: (event id, verification)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for event in tail.events:
        if isinstance(event, TransferSucceeded):
            record = (event.envelope.event_id, event.verification.value)
            found.setdefault(event.transfer_id, []).append(record)
    return found
