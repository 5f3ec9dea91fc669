"""The object model of the Object Data Store: ids, what a caller asks to store, what is stored.

Objects are hierarchy-free: an id, bytes and metadata. Directory views are emulated by
prefix over ``name``. Ids are 32 lowercase hex digits, sortable by creation time (48-bit
milliseconds then 80 random bits, like a ULID); a uuid4 hex is accepted too. Ids come from
callers and URLs, so every backend validates them before building a path from one.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import NewType

from store.checksums import Checksums
from store.errors import ObjectNotFound, StoreError

ObjectId = NewType("ObjectId", str)
_ID = re.compile(r"[0-9a-f]{32}")


def new_object_id(now_ms: int | None = None) -> ObjectId:
    """A new globally unique id; ids made later sort after ids made earlier (per millisecond)."""
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return ObjectId(f"{millis & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(10)}")


def object_id(value: str) -> ObjectId:
    """Validate an id from outside; anything else is reported as a missing object."""
    if not _ID.fullmatch(value):
        raise ObjectNotFound(f"not an object id: {value!r}")
    return ObjectId(value)


def fanout(oid: ObjectId) -> str:
    """The two-level directory of an object, from its random tail (uuid4 hex fans out too)."""
    return f"{oid[-2:]}/{oid[-4:-2]}"


@dataclass(frozen=True)
class ObjectSpec:
    """What a caller knows before storing: the store adds id (if absent), size and checksums."""

    name: str
    source: str = ""
    content_type: str = "application/octet-stream"
    metadata: Mapping[str, str] = field(default_factory=dict)
    id: ObjectId | None = None
    md5: bool = False
    sha512: bool = False


@dataclass(frozen=True)
class ObjectMeta:
    """A stored object's metadata; ``locations`` names the backends holding a copy."""

    id: ObjectId
    name: str
    size: int
    created: datetime
    checksums: Checksums
    source: str = ""
    content_type: str = "application/octet-stream"
    metadata: Mapping[str, str] = field(default_factory=dict)
    locations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Frozen all the way down: a shared meta cannot be changed behind a backend's back.
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @classmethod
    def stored(
        cls, spec: ObjectSpec, oid: ObjectId, checksums: Checksums, location: str, now: datetime
    ) -> ObjectMeta:
        return cls(
            id=oid,
            name=spec.name,
            size=checksums.size,
            created=now,
            checksums=checksums,
            source=spec.source,
            content_type=spec.content_type,
            metadata=spec.metadata,
            locations=(location,),
        )

    def with_location(self, location: str) -> ObjectMeta:
        if location in self.locations:
            return self
        return replace(self, locations=(*self.locations, location))

    def to_json(self) -> bytes:
        document = {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "created": self.created.isoformat(),
            "source": self.source,
            "content_type": self.content_type,
            "checksums": {
                "adler32": self.checksums.adler32,
                "md5": self.checksums.md5,
                "sha512": self.checksums.sha512,
            },
            "metadata": dict(self.metadata),
            "locations": list(self.locations),
        }
        return json.dumps(document, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ObjectMeta:
        try:
            doc = json.loads(raw)
            sums = doc["checksums"]
            return cls(
                id=object_id(doc["id"]),
                name=str(doc["name"]),
                size=int(doc["size"]),
                created=datetime.fromisoformat(doc["created"]),
                checksums=Checksums(
                    size=int(doc["size"]),
                    adler32=str(sums["adler32"]),
                    md5=sums.get("md5"),
                    sha512=sums.get("sha512"),
                ),
                source=str(doc.get("source", "")),
                content_type=str(doc.get("content_type", "application/octet-stream")),
                metadata={str(k): str(v) for k, v in doc.get("metadata", {}).items()},
                locations=tuple(str(x) for x in doc.get("locations", [])),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise StoreError(f"unreadable object metadata: {error}") from error


def utcnow() -> datetime:
    return datetime.now(UTC)
