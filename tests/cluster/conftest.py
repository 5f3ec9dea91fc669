"""The multi-node world of ``make test-cluster``: ecpds on a 3-broker Kafka cluster with several
instances of every component, each a separate process, delivering to 20 destinations.

- ``ClusterInfra``: the chaos suite's ``Infra`` on three KRaft brokers
  (``infra/kafka/cluster.sh``: replication factor 3, ``min.insync.replicas`` 2, node N on
  ``ECPDS_KAFKA_PORT + 100 + 2(N-1)``) and a PostgreSQL (a free port), under
  ``$ECPDS_VAR/cluster-run``.
- ``ClusterStack``: the chaos stack with every component started by its command
  (``cli.supervisor.components``, as ``ecpds up`` and an operator run them) and instances
  named ``<component>-<n>``: 2 APIs (own ports), 2 schedulers, 3 movers in two transfer groups
  (``mover-a1``, ``mover-a2``, ``mover-b1``), 2 projectors, the notifier and the janitor.
- 20 destinations on loopback (``destinations``): 12 over SFTP (OpenSSH), 8 over FTP
  (pyftpdlib), every host with ``max_connections`` 2; five SFTP destinations share one host
  and four FTP destinations another, and every shared host's destinations are named so they
  fall in one partition of ``ecpds.transfers`` (the scheduler's placement then gives the two
  schedulers two groups each: both decide, and each shared host is counted by one).
- ``Uploads`` (``tests.cluster.uploads``) counts the files being written at once in every
  host's folder, at the servers.

Rule kept: everything started here is stopped by the fixture, even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bus.settings import Settings
from bus.topics import apply_topics, catalogue, orders_topic
from cli.supervisor import components
from consumers.scheduler.placement import partition_of
from tests.chaos.checks import delivered_by, stuck
from tests.chaos.conftest import World, configuration
from tests.chaos.load import Load
from tests.chaos.world import ChaosStack, Destination, Infra, Servers
from tests.cluster.uploads import Uploads
from tests.conftest import free_port
from tests.e2e.conftest import Tail

NODES = 3
GROUPS = {"a": "cluster-a", "b": "cluster-b"}  # mover-<letter><n> serves GROUPS[letter]
MOVERS = ("mover-a1", "mover-a2", "mover-b1")
APIS = ("api-1", "api-2")
# started in this order (the first API writes the admin token the second one reads)
COMPONENTS = (
    *APIS,
    "scheduler-1",
    "scheduler-2",
    *MOVERS,
    "projector-1",
    "projector-2",
    "notifier",
    "janitor",
)
HOST_LIMIT = 2  # every host's max_connections
PARTITIONS = 4  # ecpds.transfers' partitions (the catalogue's default)
COMMANDS = {c.name: list(c.argv[1:]) for c in components()}  # without the interpreter


@dataclass
class ClusterInfra(Infra):
    """Three Kafka brokers and a PostgreSQL under ``var``."""

    cluster_port: int = 0  # node 1's listener; node N's is this + 2(N-1)

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "ECPDS_KAFKA_CLUSTER_PORT": str(self.cluster_port),
            "ECPDS_KAFKA_BOOTSTRAP": self.bootstrap,
            "ECPDS_KAFKA_REPLICATION": str(NODES),
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.cluster_port + 2 * n}" for n in range(NODES))

    def start(self) -> None:
        self.stop()  # what a run killed before its teardown left
        shutil.rmtree(self.var, ignore_errors=True)
        self.var.mkdir(parents=True)
        self.script("kafka/cluster.sh", "start")
        self.script("pg/pg.sh", "start")

    def stop(self) -> None:
        for script in ("kafka/cluster.sh", "pg/pg.sh"):
            with contextlib.suppress(RuntimeError):
                self.script(script, "stop")

    def kill_node(self, node: int) -> None:
        """SIGKILL broker ``node`` (``cluster.sh kill``: waits until the process is gone)."""
        self.script("kafka/cluster.sh", "kill", str(node))

    def start_node(self, node: int) -> None:
        self.script("kafka/cluster.sh", "start", str(node))


@dataclass
class ClusterStack(ChaosStack):
    """Every component as its command, several instances of each, on the cluster's topics."""

    api_ports: dict[str, int] = field(default_factory=lambda: {n: free_port() for n in APIS})

    def url_of(self, api: str) -> str:
        return f"http://127.0.0.1:{self.api_ports[api]}"

    def start(self, name: str) -> None:
        """Start instance ``name`` (``<component>-<n>``) by the component's command."""
        kind = name.split("-")[0]
        argv = list(COMMANDS[kind])
        if kind == "api":
            argv += ["--port", str(self.api_ports[name])]
            argv += ["--tokens-file", str(self.root / "secrets" / "api-tokens")]
        elif kind == "mover":
            argv += ["--group", GROUPS[name[len("mover-")]], "--mover-id", f"{name}-{self.tag}"]
            # the e2e movers' session: a killed mover's orders move on in seconds
            argv += ["--capacity", "8", "--session-timeout-ms", "6000", "--heartbeat", "0.5"]
        elif kind == "janitor":
            argv += ["--interval", "5"]  # temporaries of killed attempts removed soon
        # named APIs recover only their own open registrations after a kill, never the
        # other API's uploads in flight (producers.ingest.core.left_open_by)
        named = {"ECPDS_INSTANCE": f"{name}-{self.tag}"} if kind == "api" else None
        process = self._spawn(name, argv, named)
        if kind == "api":
            self._answering(name, process.pid)

    def _answering(self, name: str, pid: int) -> None:
        """Wait until API ``name`` answers; read the admin token the first one wrote."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.processes[name].poll() is None, f"{name} exited: {self.log(name)}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url_of(name)}/api/v1/openapi.json", timeout=1).is_success:
                    self.token = (self.root / "secrets" / "admin.token").read_text().strip()
                    return
            time.sleep(0.2)
        pytest.fail(f"{name} (pid {pid}) did not answer within 90 s")


@dataclass
class ClusterWorld(World):
    """The chaos ``World`` with the cluster's own: its uploads meter and host limits."""

    uploads: Uploads | None = None
    limits: dict[Path, int] = field(default_factory=dict)  # host folder -> max_connections
    known: set[str] = field(default_factory=set)  # every target put so far (others: litter)

    def loads(self, rate: float) -> list[Load]:
        """One load per API, ``rate`` files/s in all, each round robin over every destination."""
        assert isinstance(self.stack, ClusterStack)
        return [
            Load(self.stack.url_of(api), self.stack.token, self.destinations, rate / len(APIS))
            for api in APIS
        ]

    def folder(self, destination: Destination) -> Path:
        if destination.protocol == "sftp":
            return self.servers.sftp_folder(destination.base)
        return self.servers.ftp_folder(destination.base)


