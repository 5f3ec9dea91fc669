"""ecpds on a 3-broker Kafka cluster survives the loss of one broker: the cluster is started
through ``infra/kafka/cluster.sh`` (its own folders and ports: the suite's Kafka port + 100 to
+ 105), the ecpds topics are created by ``apply_topics`` with 3 copies, and while a publisher
(``acks=all``) and a consumer in a group, both given the list of the three, keep working, one
broker is SIGKILLed and brought back. Every acknowledged event must reach the consumer; the
time until every partition takes writes again is printed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from bus import codec
from bus.consumer import stage_consumer
from bus.errors import TransientError
from bus.events.movers import MoverHeartbeat
from bus.publisher import Publisher
from bus.settings import ROOT, Settings
from bus.topics import DEFAULT_TRANSFER_GROUP, MOVERS, apply_topics, catalogue, orders_topic
from tests.bus.samples import sample

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
NODES = 3


def cluster_script(settings: Settings, *args: str) -> str:
    """Run ``cluster.sh args`` for this session's var dir and ports; its output. A failure
    fails the test."""
    done = subprocess.run(
        ["bash", str(ROOT / "infra" / "kafka" / "cluster.sh"), *args],
        env={**os.environ, **settings.infra_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr or done.stdout
    return done.stdout.strip()


@pytest.fixture(scope="module")
def cluster(settings: Settings) -> Iterator[str]:
    """A fresh 3-node cluster; yields its bootstrap list. Stopped and removed afterwards (and
    before: one a crashed run left behind)."""
    cluster_script(settings, "stop")
    shutil.rmtree(settings.var_dir / "cluster", ignore_errors=True)
    try:
        cluster_script(settings, "start")
        yield cluster_script(settings, "bootstrap")
    finally:
        cluster_script(settings, "stop")
        shutil.rmtree(settings.var_dir / "cluster", ignore_errors=True)


@contextlib.asynccontextmanager
async def admin_of(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def partitions(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """``topic``'s partitions as the cluster describes them (leader, replicas, isr); asked
    again for a while if the broker asked is the one just killed."""
    for attempt in range(30):
        try:
            async with admin_of(bootstrap) as admin:
                described = await admin.describe_topics([topic])
            return sorted(described[0]["partitions"], key=lambda p: p["partition"])
        except KafkaError:
            if attempt == 29:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    """Poll the async ``check`` until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with contextlib.suppress(Exception):  # a broker still starting refuses requests
            if await check():
                return
        assert asyncio.get_running_loop().time() < deadline, f"{what} not within {timeout} s"
        await asyncio.sleep(0.5)


class Load:
    """Publishes heartbeats of numbered movers through one ``Publisher`` and remembers which
    the cluster acknowledged, with where and when."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.sent = 0
        self.acked: dict[str, tuple[int, float]] = {}  # mover id -> (partition, ack time)

    async def _one(self, mover: str) -> None:
        heartbeat = sample(MoverHeartbeat, mover_id=mover, transfer_group="cluster")
        with contextlib.suppress(TransientError, TimeoutError):  # not acknowledged: not counted
            where = await asyncio.wait_for(self.publisher.publish(MOVERS, mover, heartbeat), 40)
            self.acked[mover] = (where.partition, asyncio.get_running_loop().time())

    async def round(self, size: int = 8) -> None:
        """Publish ``size`` heartbeats at once (distinct keys: every partition gets some)."""
        movers = [f"m{self.sent + i}" for i in range(size)]
        self.sent += size
        await asyncio.gather(*(self._one(m) for m in movers))

    def first_ack_after(self, since: float) -> dict[int, float]:
        """Per partition, the first acknowledgement that came after ``since``."""
        firsts: dict[int, float] = {}
        for partition, at in self.acked.values():
            if at > since:
                firsts[partition] = min(at, firsts.get(partition, at))
        return firsts


async def test_one_broker_killed_loses_no_acknowledged_event(
    cluster: str, settings: Settings, unique: str
) -> None:
    """With topics of 3 copies and min.insync.replicas 2, a SIGKILLed broker stops writes only
    until the cluster fences it; acks=all publishing then goes on with two copies, a consumer
    reading through the bootstrap list misses no acknowledged event, and the broker rejoins
    every partition's in-sync replicas when started again."""
    async with admin_of(cluster) as admin:
        await wait_for(
            lambda: _brokers(admin, NODES), "3 brokers registered with the controller", 90
        )
    specs = [*catalogue(), orders_topic(DEFAULT_TRANSFER_GROUP)]
    await apply_topics(cluster, specs, replication=NODES)
    for spec in specs:  # every broker learns of a new topic soon, not at once
        await wait_for(partial(_copies, cluster, spec.name), f"{spec.name} with 3 copies", 20)
    async with admin_of(cluster) as admin:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, MOVERS)])
    config = {e[0]: e[1] for r in described for row in r.resources for e in row[4]}
    assert config["min.insync.replicas"] == "2"

    seen: set[str] = set()
    consumer = stage_consumer(MOVERS, bootstrap=cluster, group_id=f"test.{unique}")
    await consumer.start()
    reading = asyncio.create_task(_read(consumer, seen))
    try:
        async with Publisher(cluster) as publisher:
            load = Load(publisher)
            for _ in range(4):
                await load.round()
            assert len(load.acked) == load.sent

            victim = (await partitions(cluster, MOVERS))[0]["leader"]
            async with admin_of(cluster) as admin:
                controller = (await admin.describe_cluster())["controller_id"]
            role = "the active controller" if victim == controller else "not the controller"
            killed_at = asyncio.get_running_loop().time()
            cluster_script(settings, "kill", str(victim))
            count = len(await partitions(cluster, MOVERS))
            deadline = killed_at + 60
            while len(load.first_ack_after(killed_at)) < count:
                assert asyncio.get_running_loop().time() < deadline, "writes did not resume"
                await load.round()
            recovery = max(load.first_ack_after(killed_at).values()) - killed_at
            print(f"\ncluster: broker {victim} ({role}) SIGKILLed; every partition of {MOVERS}")
            print(f"took an acks=all write again {recovery:.1f} s later")
            survivors = await partitions(cluster, MOVERS)
            assert all(victim not in p["isr"] and len(p["isr"]) == 2 for p in survivors)
            assert all(p["leader"] != victim for p in survivors)

            cluster_script(settings, "start", str(victim))
            await wait_for(
                lambda: _all_in_sync(cluster), f"broker {victim} back in every ISR of {MOVERS}"
            )
            for _ in range(2):
                await load.round()
            acked = set(load.acked)
            await wait_for(lambda: _holds(seen, acked), "every acknowledged event consumed", 45)
            print(f"cluster: {len(acked)} of {load.sent} heartbeats acknowledged, all consumed")
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        await consumer.stop()


async def _brokers(admin: AIOKafkaAdminClient, count: int) -> bool:
    return len((await admin.describe_cluster())["brokers"]) == count


async def _copies(bootstrap: str, topic: str) -> bool:
    replicas = [len(p["replicas"]) for p in await partitions(bootstrap, topic)]
    return bool(replicas) and set(replicas) == {NODES}


async def _all_in_sync(bootstrap: str) -> bool:
    return all(len(p["isr"]) == NODES for p in await partitions(bootstrap, MOVERS))


async def _holds(seen: set[str], acked: set[str]) -> bool:
    return acked <= seen


async def _read(consumer: AIOKafkaConsumer, seen: set[str]) -> None:
    """Add the mover id of every heartbeat ``consumer`` reads to ``seen``, until cancelled."""
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                seen.add(codec.decode(record.value).mover_id)
