"""Helpers for the mover tests: stored objects, orders, a mover in the test loop, outcomes.

Orders are published straight to a private orders topic (the movers are under test, not the
scheduler); outcomes are read back from private transfers and movers topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bus.events import Event, envelope
from bus.events.base import Compression
from bus.events.config import Host, HostType, IfTargetExists
from bus.events.datafiles import Checksums
from bus.events.orders import TransferOrdered
from bus.publisher import Publisher
from bus.settings import ROOT
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.janitor.feed import EventFeed
from consumers.movers.config import MoverConfig
from consumers.movers.ports import Replicas
from consumers.movers.runner import Mover
from protocols.base import from_bytes
from store.local import LocalStore
from store.named import NamedStores
from store.objects import ObjectSpec, new_object_id


@dataclass(frozen=True)
class Topics:
    """A private set of topics and a group for one test (or module)."""

    group: str
    orders: str
    transfers: str
    movers: str
    deadletter: str

    @classmethod
    def unique(cls) -> Topics:
        tag = uuid.uuid4().hex[:10]
        return cls(
            group=f"g{tag}",
            orders=f"t.orders.{tag}",
            transfers=f"t.transfers.{tag}",
            movers=f"t.movers.{tag}",
            deadletter=f"t.deadletter.{tag}",
        )

    async def create(self, kafka: str, order_partitions: int = 2) -> None:
        specs = [
            TopicSpec(self.orders, "destination", order_partitions, "delete", DAY_MS, (), "t"),
            TopicSpec(self.transfers, "destination", 2, "delete", DAY_MS, (), "t"),
            TopicSpec(self.movers, "mover id", 1, "delete", DAY_MS, (), "t"),
            TopicSpec(self.deadletter, "origin", 1, "delete", DAY_MS, (), "t"),
        ]
        await apply_topics(kafka, specs)

    def config(self, kafka: str, key_file: Path, **kw: object) -> MoverConfig:
        fields: dict[str, object] = {
            "bootstrap": kafka,
            "transfer_group": self.group,
            "key_file": key_file,
            "capacity": 8,
            "heartbeat_s": 0.5,
            "session_timeout_ms": 6000,
            "orders_topic": self.orders,
            "group_id": f"ecpds-movers-{self.group}",
            "transfers_topic": self.transfers,
            "movers_topic": self.movers,
            "deadletter_topic": self.deadletter,
        }
        fields.update(kw)
        return MoverConfig(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Stored:
    """An object put in the test store, with its bytes."""

    guid: str
    store: str
    data: bytes


async def stored(store: LocalStore, data: bytes | None = None, size: int = 300_000) -> Stored:
    payload = data if data is not None else os.urandom(size // 2) + b"abc" * (size // 6)
    oid = new_object_id()
    await store.put(from_bytes(payload, 256 * 1024), ObjectSpec(name=oid, id=oid))
    return Stored(oid, store.name, payload)


def host(protocol: str, address: str, **kw: object) -> Host:
    fields: dict[str, object] = {
        "id": f"{protocol}-{uuid.uuid4().hex[:6]}",
        "nickname": f"{protocol} test host",
        "type": HostType.DISSEMINATION,
        "protocol": protocol,
        "address": address,
    }
    fields.update(kw)
    return Host(**fields)  # type: ignore[arg-type]


def order(
    obj: Stored,
    target_host: Host,
    *,
    destination: str = "site-a",
    target: str = "data/product.grib",
    compression: Compression = Compression.NONE,
    attempt: int = 1,
    remote_path: str | None = None,
    metadata: dict[str, str] | None = None,
    if_target_exists: IfTargetExists = IfTargetExists.OVERWRITE,
) -> TransferOrdered:
    transfer_id = uuid.uuid4().hex
    return TransferOrdered(
        envelope=envelope("test", transfer_id),
        transfer_id=transfer_id,
        destination=destination,
        data_file_id=uuid.uuid4().hex,
        attempt=attempt,
        transfer_group="test",
        host=target_host,
        target=target,
        guid=obj.guid,
        store=obj.store,
        location=obj.guid,
        size=len(obj.data),
        checksums=Checksums(adler32="0"),
        priority=50,
        expiry_time=datetime.now(UTC) + timedelta(days=1),
        compression=compression,
        if_target_exists=if_target_exists,
        remote_path=remote_path,
        original="product.grib",
        metadata=metadata or {"stream": "oper"},
    )


@dataclass
class Outcomes:
    """Every event seen on a topic, read continuously in the background."""

    kafka: str
    topic: str
    events: list[Event] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        feed = EventFeed(self.kafka, [self.topic])
        await feed.start()

        async def pump() -> None:
            try:
                while True:
                    self.events += await feed.poll(0.2)
            finally:
                await feed.stop()

        self._task = asyncio.create_task(pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def of(self, transfer_id: str, kind: type[Event] | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if getattr(e, "transfer_id", None) == transfer_id
            and (kind is None or isinstance(e, kind))
        ]

    async def wait(
        self, transfer_id: str, kinds: tuple[type[Event], ...], timeout: float = 60
    ) -> Event:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for event in self.events:
                if getattr(event, "transfer_id", None) == transfer_id and isinstance(event, kinds):
                    return event
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {kinds} for {transfer_id} within {timeout}s: {self.events!r}")

    async def wait_for(self, kind: type[Event], count: int = 1, timeout: float = 60) -> list[Event]:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            found = [e for e in self.events if isinstance(e, kind)]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"fewer than {count} {kind.__name__} within {timeout}s")


@contextlib.asynccontextmanager
async def running_mover(
    config: MoverConfig, store_root: Path, replicas: Replicas | None = None
) -> AsyncIterator[Mover]:
    """A mover running in the test loop; stopped gracefully on exit."""
    mover = Mover(config, NamedStores(store_root, durable=False), replicas=replicas)
    task = asyncio.create_task(mover.run())
    try:
        yield mover
    finally:
        mover.stop()
        await asyncio.wait_for(task, 30)


def spawn_mover(
    topics: Topics,
    mover_id: str,
    store_root: Path,
    key_file: Path,
    *,
    transfers_topic: str | None = None,
) -> subprocess.Popen[bytes]:
    """A mover in its own process (to be SIGKILLed); ``transfers_topic`` a topic that does
    not exist makes it deliver but never get its outcome acknowledged."""
    env = {
        **os.environ,
        "ECPDS_STORE_ROOT": str(store_root),
        "ECPDS_KEY_FILE": str(key_file),
        "ECPDS_LOG_LEVEL": "WARNING",
    }
    argv = [
        sys.executable, "-m", "consumers.movers.runner", "--group", topics.group,
        "--capacity", "2", "--mover-id", mover_id, "--orders-topic", topics.orders,
        "--transfers-topic", transfers_topic or topics.transfers,
        "--movers-topic", topics.movers, "--session-timeout-ms", "6000", "--heartbeat", "0.5",
    ]  # fmt: skip
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


async def publish_orders(kafka: str, topic: str, *orders: TransferOrdered) -> None:
    async with Publisher(kafka) as publisher:
        await publisher.publish_many((topic, o.destination, o) for o in orders)


__all__ = [
    "Outcomes",
    "Stored",
    "Topics",
    "host",
    "order",
    "publish_orders",
    "replace",
    "spawn_mover",
    "stored",
]
