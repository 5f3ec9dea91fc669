"""Every Kafka topic ecpds uses, declared once.

A ``TopicSpec`` names the topic, what its key is, how many partitions it has, how it is cleaned
up (delete after a retention, or compacted) and which event types may travel on it. The
consumer runner dead-letters a message whose type is not allowed on its topic, and the
publisher refuses to send one. ``apply_topics`` creates what is missing and aligns the
configuration of what exists; running it twice changes nothing. On a cluster it creates each
topic with ``replication`` copies (``ECPDS_KAFKA_REPLICATION``) and requires a majority of them
for a write acknowledged to ``acks=all`` (``min.insync.replicas``: 2 of 3), so one broker may
die without losing an acknowledged event or stopping writes. An existing topic keeps the
replication it was created with (changing it is a partition reassignment, an operator's act).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidPartitionsError, TopicAlreadyExistsError

from bus.errors import InfrastructureError
from bus.kafka_access import kafka_options

DAY_MS = 24 * 3600 * 1000

CleanupPolicy = Literal["delete", "compact"]


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, key, layout and the event namespaces allowed on it."""

    name: str
    key: str
    partitions: int
    cleanup: CleanupPolicy
    retention_ms: int
    namespaces: tuple[str, ...]
    description: str

    def allows(self, event_type: str) -> bool:
        """Whether an event of this Avro full name may be published on this topic."""
        namespace = event_type.rpartition(".")[0]
        return namespace in self.namespaces

    def kafka_config(self) -> dict[str, str]:
        config: dict[str, str] = {"cleanup.policy": self.cleanup}
        if self.cleanup == "delete":
            config["retention.ms"] = str(self.retention_ms)
        else:
            # compacted topics keep the last value per key for ever; tombstones go after a day
            config["retention.ms"] = "-1"
            config["delete.retention.ms"] = str(DAY_MS)
            config["min.cleanable.dirty.ratio"] = "0.1"
        return config


CONFIG = "ecpds.config"
DATAFILES = "ecpds.datafiles"
ACQUISITION = "ecpds.acquisition"
TRANSFERS = "ecpds.transfers"
ORDERS_PREFIX = "ecpds.orders."
PORTAL = "ecpds.portal"
NOTIFICATIONS = "ecpds.notifications"
MOVERS = "ecpds.movers"
PRODUCTS = "ecpds.products"
DEADLETTER = "ecpds.deadletter"
SCHEDULER_SNAPSHOTS = "ecpds.scheduler.snapshots"

DEFAULT_TRANSFER_GROUP = "default"


@functools.cache
def event_topics() -> frozenset[str]:
    """The fixed topics that carry events (all but the scheduler's snapshots, a cache of its
    state): what the projector, a rebuild and ``ecpds events`` read."""
    return frozenset(s.name for s in catalogue() if s.name != SCHEDULER_SNAPSHOTS)


def catalogue(partitions: int = 4, retention_days: int = 14) -> tuple[TopicSpec, ...]:
    """The fixed topics (orders topics are per transfer group: see ``orders_topic``)."""
    keep = retention_days * DAY_MS
    return (
        TopicSpec(
            CONFIG,
            "kind/id",
            1,
            "compact",
            -1,
            ("ecpds.config",),
            "destinations, hosts, associations, transfer groups, data users, policies",
        ),
        TopicSpec(
            DATAFILES,
            "data file id",
            partitions,
            "delete",
            keep,
            ("ecpds.datafiles",),
            "registered, stored, replicated, expired, deleted",
        ),
        TopicSpec(
            ACQUISITION,
            "host id",
            partitions,
            "delete",
            keep,
            ("ecpds.acquisition",),
            "listings, discoveries, retrievals",
        ),
        TopicSpec(
            TRANSFERS,
            "destination",
            partitions,
            "delete",
            keep,
            ("ecpds.transfers",),
            "transfer lifecycle, destination status, host switches, operator requests",
        ),
        TopicSpec(
            PORTAL,
            "user",
            partitions,
            "delete",
            keep,
            ("ecpds.portal",),
            "uploads, downloads, denied access",
        ),
        TopicSpec(
            NOTIFICATIONS,
            "destination",
            partitions,
            "delete",
            keep,
            ("ecpds.notifications",),
            "notifications published",
        ),
        TopicSpec(
            MOVERS,
            "mover id",
            partitions,
            "delete",
            DAY_MS,
            ("ecpds.movers",),
            "mover heartbeats and capacity",
        ),
        TopicSpec(
            SCHEDULER_SNAPSHOTS,
            "transfers topic/partition/slot/chunk",
            partitions,  # the snapshot of transfers partition p is written to partition p
            "compact",
            -1,
            ("ecpds.scheduler",),
            "the scheduler's state per transfers partition, a cache of the log"
            " (schemas/snapshots/, not events)",
        ),
        TopicSpec(
            PRODUCTS,
            "stream/time/step/type",
            partitions,
            "delete",
            keep,
            ("ecpds.products",),
            "product generation status, late products and late transfers",
        ),
        TopicSpec(
            DEADLETTER,
            "origin key",
            1,
            "delete",
            30 * DAY_MS,
            ("ecpds.deadletter",),
            "messages that could not be decoded or processed, with the reason",
        ),
    )


