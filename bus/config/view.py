"""The current configuration in memory, and a live copy of it kept from ``ecpds.config``.

``ConfigView`` is a value: ``apply``/``evolve`` return a new view and leave the old one as it
was, and applying the same event twice gives the same view (a Defined or Changed event carries
the full entity, a Removed event removes whatever is there), so a replay after a restart, or a
redelivered event, can never skew it.

Host keys (``host_keys``: pinned, ``refused_keys``: offered instead and refused) fold by these
rules: a ``HostKeyLearned`` pins a key only when the host has none pinned for that address
(two movers learning at once: the first in the log wins, the same key twice is one); a
``HostKeyTrusted`` always pins and clears the refusal; a ``HostKeyRefused`` is kept while its
key is not the pinned one. Each is keyed by host and fingerprint (``bus.config.hostkeys``), so
compaction keeps the first learnt key of a race, never only the last.

``LiveConfig`` is a ``bus.feeds.Feed`` of the compacted topic folded by ``evolve``: it rebuilds
the view from the beginning up to the end offsets seen at start (no consumer group: nothing is
committed, nobody else is disturbed), is ``ready()`` then, and keeps following new events in a
background task; ``live.view`` is always the latest view.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiokafka import TopicPartition

from bus.events import Event
from bus.events import config_changes as ev
from bus.events.config import (
    Association,
    DataUser,
    Destination,
    Host,
    HostKey,
    HostType,
    Policy,
    TransferGroup,
)
from bus.feeds import Feed
from bus.publisher import Published
from bus.topics import CONFIG, TopicSpec, apply_topics, catalogue


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
    host_keys: Mapping[str, HostKey] = field(default_factory=_empty)  # pinned, by host id
    refused_keys: Mapping[str, HostKey] = field(default_factory=_empty)  # last refused, by host

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
        self.host_keys = dict(view.host_keys)
        self.refused_keys = dict(view.refused_keys)

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
            case ev.HostKeyLearned(key=k):
                pinned = self.host_keys.get(k.host_id)
                if pinned is None or pinned.address != k.address:
                    self.host_keys[k.host_id] = k
            case ev.HostKeyTrusted(key=k):
                self.host_keys[k.host_id] = k
                self.refused_keys.pop(k.host_id, None)
            case ev.HostKeyRefused(key=k):
                pinned = self.host_keys.get(k.host_id)
                if pinned is not None and pinned.fingerprint != k.fingerprint:
                    self.refused_keys[k.host_id] = k
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
            host_keys=MappingProxyType(self.host_keys),
            refused_keys=MappingProxyType(self.refused_keys),
        )


def config_spec(topic: str = CONFIG) -> TopicSpec:
    """The declaration of a configuration topic (``ecpds.config``, or a test's own name)."""
    spec = next(s for s in catalogue() if s.name == CONFIG)
    if topic == CONFIG:
        return spec
    return TopicSpec(topic, spec.key, 1, "compact", -1, spec.namespaces, f"configuration ({topic})")


Listener = Callable[[ConfigView, Sequence[Event]], None]


class LiveConfig:
    """A ``ConfigView`` kept current from a configuration topic: a ``Feed`` folded by
    ``ConfigView.evolve`` (see the module docstring)."""

    def __init__(self, bootstrap: str, topic: str = CONFIG, *, create_topic: bool = True) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._create_topic = create_topic
        self.view = ConfigView()
        self._listeners: list[Listener] = []
        self._feed = Feed(bootstrap, [topic], self._fold, name=f"live-config-{topic}")

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(view, events)`` after each batch of events has been applied."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Assign every partition from the beginning and start following in the background."""
        if self._create_topic:
            await apply_topics(self._bootstrap, [config_spec(self._topic)])
        await self._feed.start()

    async def ready(self, timeout: float = 60) -> ConfigView:
        """Wait until the view holds everything the topic held at start; returns the view."""
        await self._feed.ready(timeout)
        return self.view

    async def reached(self, published: Iterable[Published], timeout: float = 30) -> ConfigView:
        """Wait until the view includes the given published events; returns the view."""
        wanted = {
            TopicPartition(p.topic, p.partition): p.offset + 1
            for p in published
            if p.topic == self._topic
        }
        await self._feed.reached(wanted, timeout)
        return self.view

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        await self._feed.stop()

    async def __aenter__(self) -> LiveConfig:
        await self.start()
        await self.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _fold(self, events: Sequence[Event]) -> None:
        self.view = self.view.evolve(events)
        for listener in self._listeners:
            listener(self.view, events)
