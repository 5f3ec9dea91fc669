"""Object stores by name: a name from a transfer group, an order or an event -> a backend.

Names understood (``parse``):

- ``""``: the default local store (``Settings.store_root``);
- ``file:///abs/path``: a ``LocalStore`` at that path;
- ``<scheme>://[user[:password]@]host[:port]/path[?opt=v]`` with a scheme known to
  ``protocols.registry``: a ``RemoteStore`` over that location. From a bare URL only what the
  URL says is known: no secret but the one written in it;
- ``host:<id>``, or a bare ``<id>`` (what a transfer group's ``stores`` list holds, e.g.
  ``archive``): the ``Host`` with that id in the live configuration (usually of type
  ``REPLICATION``): its protocol, address, login, password decrypted with the operator key (in
  memory only), its Directory field as base path (``/`` if none; ``/bucket[/prefix]`` for S3,
  Azure and GCS) and its options without module prefix. A ``file`` host is a ``LocalStore``
  at its directory (same layout, fsynced writes).

Rules kept: resolving never connects (a backend opens its connection on first use); a name
that cannot be resolved raises ``ConfigurationError`` naming the field (``store``, or
``credentials`` for a secret that cannot be decrypted); ``backend_name`` gives the
``ObjectStore.name`` a name resolves to without opening anything, so a planner can tell which
configured store an object already is in. ``NamedStores`` keeps the backends it opened and
reopens a host's backend when the host's definition changes (the old one is closed on
``close``, since a copy may still be reading from it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from bus.config.secrets import host_password
from bus.config.source import ConfigSource
from bus.errors import ConfigurationError
from bus.events.config import Host
from protocols import registry
from protocols.base import Connection, Location, ProtocolFailure
from protocols.location import directory_base, location_for
from store.local import LocalStore
from store.ports import ObjectStore
from store.remote import RemoteStore

HOST_PREFIX: Final = "host:"
FIELD: Final = "store"
_HOST_ID = re.compile(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*")
Connector = Callable[[Location], Awaitable[Connection]]


@dataclass(frozen=True, slots=True)
class LocalRef:
    """A local-disk store at ``root``."""

    root: Path


@dataclass(frozen=True, slots=True)
class UrlRef:
    """A store over a transfer-module location given by URL."""

    location: Location


@dataclass(frozen=True, slots=True)
class HostRef:
    """A store over the configured ``Host`` with this id."""

    host_id: str


StoreRef = LocalRef | UrlRef | HostRef


def parse(name: str, default_root: Path) -> StoreRef:
    """What a store name designates (see the module docstring); nothing is looked up yet."""
    if not name:
        return LocalRef(default_root)
    if name.startswith(HOST_PREFIX):
        return HostRef(_host_id(name.removeprefix(HOST_PREFIX), name))
    if "://" not in name:
        return HostRef(_host_id(name, name))
    scheme = urlsplit(name).scheme.lower()
    if scheme == "file":
        parts = urlsplit(name)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigurationError(FIELD, f"{name!r}: a file store needs an absolute path")
        return LocalRef(Path(parts.path))
    if scheme not in registry.MODULES:
        known = ", ".join(sorted(registry.MODULES))
        raise ConfigurationError(FIELD, f"{name!r}: no transfer module for {scheme!r} ({known})")
    try:
        return UrlRef(Location.parse(name))
    except (ProtocolFailure, ValueError) as error:  # ValueError: a bad port in the URL
        raise ConfigurationError(FIELD, f"{name!r}: {error}") from error


def _host_id(value: str, name: str) -> str:
    if not _HOST_ID.fullmatch(value):
        raise ConfigurationError(FIELD, f"{name!r} is neither a store URL nor a host id")
    return value


def host_location(host: Host, password: str | None) -> Location:
    """Where the transfer module connects for a store host (``password`` already decrypted):
    the one Host -> Location, under the host's Directory taken as a base path."""
    # absolute, unlike a transfer's login directory: the memory and cloud modules resolve
    # relative paths against nothing (for S3/Azure/GCS the directory is /bucket[/prefix])
    return location_for(host, password, base=directory_base(host.directory), root="/")


