"""The pure parts of a mover: where an order goes, and which offsets may be committed.

Nothing here touches the network, the disk or the clock (``now`` is a parameter):

- ``location_for`` builds the transfer module's ``Location`` from a ``Host`` entity (protocol ->
  scheme, ``address`` -> host, port and base path, options with their module prefix stripped);
- ``target_path`` is the remote path of one order: the order's ``remote_path`` when the
  scheduler rendered it, else the Host Directory template rendered for this transfer; a
  compressed transfer's name gets the codec extension;
- ``OffsetTracker`` keeps the commit rule of DESIGN.md §8 ("Commits with concurrency"): many
  orders run at once but Kafka keeps one offset per partition, so the committable position of a
  partition is its lowest offset still in flight (or one past the highest finished offset when
  nothing is in flight). A crash then redelivers every order whose outcome was not published.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from bus.errors import ConfigurationError
from bus.events.base import Compression
from bus.events.config import Host
from bus.events.orders import TransferOrdered
from bus.templates.context import RenderContext
from bus.templates.directory import parse
from protocols.base import LOGIN_DIRECTORY, Location
from store.compression import codec

# Host options carry the module's OpenECPDS prefix (``sftp.mkdirs``); modules read bare names.
MODULE_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "ftp": ("ftp.",),
    "ftps": ("ftps.", "ftp."),
    "sftp": ("sftp.",),
    "http": ("http.",),
    "https": ("https.", "http."),
    "s3": ("s3.",),
    "az": ("az.", "azure."),
    "gs": ("gs.", "gcs."),
    "file": ("file.",),
    "memory": ("memory.",),
}
COMMON_PREFIX = "ectrans."
RATE_OPTION = "upload.rateThrottling"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*(?:/s)?\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def split_address(address: str) -> tuple[str, int | None, str]:
    """``host[:port][/base/path]`` -> host, port, base path (the login directory when none)."""
    hostport, slash, base = address.partition("/")
    host, port = hostport, None
    name, sep, tail = hostport.rpartition(":")
    if sep and tail.isdigit() and not name.endswith(":"):
        host, port = name, int(tail)
    return host.strip("[]"), port, f"/{base}" if slash else LOGIN_DIRECTORY


def module_options(host: Host) -> dict[str, str]:
    """The host's options as its module reads them: own prefix (and ``ectrans.``) stripped."""
    prefixes = (*MODULE_PREFIXES.get(host.protocol.lower(), ()), COMMON_PREFIX)
    options: dict[str, str] = {}
    for key, value in host.options.items():
        stripped = next((key[len(p) :] for p in prefixes if key.startswith(p)), key)
        options[stripped] = value
    return options


def location_for(host: Host, password: str | None) -> Location:
    """Where the module connects for ``host`` (``password`` already decrypted, never logged)."""
    name, port, base = split_address(host.address)
    return Location(
        scheme=host.protocol.lower(),
        host=name,
        port=port,
        user=host.login,
        password=password,
        path=base,
        options=module_options(host),
    )


def render_context(order: TransferOrdered, mover: str, now: datetime) -> RenderContext:
    """What the Host Directory template may see of one order (no secrets)."""
    host = order.host
    return RenderContext(
        now=now,
        host_name=host.id,
        host_comment=host.comment,
        host_host=host.address,
        host_login=host.login or "",
        host_network_code=host.network_code or "",
        host_nickname=host.nickname,
        data_file_id=order.data_file_id,
        data_file_original=order.original or "",
        data_file_size=order.size,
        data_file_checksum=order.checksums.md5 or order.checksums.adler32,
        data_file_meta_stream=order.metadata.get("stream", ""),
        data_file_meta_time=order.metadata.get("time", ""),
        transfer_id=order.transfer_id,
        transfer_target=order.target,
        transfer_priority=order.priority,
        destination_name=order.destination,
        transfer_group_name=order.transfer_group,
        mover_name=mover,
        metadata=dict(order.metadata),
    )


