"""Deterministic sample events: one valid sample per event class, for any test to reuse.

Values are derived from the class and field names only (never from field positions), so
adding a field to a class leaves the other fields' sample values, and the golden fixtures
made from them, unchanged. ``sample(cls, **changes)`` gives a sample with some fields set.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from bus.events import EVENT_TYPES, Envelope, Event
from bus.events.base import TransferStatus

E = TypeVar("E")

BASE_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

# Values a reader would expect for well-known field names (the rest are derived from names).
_BY_NAME: Mapping[str, Any] = {
    "priority": 50,
    "old_priority": 50,
    "new_priority": 10,
    "attempt": 2,
    "requeue_count": 1,
    "file_instance": 1,
    "origin_partition": 3,
    "origin_offset": 1234567,
    "qos": 1,
    "capacity": 16,
    "running": 3,
    "max_connections": 5,
    "retry_count": 3,
    "start_minute": 360,
    "end_minute": 1080,
    "weekdays": (1, 2, 3, 4, 5),
    "country": "fr",
    "protocol": "sftp",
    "address": "127.0.0.1:2222",
    "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "ciphertext": b"\x00encrypted-credential\xff",
    "adler32": "0a1b2c3d",
    "md5": "9e107d9d372bb6826bd81d3542a419d6",
    "transfer_group": "europe",
    "destination": "meteo-fr",
    "source": "tests/sample-1",
    "status": TransferStatus.WAIT,
}


def _stable(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode())


def _value(owner: str, name: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return _value(owner, name, inner[0])
    if name in _BY_NAME and not (
        dataclasses.is_dataclass(hint) or (isinstance(hint, type) and issubclass(hint, Enum))
    ):
        return _BY_NAME[name]
    if origin is tuple:
        return tuple(_value(owner, f"{name}[{i}]", args[0]) for i in range(2))
    if origin is Mapping or origin is dict:
        return {f"{name}-key": _value(owner, f"{name}-value", args[1])}
    if isinstance(hint, type) and issubclass(hint, Enum):
        if name in _BY_NAME and isinstance(_BY_NAME[name], hint):
            return _BY_NAME[name]
        members = list(hint)
        return members[_stable(owner, name) % len(members)]
    if dataclasses.is_dataclass(hint):
        return build(hint)  # type: ignore[arg-type]
    if hint is bool:
        return _stable(owner, name) % 2 == 0
    if hint is int:
        return 1000 + _stable(owner, name) % 100000
    if hint is float:
        return (_stable(owner, name) % 1000) / 4
    if hint is bytes:
        return f"{name}\x00bytes".encode()
    if hint is datetime:
        return BASE_TIME + timedelta(seconds=_stable(owner, name) % 86400)
    if hint is str:
        if name in ("event_id", "transfer_id", "data_file_id", "guid", "message_id"):
            return str(uuid.UUID(int=_stable(owner, name)))
        return f"{name.replace('_', '-')}-1"
    raise TypeError(f"no sample value for {owner}.{name}: {hint!r}")


def build(cls: type[E], **changes: Any) -> E:
    """A deterministic instance of a dataclass (event or shared record), with ``changes`` set."""
    hints = typing.get_type_hints(cls)
    values = {
        f.name: _value(cls.__name__, f.name, hints[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name not in changes
    }
    return cls(**values, **changes)


def sample_envelope(name: str) -> Envelope:
    """The deterministic envelope of the sample of event type ``name``."""
    return Envelope(
        event_id=str(uuid.UUID(int=_stable(name, "event"))),
        occurred_at=BASE_TIME,
        source="tests/sample-1",
        correlation_id=f"correlation-of-{name.rsplit('.', 1)[1]}",
        causation_id=str(uuid.UUID(int=_stable(name, "cause"))),
    )


def sample(cls: type[E], **changes: Any) -> E:
    """The sample of an event class, with ``changes`` set."""
    name = cls.AVRO_NAME  # type: ignore[attr-defined]
    changes.setdefault("envelope", sample_envelope(name))
    return build(cls, **changes)


SAMPLES: Mapping[str, Event] = {name: sample(cls) for name, cls in EVENT_TYPES.items()}
"""One sample per event type, by Avro full name."""
