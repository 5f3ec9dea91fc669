"""Avro single-object encoding of ecpds events (fastavro), and their JSON view.

Wire format (Avro spec, "single object encoding"): ``C3 01``, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's parsing canonical form, then the Avro binary
body. Any reader holding ``schemas/`` can decode every message: the fingerprint names the
schema, no registry needed. The Kafka header ``event-type`` carries the full name as well.

Rules kept here:

- Schemas are read once, from the ``schemas`` package directory. ``<fullname>.avsc`` files are
  the current versions (named types resolved across files by full name); files named
  ``<fullname>@<label>.avsc`` are frozen, self-contained earlier versions, used only to read
  old messages, which are resolved to the current schema (added fields take their defaults).
- Speed: schemas are parsed once, and each class gets a converter (dataclass <-> dict)
  generated from its schema when the catalogue loads, so a call does no schema work.
  Logical types are stripped from the parsed schemas and converted by those converters:
  fastavro would otherwise build ``UUID`` objects and go through its slower logical path.
- Every way a payload can be wrong raises ``DecodeError`` saying which.
- Two paths, one format: the compiled codec (``native/avro``, module ``ecpds_avro``) encodes
  and decodes current-version events straight from/to the dataclasses when it is installed;
  the pure-Python path (converters + fastavro) does everything else (earlier versions, the
  precise error for a foreign payload) and all of it when ``ECPDS_CODEC=python`` or the
  compiled module is missing. Both write the same bytes (``tests/bus/test_codec_native.py``).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from io import BytesIO
from pathlib import Path
from types import MemberDescriptorType
from typing import Any, Protocol, TypeAlias

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import to_parsing_canonical_form

import schemas as _schemas_package
from bus.errors import DecodeError, UnknownSchema
from bus.events import EVENT_TYPES, NAMED_TYPES, Event

EVENT_TYPE_HEADER = "event-type"
MARKER = b"\xc3\x01"
HEADER_SIZE = 10  # marker + fingerprint

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None
AvroSchema: TypeAlias = Any  # fastavro's schema JSON: str | list | dict
Converter: TypeAlias = Callable[[Any], Any]

SCHEMAS_DIR = Path(_schemas_package.__file__).parent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_NAMED = ("record", "enum", "fixed", "error")


# --- CRC-64-AVRO (the Avro spec's Rabin fingerprint) ---------------------------------------

_EMPTY64 = 0xC15D213AA4D7A795


def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return tuple(table)


_CRC64_TABLE = _crc64_table()


def fingerprint(canonical_form: str) -> bytes:
    """CRC-64-AVRO of a parsing canonical form, as the 8 little-endian bytes put on the wire."""
    fp = _EMPTY64
    for byte in canonical_form.encode():
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


# --- schema loading ---------------------------------------------------------------------------


def _fullname(schema: Mapping[str, Any], namespace: str | None) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _expand(schema: AvroSchema, defs: Mapping[str, Any], seen: set[str], ns: str | None) -> Any:
    """Inline named references (first use defines, later ones refer): one standalone schema."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema
        full = schema if "." in schema or ns is None else f"{ns}.{schema}"
        if full not in defs and schema in defs:
            full = schema
        if full in seen:
            return full
        if full not in defs:
            raise DecodeError(f"schema refers to unknown named type {schema!r}")
        return _expand(defs[full], defs, seen, ns)
    if isinstance(schema, list):
        return [_expand(branch, defs, seen, ns) for branch in schema]
    kind = schema["type"]
    if kind in _NAMED:
        full = _fullname(schema, ns)
        seen.add(full)
        out = {k: v for k, v in schema.items() if k not in ("name", "namespace")}
        out["name"] = full
        if kind in ("record", "error"):
            space = full.rpartition(".")[0] or None
            out["fields"] = [
                {**field, "type": _expand(field["type"], defs, seen, space)}
                for field in schema["fields"]
            ]
        return out
    if kind == "array":
        return {**schema, "items": _expand(schema["items"], defs, seen, ns)}
    if kind == "map":
        return {**schema, "values": _expand(schema["values"], defs, seen, ns)}
    if isinstance(kind, (dict, list)) or kind not in _PRIMITIVES:
        return _expand(kind, defs, seen, ns)
    return schema