def named_in(partition: int, stem: str) -> str:
    """``stem`` with the first suffix that puts it in ``partition`` of ecpds.transfers."""
    for n in range(1000):
        if partition_of(name := f"{stem}x{n}", PARTITIONS) == partition:
            return name
    raise AssertionError("no name found")  # pragma: no cover - 1,000 tries at 1 in 4


def destinations(tag: str) -> list[Destination]:
    """Twenty destinations: a shared SFTP host (5, partition 0, group a), a shared FTP host
    (4, partition 1, group b), and 11 with a host of their own (7 SFTP, 4 FTP), both groups."""

    def one(name: str, protocol: str, base: str, group: str) -> Destination:
        return Destination(name, protocol, base, False, GROUPS[group], HOST_LIMIT)

    made = [one(named_in(0, f"ssh{i}-{tag}"), "sftp", f"cl-{tag}-ssh", "a") for i in range(5)]
    made += [one(named_in(1, f"fsh{i}-{tag}"), "ftp", f"cl-{tag}-fsh", "b") for i in range(4)]
    own = [("sftp", "a")] * 4 + [("sftp", "b")] * 3 + [("ftp", "a")] * 2 + [("ftp", "b")] * 2
    made += [one(f"{p}{i}-{tag}", p, f"cl-{tag}-{p}{i}", group) for i, (p, group) in enumerate(own)]
    return made


@pytest.fixture(scope="module")
async def world(mqtt_port: int, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """The cluster world, ready once a file reached each destination."""
    settings = Settings.from_env()
    tag = uuid.uuid4().hex[:6]
    root = tmp_path_factory.mktemp(f"cluster-{tag}")
    # the brokers on the session's Kafka port + 100 (cluster.sh's default), PostgreSQL on a
    # free port (the session's own may be running on its port)
    infra = ClusterInfra(
        settings.var_dir / "cluster-run",
        kafka_port=settings.kafka_port,
        cluster_port=settings.kafka_port + 100,
    )
    stack = ClusterStack(infra.bootstrap, root, tag, infra=infra, store=root / "store")
    stack.mqtt_port = mqtt_port
    try:
        await asyncio.to_thread(infra.start)  # in the try: a half-started cluster is stopped too
        with Servers.running(root, None) as servers:
            chosen = destinations(tag)
            made = ClusterWorld(infra, stack, servers, chosen, None, root / "store", False)
            made.limits = {made.folder(d): d.host_connections for d in chosen}
            for folder in made.limits:
                folder.mkdir(parents=True)
            with Uploads(list(made.limits)) as uploads:
                made.uploads = uploads
                async for ready in _running(made, servers):
                    yield ready
    finally:
        await asyncio.to_thread(infra.stop)


async def _running(made: ClusterWorld, servers: Servers) -> AsyncIterator[World]:
    stack = made.stack
    assert isinstance(made.infra, ClusterInfra)
    specs = [*catalogue(PARTITIONS), *(orders_topic(g) for g in GROUPS.values())]
    await apply_topics(made.infra.bootstrap, specs, replication=NODES)
    (stack.root / "secrets").mkdir()
    try:
        for name in COMPONENTS:
            await asyncio.to_thread(stack.start, name)
        stack.tail = Tail(stack.kafka, [stack.topic("transfers")])
        await stack.tail.start()
        ports = {"sftp": servers.sshd.port, "ftp": servers.ftp.port}
        await stack.apply(configuration(made.destinations, servers, ports))
        await _warm_up(made)
        yield made
    finally:
        # every instance at once: each takes seconds to leave its group
        await asyncio.gather(*(asyncio.to_thread(stack.stop, n) for n in list(stack.processes)))
        if stack.tail is not None:
            await stack.tail.stop()


async def _warm_up(made: ClusterWorld) -> None:
    """Two files to each destination, one through each API, every one delivered."""
    loads = made.loads(2.0 * len(made.destinations))
    await asyncio.gather(*(load.run(f"warm-up-{i}", 1.0, 120) for i, load in enumerate(loads)))
    load = combined(loads)
    made.known |= {s.target for s in load.sent}
    _, undelivered = await delivered_by(made, load, "warm-up", time.time(), 180)
    assert not undelivered, f"warm-up: {stuck(made, undelivered)}"


def combined(loads: list[Load]) -> Load:
    """One load holding what ``loads`` sent and were answered (for the chaos checks)."""
    load = Load(loads[0].url, loads[0].token, loads[0].destinations, 0.0)
    for each in loads:
        load.sent += each.sent
        load.answers += each.answers
    return load
