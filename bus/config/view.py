"""The current configuration in memory, and a live copy of it kept from ``ecpds.config``.

``ConfigView`` is a value: ``apply``/``evolve`` return a new view and leave the old one as it
was, and applying the same event twice gives the same view (a Defined or Changed event carries
the full entity, a Removed event removes whatever is there), so a replay after a restart, or a
redelivered event, can never skew it.

``LiveConfig`` rebuilds the view by reading the compacted topic from the beginning up to the
end offsets seen at start (no consumer group: every partition is assigned, nothing is
committed, nobody else is disturbed), is ``ready()`` then, and keeps following new events in a
background task; ``live.view`` is always the latest view.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bus import codec
from bus.errors import DecodeError, TransientError
from bus.events import Event
from bus.events import config_changes as ev
from bus.events.config import (
    Association,
    DataUser,
    Destination,
    Host,
    HostType,
    Policy,
    TransferGroup,
)
from bus.logging import get_logger
from bus.publisher import Published
from bus.topics import CONFIG, TopicSpec, apply_topics, catalogue, partition_counts

log = get_logger(__name__)


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ConfigView:
    """Every configuration entity by id; associations by ``(destination, host)``."""

    destinations: Mapping[str, Destination] = field(default_factory=_empty)
    hosts: Mapping[str, Host] = field(default_factory=_empty)
    associations: Mapping[tuple[str, str], Association] = field(default_factory=_empty)
    transfer_groups: Mapping[str, TransferGroup] = field(default_factory=_empty)
    users: Mapping[str, DataUser] = field(default_factory=_empty)
    policies: Mapping[str, Policy] = field(default_factory=_empty)

    def apply(self, event: Event) -> ConfigView:
        """The view after one configuration event (other events leave it as it is)."""
        return self.evolve((event,))

    def evolve(self, events: Iterable[Event]) -> ConfigView:
        """The view after several events (copies each table once, however many events)."""
        tables = _Tables(self)
        for event in events:
            tables.apply(event)
        return tables.freeze()

    def hosts_for(
        self, destination: str, type: HostType | None = None, *, active_only: bool = False
    ) -> tuple[Host, ...]:
        """Hosts associated with ``destination``, lowest priority number first (then by id)."""
        found = sorted(
            (a.priority, a.host)
            for a in self.associations.values()
            if a.destination == destination and a.host in self.hosts
        )
        hosts = (self.hosts[host] for _, host in found)
        return tuple(
            h for h in hosts if (type is None or h.type is type) and (h.active or not active_only)
        )

    def destinations_of(self, host: str) -> tuple[str, ...]:
        """Destinations a host is associated with, by name."""
        return tuple(sorted(a.destination for a in self.associations.values() if a.host == host))

    def aliases_of(self, destination: str, target: str | None = None) -> tuple[str, ...]:
        """Destinations that also get what is queued to ``destination``, followed recursively,
        each once (a cycle stops where it closes); with ``target``, only aliases whose pattern
        matches it are followed."""
        seen = {destination}
        order: list[str] = []
        pending = [destination]
        while pending:
            current = self.destinations.get(pending.pop(0))
            if current is None:
                continue
            for alias in current.aliases:
                if alias.destination in seen:
                    continue
                pattern = alias.pattern
                if target is not None and pattern is not None and not re.search(pattern, target):
                    continue
                seen.add(alias.destination)
                order.append(alias.destination)
                pending.append(alias.destination)
        return tuple(order)

    def users_for(self, destination: str) -> tuple[str, ...]:
        """Data users allowed on ``destination``, directly or through an active policy."""
        direct = {u.login for u in self.users.values() if destination in u.destinations}
        via = {
            login
            for p in self.policies.values()
            if p.active and destination in p.destinations
            for login in p.users
        }
        return tuple(sorted(direct | via))


class _Tables:
    """Mutable copies of a view's tables, for applying a batch of events."""

    def __init__(self, view: ConfigView) -> None:
        self.destinations = dict(view.destinations)
        self.hosts = dict(view.hosts)
        self.associations = dict(view.associations)
        self.transfer_groups = dict(view.transfer_groups)
        self.users = dict(view.users)
        self.policies = dict(view.policies)

    def apply(self, event: Event) -> None:
        match event:
            case ev.DestinationDefined(destination=d) | ev.DestinationChanged(destination=d):
                self.destinations[d.name] = d
            case ev.DestinationRemoved(name=name):
                self.destinations.pop(name, None)
            case ev.HostDefined(host=h) | ev.HostChanged(host=h):
                self.hosts[h.id] = h
            case ev.HostRemoved(id=host_id):
                self.hosts.pop(host_id, None)
            case ev.AssociationDefined(association=a) | ev.AssociationChanged(association=a):
                self.associations[(a.destination, a.host)] = a
            case ev.AssociationRemoved(destination=dest, host=host):
                self.associations.pop((dest, host), None)
            case (
                ev.TransferGroupDefined(transfer_group=g)
                | ev.TransferGroupChanged(transfer_group=g)
            ):
                self.transfer_groups[g.name] = g
            case ev.TransferGroupRemoved(name=name):
                self.transfer_groups.pop(name, None)
            case ev.DataUserDefined(data_user=u) | ev.DataUserChanged(data_user=u):
                self.users[u.login] = u
            case ev.DataUserRemoved(login=login):
                self.users.pop(login, None)
            case ev.PolicyDefined(policy=p) | ev.PolicyChanged(policy=p):
                self.policies[p.id] = p
            case ev.PolicyRemoved(id=policy_id):
                self.policies.pop(policy_id, None)
            case _:
                pass

    def freeze(self) -> ConfigView:
        return ConfigView(
            destinations=MappingProxyType(self.destinations),
            hosts=MappingProxyType(self.hosts),
            associations=MappingProxyType(self.associations),
            transfer_groups=MappingProxyType(self.transfer_groups),
            users=MappingProxyType(self.users),
            policies=MappingProxyType(self.policies),
        )