def extension(compression: Compression) -> str:
    """The file-name extension of a compression mode (``""`` for none)."""
    return codec(compression.value.lower()).extension


def target_path(order: TransferOrdered, mover: str, now: datetime) -> str:
    """The remote path of ``order``: a relative one is under the host's base path, or the login
    directory when the address has none (``protocols.base.Location.resolve``).

    An invalid template raises ``TemplateError`` (a permanent ``ConfigurationError``).
    """
    path = order.remote_path
    if path is None:
        path = parse(order.host.directory).render(render_context(order, mover, now))
    if not path or path.endswith("/"):
        path = posixpath.join(path, order.target)
    ext = extension(order.compression)
    if ext and not path.endswith(ext):
        path += ext
    return path


def parse_rate(text: str | None) -> float | None:
    """A byte rate (``4MB``, ``500k/s``, ``1048576``) in bytes per second; empty = unlimited."""
    if text is None or not text.strip() or text.strip() == "0":
        return None
    match = _SIZE.match(text)
    if match is None:
        raise ConfigurationError(RATE_OPTION, f"not a byte rate: {text!r}")
    return float(match.group(1)) * _SCALE[match.group(2).lower()]


def destination_limit(order: TransferOrdered, capacity: int) -> int:
    """How many transfers of one destination this mover runs at once."""
    return max(1, min(order.host.max_connections, capacity))


K = TypeVar("K", bound=Hashable)


@dataclass
class _Partition:
    in_flight: set[int] = field(default_factory=set)
    finished_up_to: int | None = None  # one past the highest finished offset
    committed: int | None = None
    first: int | None = None  # the first offset taken since assignment (no progress below)


class OffsetTracker(Generic[K]):
    """In-flight offsets per partition, and the positions that are safe to commit."""

    def __init__(self) -> None:
        self._parts: dict[K, _Partition] = {}

    def assign(self, partition: K) -> None:
        """Start tracking a partition this consumer now owns."""
        self._parts.setdefault(partition, _Partition())

    def revoke(self, partition: K) -> None:
        """Forget a partition given away: outcomes finishing later are published, not committed."""
        self._parts.pop(partition, None)

    def owns(self, partition: K) -> bool:
        return partition in self._parts

    def begin(self, partition: K, offset: int) -> None:
        """An order at ``offset`` was taken; its partition cannot be committed past it."""
        part = self._parts.setdefault(partition, _Partition())
        part.in_flight.add(offset)
        if part.first is None:
            part.first = offset

    def finish(self, partition: K, offset: int) -> None:
        """The outcome of the order at ``offset`` is published (ignored if not owned any more)."""
        part = self._parts.get(partition)
        if part is None:
            return
        part.in_flight.discard(offset)
        if part.finished_up_to is None or offset + 1 > part.finished_up_to:
            part.finished_up_to = offset + 1

    def in_flight(self, partition: K) -> int:
        part = self._parts.get(partition)
        return len(part.in_flight) if part else 0

    def position(self, partition: K) -> int | None:
        """The committable position: the lowest in-flight offset, else one past the finished."""
        part = self._parts.get(partition)
        if part is None:
            return None
        if part.in_flight:
            lowest = min(part.in_flight)
            # never past an order still running; records arrive in order, so no gap hides one
            return None if part.finished_up_to is None else min(lowest, part.finished_up_to)
        return part.finished_up_to

    def to_commit(self) -> dict[K, int]:
        """Positions that moved forward since the last ``committed``."""
        out: dict[K, int] = {}
        for key, part in self._parts.items():
            position = self.position(key)
            floor = part.committed if part.committed is not None else part.first
            if position is not None and (floor is None or position > floor):
                out[key] = position
        return out

    def committed(self, positions: Mapping[K, int]) -> None:
        """Record positions the broker accepted."""
        for key, position in positions.items():
            part = self._parts.get(key)
            if part is not None and (part.committed is None or position > part.committed):
                part.committed = position