def orders_topic(transfer_group: str, partitions: int = 4, retention_days: int = 14) -> TopicSpec:
    """The orders topic of one transfer group (its movers form one consumer group)."""
    return TopicSpec(
        f"{ORDERS_PREFIX}{transfer_group}",
        "destination",
        partitions,
        "delete",
        retention_days * DAY_MS,
        ("ecpds.orders",),
        f"transfer orders for group {transfer_group}",
    )


def spec_for(topic: str, specs: Iterable[TopicSpec] | None = None) -> TopicSpec | None:
    """The declaration of ``topic`` (orders topics are recognised by prefix)."""
    if specs is None:
        return _declared(topic)
    for spec in specs:
        if spec.name == topic:
            return spec
    return _declared(topic)


@functools.lru_cache(maxsize=1024)
def _declared(topic: str) -> TopicSpec | None:
    for spec in catalogue():
        if spec.name == topic:
            return spec
    if topic.startswith(ORDERS_PREFIX):
        return orders_topic(topic.removeprefix(ORDERS_PREFIX))
    return None


@dataclass(frozen=True)
class TopicChange:
    """What ``apply_topics`` did to one topic."""

    topic: str
    action: Literal["created", "altered", "partitions", "unchanged"]
    detail: str = ""


async def apply_topics(
    bootstrap: str, specs: Iterable[TopicSpec], *, replication: int = 1
) -> list[TopicChange]:
    """Create missing topics (with ``replication`` copies) and align configuration and
    partition counts; idempotent."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="ecpds-topics", **kafka_options()
    )
    await admin.start()
    try:
        return await _apply(admin, list(specs), replication)
    finally:
        await admin.close()


async def partition_counts(bootstrap: str, topics: Iterable[str] | None = None) -> dict[str, int]:
    """Partition count of each existing topic (all topics when ``topics`` is None)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="ecpds-topics", **kafka_options()
    )
    await admin.start()
    try:
        names = list(topics) if topics is not None else await admin.list_topics()
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}


def _durability(replication: int) -> dict[str, str]:
    """A replicated topic's own ``min.insync.replicas`` (a majority of its copies). A single
    copy sets none: the broker's default stays, so a caller left at the default never lowers
    what a replicated apply set."""
    return {"min.insync.replicas": str(replication // 2 + 1)} if replication > 1 else {}


async def _apply(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], replication: int
) -> list[TopicChange]:
    existing = await admin.describe_topics([s.name for s in specs])
    partitions = {t["topic"]: len(t["partitions"]) for t in existing if t.get("error_code", 0) == 0}
    changes: list[TopicChange] = []
    for spec in specs:
        if spec.name not in partitions:
            try:
                config = {**spec.kafka_config(), **_durability(replication)}
                response = await admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replication, topic_configs=config)]
                )
            except TopicAlreadyExistsError:
                response = None
            codes = [e[1] for e in response.topic_errors] if response is not None else [36]
            if all(code == 0 for code in codes):
                changes.append(TopicChange(spec.name, "created", f"{spec.partitions} partitions"))
                continue
            if codes != [36]:  # 36 = TOPIC_ALREADY_EXISTS (raced with another apply)
                raise InfrastructureError(f"creating topic {spec.name} failed: {response}")
            partitions[spec.name] = spec.partitions
        changes.append(await _align(admin, spec, partitions[spec.name], replication))
    return changes


async def _align(
    admin: AIOKafkaAdminClient, spec: TopicSpec, current: int, replication: int
) -> TopicChange:
    resource = ConfigResource(ConfigResourceType.TOPIC, spec.name)
    described = await admin.describe_configs([resource])
    actual: dict[str, str] = {}
    for response in described:
        for resource_row in response.resources:
            for entry in resource_row[4]:
                actual[entry[0]] = entry[1]
    wanted = {**spec.kafka_config(), **_durability(replication)}
    drift = {k: v for k, v in wanted.items() if actual.get(k) != v}
    if drift:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, wanted)])
    if current < spec.partitions:
        try:
            await admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
        except InvalidPartitionsError:
            # another apply raised them first (two instances starting at once): done, if so
            described = await admin.describe_topics([spec.name])
            if len(described[0]["partitions"]) < spec.partitions:
                raise
        return TopicChange(spec.name, "partitions", f"{current} -> {spec.partitions}")
    if drift:
        return TopicChange(spec.name, "altered", ", ".join(f"{k}={v}" for k, v in drift.items()))
    return TopicChange(spec.name, "unchanged")
