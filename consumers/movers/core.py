"""The pure parts of a mover: where an order goes, and which offsets may be committed.

Nothing here touches the network, the disk or the clock (``now`` is a parameter):

- ``target_path`` is the remote path of one order: the order's ``remote_path`` when the
  scheduler rendered it, else the Host Directory template rendered for this transfer; a
  compressed transfer's name gets the codec extension;
- ``OffsetTracker`` keeps the commit rule of DESIGN.md §8 ("Commits with concurrency"): many
  orders run at once but Kafka keeps one offset per partition, so the committable position of a
  partition is its lowest offset still in flight (or one past the highest finished offset when
  nothing is in flight). A crash then redelivers every order whose outcome was not published.

- ``temporary_path`` is where an attempt writes before its rename, derived from the transfer
  and attempt (``.<name>.<tag>.<attempt>.tmp``, ``tag`` = 8 hex digits of the transfer id's
  SHA-1) so that a later attempt knows the names earlier ones may have left (``leftovers``) and
  removes them; an order this mover may be getting a second time (a redelivery after another
  mover's crash, whose first taker may still be writing) adds this mover's tag, so two takers
  of one attempt never write the same file;
- ``found`` decides whether a file already at the final name is this transfer's delivery by an
  attempt whose outcome is unknown: the expected size, not older than the unsettled attempt
  (``since``, less ``MTIME_SLACK`` for coarse listings and clock skew) where the listing gives
  a time, and the MD5 where the protocol keeps one. An older file of the same name (OpenECPDS
  overwrites by default) fails the time test; a compressed transfer's size is only known once
  sent, so it is always sent again.

Where a mover connects for an order's host is ``protocols.location.location_for``, the one
Host -> Location of every stage.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from bus.errors import ConfigurationError
from bus.events.base import Compression
from bus.events.orders import TransferOrdered
from bus.events.transfers import Verification
from bus.templates.context import RenderContext
from bus.templates.directory import parse
from protocols.base import Entry, Location, temporary_name
from store.compression import codec

RATE_OPTION = "upload.rateThrottling"
# FTP LIST gives minutes, and the remote clock is not ours: a file this much older than the
# unsettled attempt may still be its delivery
MTIME_SLACK = timedelta(seconds=60)
BLIND_ATTEMPTS = 3  # attempts whose temporary names are deleted unseen where listings hide them

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*(?:/s)?\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


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
    """The remote path of ``order`` (relative paths are under the host's base path).

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


def tag(name: str) -> str:
    """A short, stable, file-name-safe tag of a transfer id or mover id (8 hex digits)."""
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]


def attempt_token(order: TransferOrdered, mover: str | None = None) -> str:
    """What makes an attempt's temporary name its own: ``<transfer tag>.<attempt>``, plus the
    mover's tag when ``mover`` is given (an order that may be a redelivery)."""
    token = f"{tag(order.transfer_id)}.{order.attempt}"
    return token if mover is None else f"{token}.{tag(mover)}"


def temporary_path(
    order: TransferOrdered, location: Location, path: str, mover: str | None = None
) -> str | None:
    """The absolute temporary name an attempt writes ``path`` under (None: ``usetmp`` off)."""
    if not location.flag("usetmp", True):
        return None
    return temporary_name(location.resolve(path), location, attempt_token(order, mover))


def leftovers(order: TransferOrdered, location: Location, path: str) -> re.Pattern[str]:
    """The base names of the temporary files that attempts up to ``order.attempt`` of this
    transfer may have left beside ``path`` (attempt numbers in group 1 when derived)."""
    name = posixpath.basename(location.resolve(path))
    prefix = location.option("prefix") or "."
    suffix = location.option("suffix")
    if suffix:  # the operator's fixed suffix: every attempt writes the same name
        return re.compile(re.escape(f"{prefix}{name}{suffix}"))
    stem = re.escape(f"{prefix}{name}.{tag(order.transfer_id)}.")
    return re.compile(stem + r"(\d+)(?:\.[0-9a-f]{8})?\.tmp")


def derived_leftovers(order: TransferOrdered, location: Location, path: str) -> list[str]:
    """The absolute temporary names the last ``BLIND_ATTEMPTS`` attempts up to this one wrote
    by themselves (no redelivery), for servers whose listing hides them."""
    first = max(1, order.attempt - BLIND_ATTEMPTS + 1)
    names = [
        temporary_path(replace(order, attempt=attempt), location, path)
        for attempt in range(first, order.attempt + 1)
    ]
    return list(dict.fromkeys(name for name in names if name is not None))


def is_leftover(pattern: re.Pattern[str], order: TransferOrdered, name: str) -> bool:
    """Whether ``name`` is a temporary file of an attempt up to this order's (never a later
    attempt's: a stale order must not remove the file of the attempt that superseded it)."""
    match = pattern.fullmatch(name)
    if match is None:
        return False
    number = match.group(1) if match.groups() else None
    return number is None or int(number) <= order.attempt


def check_since(order: TransferOrdered, redelivered: bool) -> datetime | None:
    """Since when a file at the final name may be this transfer's delivery by an attempt
    without a known outcome: the scheduler's ``check_since`` on a reissue; this attempt's own
    order time for an order that may have been taken before (a redelivery); else None (no
    look first)."""
    if not redelivered:
        return order.check_since
    own = order.envelope.occurred_at
    return own if order.check_since is None else min(own, order.check_since)


def found(
    order: TransferOrdered,
    entry: Entry | None,
    since: datetime,
    remote_md5: str | None,
) -> Verification | None:
    """How a file already at the final name is verified as this transfer's delivery, or None
    when it is not (absent, another size, older than ``since``, another MD5, compressed)."""
    if entry is None or entry.is_dir or order.compression != Compression.NONE:
        return None
    if entry.size != order.size:
        return None
    if entry.mtime is not None and entry.mtime < since - MTIME_SLACK:
        return None  # an older file of the same name: the delivery never landed
    expected = order.checksums.md5
    if remote_md5 is not None and expected:
        if remote_md5.lower() != expected.lower():
            return None
        return Verification.FOUND_SIZE_AND_CHECKSUM
    return Verification.FOUND_SIZE


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