def file_root(host: Host) -> Path:
    """The directory of a ``file`` store host; a host without one is refused."""
    base = directory_base(host.directory)
    if not base:
        raise ConfigurationError(FIELD, f"file store host {host.id!r} needs a directory")
    return Path(base)


def local_name(root: Path) -> str:
    """``LocalStore.name`` for ``root``, normalised (``..`` and doubled slashes folded)."""
    return f"file://{os.path.normpath(root.absolute())}"


def canonical(store_name: str) -> str:
    """A backend name in the form used to compare two of them (file paths normalised)."""
    if store_name.startswith("file://"):
        return local_name(Path(store_name.removeprefix("file://") or "/"))
    return store_name.rstrip("/") or store_name


class NamedStores:
    """Backends by store name (the ``Stores`` port of the movers), opened once and kept."""

    def __init__(
        self,
        default_root: Path,
        *,
        config: ConfigSource | None = None,
        key_file: Path | None = None,
        connect: Connector = registry.connect,
        durable: bool = True,
    ) -> None:
        self._default = default_root
        self._config = config
        self._key_file = key_file
        self._connect = connect
        self._durable = durable
        self._open: dict[str, tuple[object, ObjectStore]] = {}
        self._local: dict[str, LocalStore] = {}  # one LocalStore per root, whatever its names
        self._retired: list[ObjectStore] = []

    def _host(self, host_id: str) -> Host:
        if self._config is None:
            raise ConfigurationError(FIELD, f"{host_id!r}: no configuration to find the host in")
        host = self._config.view.hosts.get(host_id)
        if host is None:
            raise ConfigurationError(FIELD, f"{host_id!r}: no such host")
        if not host.active:
            raise ConfigurationError(FIELD, f"{host_id!r}: the host is not active")
        if host.protocol != "file" and host.protocol not in registry.MODULES:
            raise ConfigurationError(FIELD, f"{host_id!r}: unknown protocol {host.protocol!r}")
        return host

    def backend_name(self, name: str) -> str:
        """The ``ObjectStore.name`` of the backend ``name`` resolves to (canonical form)."""
        ref = parse(name, self._default)
        if isinstance(ref, LocalRef):
            return local_name(ref.root)
        if isinstance(ref, UrlRef):
            return canonical(ref.location.url)
        host = self._host(ref.host_id)
        if host.protocol == "file":
            return local_name(file_root(host))
        return canonical(host_location(host, None).url)

    def same(self, name: str, backend: str) -> bool:
        """Whether store ``name`` resolves to the backend called ``backend`` (False if unknown)."""
        try:
            return self.backend_name(name) == canonical(backend)
        except ConfigurationError:
            return False

    def store_for(self, name: str) -> ObjectStore:
        """The backend for ``name``; ``ConfigurationError`` if it cannot be resolved."""
        ref = parse(name, self._default)
        identity: object = ref
        if isinstance(ref, HostRef):
            identity = self._host(ref.host_id)  # a changed host definition means a new backend
        cached = self._open.get(name)
        if cached is not None:
            if cached[0] == identity:
                return cached[1]
            self._retired.append(cached[1])
        store = self._build(ref, identity)
        self._open[name] = (identity, store)
        return store

    def _build(self, ref: StoreRef, identity: object) -> ObjectStore:
        if isinstance(ref, LocalRef):
            return self._local_store(ref.root)
        if isinstance(ref, UrlRef):
            return RemoteStore(ref.location, connect=self._connect)
        assert isinstance(identity, Host)
        host = identity
        if host.protocol == "file":
            return self._local_store(file_root(host))
        password = host_password(host, self._key_file)
        return RemoteStore(host_location(host, password), connect=self._connect)

    def _local_store(self, root: Path) -> LocalStore:
        key = local_name(root)
        store = self._local.get(key)
        if store is None:
            store = self._local[key] = LocalStore(root, durable=self._durable)
        return store

    async def close(self) -> None:
        """Close every backend opened (and every one replaced since)."""
        seen: set[int] = set()
        for store in [*(s for _, s in self._open.values()), *self._retired]:
            if id(store) not in seen:
                seen.add(id(store))
                await store.close()
        self._open.clear()
        self._local.clear()
        self._retired.clear()