def config_spec(topic: str = CONFIG) -> TopicSpec:
    """The declaration of a configuration topic (``ecpds.config``, or a test's own name)."""
    spec = next(s for s in catalogue() if s.name == CONFIG)
    if topic == CONFIG:
        return spec
    return TopicSpec(topic, spec.key, 1, "compact", -1, spec.namespaces, f"configuration ({topic})")


Listener = Callable[[ConfigView, Sequence[Event]], None]


class LiveConfig:
    """A ``ConfigView`` kept current from a configuration topic (see the module docstring)."""

    def __init__(self, bootstrap: str, topic: str = CONFIG, *, create_topic: bool = True) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._create_topic = create_topic
        self.view = ConfigView()
        self._ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self._positions: dict[int, int] = {}
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._failure: BaseException | None = None

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(view, events)`` after each batch of events has been applied."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Assign every partition from the beginning and start following in the background."""
        if self._create_topic:
            await apply_topics(self._bootstrap, [config_spec(self._topic)])
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            partitions = await self._partitions()
            assigned = [TopicPartition(self._topic, p) for p in range(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
        except KafkaError as error:
            await consumer.stop()
            raise TransientError(f"cannot read {self._topic}: {error}") from error
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._ends = {tp.partition: offset for tp, offset in ends.items()}
        self._check_ready()
        self._task = asyncio.create_task(self._follow(), name=f"live-config-{self._topic}")

    async def _partitions(self) -> int:
        for _ in range(50):  # a topic created a moment ago may not be described yet
            count = (await partition_counts(self._bootstrap, [self._topic])).get(self._topic)
            if count:
                return count
            await asyncio.sleep(0.1)
        raise TransientError(f"configuration topic {self._topic} does not exist")

    async def ready(self, timeout: float = 60) -> ConfigView:
        """Wait until the view holds everything the topic held at start; returns the view."""
        waiter = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait(
            [waiter, *([self._task] if self._task else [])],
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if waiter not in done:
            waiter.cancel()
            if self._failure is not None:
                raise TransientError(f"reading {self._topic} failed: {self._failure}")
            raise TransientError(f"{self._topic} not read to its end within {timeout}s")
        return self.view

    async def reached(self, published: Iterable[Published], timeout: float = 30) -> ConfigView:
        """Wait until the view includes the given published events; returns the view."""
        wanted = {p.partition: p.offset + 1 for p in published if p.topic == self._topic}

        def caught_up() -> bool:
            return all(self._positions.get(part, 0) >= off for part, off in wanted.items())

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(caught_up), timeout)
        return self.view

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def __aenter__(self) -> LiveConfig:
        await self.start()
        await self.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_ready(self) -> None:
        if not self._ready.is_set() and all(
            self._positions.get(part, 0) >= end for part, end in self._ends.items()
        ):
            self._ready.set()

    async def _follow(self) -> None:
        assert self._consumer is not None
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
                events: list[Event] = []
                for tp, records in batches.items():
                    for record in records:
                        event = _decode(record)
                        if event is not None:
                            events.append(event)
                        self._positions[tp.partition] = record.offset + 1
                for tp in self._consumer.assignment():
                    # compaction leaves gaps: the position, not the last record, is how far we are
                    self._positions[tp.partition] = await self._consumer.position(tp)
                if events:
                    self.view = self.view.evolve(events)
                    for listener in self._listeners:
                        listener(self.view, events)
                self._check_ready()
                async with self._changed:
                    self._changed.notify_all()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failure = error
            log.error("live configuration stopped", topic=self._topic, error=str(error))
            raise


def _decode(record: Any) -> Event | None:
    header = codec.type_header(record.headers)
    try:
        return codec.decode_with_type(record.value, header)
    except DecodeError as error:
        # the view is a projection: an undecodable record is reported, not fatal to every reader
        log.warning(
            "undecodable configuration record skipped",
            offset=record.offset,
            partition=record.partition,
            error=str(error),
        )
        return None