def _strip_logical(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    return schema


# --- converters generated from the schemas ----------------------------------------------------


class _ConverterBuilder:
    """Writes one to-avro and one from-avro function per record, as Python source, then compiles.

    Generated code (as ``dataclasses`` itself does) because a loop over field descriptors per
    call costs several times more than straight attribute reads and a direct constructor call.
    """

    def __init__(self, classes: Mapping[str, type]) -> None:
        self.classes = classes
        self.namespace: dict[str, Any] = {
            "_EPOCH": _EPOCH,
            "_US": _MICROSECOND,
            "_new": object.__new__,
        }
        self.lines: list[str] = []
        self.done: set[str] = set()

    @staticmethod
    def ident(full: str) -> str:
        return full.replace(".", "_")

    def record(self, schema: Mapping[str, Any]) -> None:
        full = schema["name"]
        if full in self.done:
            return
        self.done.add(full)
        cls = self.classes.get(full)
        if cls is None:
            raise DecodeError(f"no Python class for Avro type {full!r}")
        ident = self.ident(full)
        self.namespace[f"C_{ident}"] = cls
        to_items, from_items, set_lines = [], [], []
        for field in schema["fields"]:
            name = field["name"]
            to_items.append(f"{name!r}: {self.to_expr(field['type'], f'o.{name}')}")
            value = self.from_expr(field["type"], f"d[{name!r}]")
            from_items.append(f"{name}={value}")
            if isinstance(getattr(cls, name, None), MemberDescriptorType):
                self.namespace[f"S_{ident}_{name}"] = getattr(cls, name).__set__
                set_lines.append(f"    S_{ident}_{name}(o, {value})\n")
        self.lines.append(f"def to_{ident}(o):\n    return {{{', '.join(to_items)}}}\n")
        if len(set_lines) == len(from_items):
            # Filling the slots directly is ~3x cheaper than the frozen dataclass __init__
            # (keyword parsing + object.__setattr__ per field); the classes have no
            # __post_init__, and the decoded record always holds every field.
            body = "".join(set_lines)
            self.lines.append(
                f"def from_{ident}(d):\n    o = _new(C_{ident})\n{body}    return o\n"
            )
        else:
            self.lines.append(
                f"def from_{ident}(d):\n    return C_{ident}({', '.join(from_items)})\n"
            )

    def to_expr(self, t: Any, v: str) -> str:
        if isinstance(t, list):
            inner = [b for b in t if b != "null"]
            if len(inner) != 1:
                raise DecodeError("only [null, X] unions are supported in ecpds schemas")
            # fastavro's (branch, value) notation skips trying each branch in turn
            e = self.to_expr(inner[0], v)
            return f"(None if {v} is None else ({self.branch(inner[0])!r}, {e}))"
        if isinstance(t, str):
            return v
        kind = t["type"]
        if kind == "record":
            self.record(t)
            return f"to_{self.ident(t['name'])}({v})"
        if t.get("logicalType") == "timestamp-micros":
            # a naive datetime fails here: "can't subtract offset-naive and offset-aware"
            return f"(({v} - _EPOCH) // _US)"
        if kind == "array":
            e = self.to_expr(t["items"], "_i")
            return v if e == "_i" else f"[{e} for _i in {v}]"
        if kind == "map":
            e = self.to_expr(t["values"], "_i")
            return v if e == "_i" else f"{{_k: {e} for _k, _i in {v}.items()}}"
        return v  # enum (a StrEnum is a str), primitives, uuid strings

    @staticmethod
    def branch(t: Any) -> str:
        if isinstance(t, str):
            return t
        return str(t["name"] if t["type"] in _NAMED else t["type"])

    def from_expr(self, t: Any, v: str) -> str:
        if isinstance(t, list):
            inner = [b for b in t if b != "null"]
            e = self.from_expr(inner[0], v)
            return v if e == v else f"(None if {v} is None else {e})"
        if isinstance(t, str):
            return v
        kind = t["type"]
        if kind == "record":
            self.record(t)
            return f"from_{self.ident(t['name'])}({v})"
        if kind == "enum":
            ident = self.ident(t["name"])
            enum_cls = self.classes[t["name"]]
            self.namespace[f"E_{ident}"] = {m.value: m for m in enum_cls}  # type: ignore[attr-defined]
            return f"E_{ident}[{v}]"
        if t.get("logicalType") == "timestamp-micros":
            return f"(_EPOCH + _US * {v})"
        if kind == "array":
            e = self.from_expr(t["items"], "_i")
            return f"tuple({v})" if e == "_i" else f"tuple([{e} for _i in {v}])"
        if kind == "map":
            e = self.from_expr(t["values"], "_i")
            return v if e == "_i" else f"{{_k: {e} for _k, _i in {v}.items()}}"
        return v

    def compile(self) -> dict[str, Any]:
        source = "\n".join(self.lines)
        exec(compile(source, "<bus.codec converters>", "exec"), self.namespace)  # noqa: S102 - source generated from our own schemas
        return self.namespace


# --- the compiled codec -----------------------------------------------------------------------

CODEC_ENV = "ECPDS_CODEC"
"""``python`` forces the pure-Python path, ``native`` requires the compiled one, else: auto."""


class NativeCodec(Protocol):
    """What the catalogue uses of ``ecpds_avro.Codec``."""

    def encode(self, event: Event, /) -> bytes: ...

    def decode(self, data: bytes, /) -> Any: ...  # the event, or None when not one it knows


def _native_codec(
    native: bool | None,
    events: Mapping[str, type[Event]],
    classes: Mapping[str, type],
    expanded: Mapping[str, dict[str, Any]],
    fingerprints: Mapping[str, bytes],
) -> NativeCodec | None:
    """The compiled codec of these events, or None for the pure-Python path.

    ``native`` None follows ``ECPDS_CODEC`` (read here, once per catalogue, because the
    catalogue is built at import, before any settings object exists).
    """
    if native is None:
        choice = os.environ.get(CODEC_ENV, "auto")
        if choice == "python":
            return None
        native = True if choice == "native" else None
    if native is False:
        return None
    try:
        import ecpds_avro  # optional: built by infra/install.sh when cargo is there
    except ImportError:
        if native:
            raise
        return None
    try:
        compiled: NativeCodec = ecpds_avro.compile_codec(
            (ecpds_avro.EventSchema(events[n], fingerprints[n], s) for n, s in expanded.items()),
            classes,
            DecodeError,
        )
    except ecpds_avro.Unsupported:
        if native:
            raise
        return None
    return compiled


# --- the catalogue ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Writer:
    name: str
    header: bytes
    parsed: Any
    to_avro: Converter


@dataclass(frozen=True, slots=True)
class _Reader:
    name: str
    parsed: Any
    reader_parsed: Any  # the current schema when this is an earlier version, else None
    from_avro: Converter


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One loaded event schema version: its full name, fingerprint and expanded schema."""

    name: str
    fingerprint: bytes
    schema: dict[str, Any]
    current: bool


class Catalogue:
    """Every event schema of a directory, parsed once, with a converter per event class.

    ``native``: True requires the compiled codec, False keeps to the pure-Python path, None
    (the default) follows ``ECPDS_CODEC`` and otherwise uses the compiled codec if installed.
    """

    def __init__(
        self,
        directory: Path = SCHEMAS_DIR,
        events: Mapping[str, type[Event]] = EVENT_TYPES,
        named: Mapping[str, type] = NAMED_TYPES,
        *,
        native: bool | None = None,
    ) -> None:
        definitions: dict[str, Any] = {}
        previous: list[Any] = []
        for path in sorted(directory.glob("*.avsc")):
            schema = json.loads(path.read_text())
            full = _fullname(schema, None)
            if "@" in path.stem:
                if path.stem.split("@")[0] != full:
                    raise DecodeError(f"{path.name} holds {full}, not what its name says")
                previous.append(schema)
            else:
                if path.stem != full:
                    raise DecodeError(
                        f"{path.name} holds {full}: the file must be named {full}.avsc"
                    )
                definitions[full] = schema
        missing = set(events) - set(definitions)
        if missing:
            raise DecodeError(f"event classes without a schema: {sorted(missing)}")
        builder = _ConverterBuilder({**named, **events})
        expanded = {name: _expand(name, definitions, set(), None) for name in events}
        for schema in expanded.values():
            builder.record(schema)
        compiled = builder.compile()
        self.versions: dict[bytes, SchemaVersion] = {}
        self._writers: dict[type, _Writer] = {}
        self._readers: dict[bytes, _Reader] = {}
        self._current: dict[str, bytes] = {}
        for name, schema in expanded.items():
            ident = _ConverterBuilder.ident(name)
            fp = self._add_version(name, schema, current=True)
            self._current[name] = fp
            parsed = parse_schema(_strip_logical(schema))
            self._writers[events[name]] = _Writer(
                name, MARKER + fp, parsed, compiled[f"to_{ident}"]
            )
            self._readers[fp] = _Reader(name, parsed, None, compiled[f"from_{ident}"])
        for schema in previous:
            name = _fullname(schema, None)
            if name not in events:
                raise DecodeError(f"earlier version of {name}, which is no longer an event")
            old = _expand(schema, {}, set(), None)
            if fingerprint(to_parsing_canonical_form(old)) in self.versions:
                continue  # frozen but never changed: the current version already reads it
            fp = self._add_version(name, old, current=False)
            current = self._readers[self.fingerprint_of(name)]
            self._readers[fp] = _Reader(
                name,
                parse_schema(_strip_logical(old)),
                current.parsed,
                current.from_avro,
            )
        self.native = _native_codec(native, events, {**named, **events}, expanded, self._current)

    def _add_version(self, name: str, schema: dict[str, Any], *, current: bool) -> bytes:
        fp = fingerprint(to_parsing_canonical_form(schema))
        other = self.versions.get(fp)
        if other is not None and other.name != name:
            raise DecodeError(f"{name} and {other.name} have the same fingerprint")
        self.versions[fp] = SchemaVersion(name, fp, schema, current)
        return fp

    def fingerprint_of(self, name: str) -> bytes:
        """The fingerprint of the current schema of an event type (``KeyError`` if unknown)."""
        return self._current[name]

    def encode(self, event: Event) -> bytes:
        """The single-object encoding of an event."""
        if self.native is not None:
            return self.native.encode(event)
        try:
            writer = self._writers[type(event)]
        except KeyError:
            raise TypeError(f"{type(event).__name__} is not an ecpds event") from None
        out = BytesIO()
        out.write(writer.header)
        schemaless_writer(out, writer.parsed, writer.to_avro(event))
        return out.getvalue()

    def version_of(self, data: bytes) -> SchemaVersion:
        """The schema version a payload says it was written with (``DecodeError`` if none)."""
        if len(data) < HEADER_SIZE or data[:2] != MARKER:
            raise DecodeError(
                "not an Avro single-object message (no C3 01 marker and 8-byte fingerprint)"
            )
        version = self.versions.get(bytes(data[2:HEADER_SIZE]))
        if version is None:
            raise UnknownSchema(
                f"unknown schema fingerprint {bytes(data[2:HEADER_SIZE]).hex()}"
                " (written with a schema this reader does not have)"
            )
        return version

    def decode(self, data: bytes) -> Event:
        """The event in a single-object-encoded payload; ``DecodeError`` says what is wrong."""
        if self.native is not None:
            decoded: Event | None = self.native.decode(data)
            if decoded is not None:
                return decoded
        reader = self._readers.get(bytes(data[2:HEADER_SIZE]))
        if reader is None or data[:2] != MARKER:
            self.version_of(data)  # raises the precise reason
        assert reader is not None
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(body, reader.parsed, reader.reader_parsed)
            event: Event = reader.from_avro(record)
        except (EOFError, StopIteration) as exc:
            raise DecodeError(f"{reader.name}: truncated body ({exc})") from exc
        except (
            SchemaResolutionError,
            ValueError,
            IndexError,
            KeyError,
            TypeError,
            UnicodeDecodeError,
        ) as exc:
            raise DecodeError(f"{reader.name}: corrupt body ({exc!r})") from exc
        if body.tell() != len(data):
            raise DecodeError(
                f"{reader.name}: corrupt body ({len(data) - body.tell()} bytes after the record)"
            )
        return event


# --- public API -------------------------------------------------------------------------------

CATALOGUE = Catalogue()


def encode(event: Event) -> bytes:
    """The Avro single-object encoding of an event."""
    return CATALOGUE.encode(event)


if CATALOGUE.native is not None:  # the hot path, straight to the compiled encoder
    encode = CATALOGUE.native.encode  # type: ignore[assignment]


def decode(data: bytes) -> Event:
    """The event in a payload; raises ``DecodeError`` (not single-object, unknown fingerprint,
    truncated or corrupt body)."""
    return CATALOGUE.decode(data)


def event_type(event: Event) -> str:
    """The Avro full name of an event, as carried by the ``event-type`` header."""
    return event.AVRO_NAME


def headers(event: Event) -> list[tuple[str, bytes]]:
    """The Kafka headers to publish an event with."""
    return [(EVENT_TYPE_HEADER, event.AVRO_NAME.encode())]


def type_header(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The event type a record's ``event-type`` header names (None without one; bytes that
    are not UTF-8 are replaced, so ``decode_with_type`` refuses the record, never crashes)."""
    for key, value in headers or ():
        if key == EVENT_TYPE_HEADER:
            return value.decode("utf-8", "replace") if value else None
    return None


def decode_with_type(data: bytes, header_type: str | None) -> Event:
    """Decode, and check the ``event-type`` header (when present) names the payload's type."""
    event = CATALOGUE.decode(data)
    if header_type is not None and header_type != event.AVRO_NAME:
        raise DecodeError(f"header event-type {header_type!r} but the payload is {event.AVRO_NAME}")
    return event


def to_json(event: Event) -> dict[str, JSONValue]:
    """A JSON-safe view of an event: ISO 8601 UTC times, enum values, base64 bytes."""
    value = _json_value(event)
    assert isinstance(value, dict)
    return value


def _json_value(value: Any) -> JSONValue:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Enum):
        return value.value  # type: ignore[no-any-return]
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if is_dataclass(value):
        return {f.name: _json_value(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")


__all__ = [
    "CATALOGUE",
    "EVENT_TYPE_HEADER",
    "Catalogue",
    "SchemaVersion",
    "decode",
    "decode_with_type",
    "encode",
    "event_type",
    "fingerprint",
    "headers",
    "to_json",
]
