"""Compiles expanded Avro schemas into the program the native codec runs.

Input: each event class with the fingerprint and the *expanded* schema of its current version
(a named type written out where first used and referred to by full name afterwards, logical
types kept), and the Python class of every named type. Output: a ``Codec``.

A program is a tree of tuples whose first item names the operation: ``("long",)``,
``("int",)``, ``("string",)``, ``("bytes",)``, ``("boolean",)``, ``("double",)``,
``("float",)``, ``("null",)``, ``("timestamp-micros",)``, ``("enum", i)``, ``("record", i)``,
``("optional", null_branch, program)``, ``("array", program)``, ``("map", program)``; records
and enums are tables indexed by ``i``, each record after the records it contains.

Rule kept here: only what converts exactly as the fastavro path of ``bus.codec`` does is
compiled (primitives, records, enums, arrays, maps, ``[null, X]`` unions, ``timestamp-micros``;
other logical types as their base type). Anything else (fixed, wider unions, recursive
records, a named type without a class) raises ``Unsupported`` and the caller keeps its
pure-Python path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MemberDescriptorType
from typing import Any, TypeAlias

from ecpds_avro._native import Codec

Program: TypeAlias = tuple[Any, ...]

_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))


class Unsupported(ValueError):
    """A schema uses something the native codec does not compile."""


@dataclass(frozen=True, slots=True)
class EventSchema:
    """One event class, the fingerprint of its current schema and that schema, expanded."""

    cls: type
    fingerprint: bytes
    schema: Mapping[str, Any]


class _Compiler:
    def __init__(self, classes: Mapping[str, type]) -> None:
        self.classes = classes
        self.records: list[tuple[str, type, bool, tuple[str, ...], tuple[Program, ...]]] = []
        self.enums: list[tuple[str, tuple[str, ...], tuple[object, ...]]] = []
        self.index: dict[str, Program] = {}  # full name -> ("record", i) or ("enum", i)
        self.named: dict[str, Mapping[str, Any]] = {}  # full name -> its definition
        self.open: set[str] = set()  # records being compiled: a reference back is recursion

    def op(self, t: Any) -> Program:
        if isinstance(t, str):
            if t in _PRIMITIVES:
                return (t,)
            if t not in self.named:
                raise Unsupported(f"reference to {t!r} before its definition")
            return self.op(self.named[t])
        if isinstance(t, list):
            if len(t) != 2 or t.count("null") != 1:
                raise Unsupported(f"union {t!r}: only [null, X] unions are compiled")
            null_branch = t.index("null")
            return ("optional", null_branch, self.op(t[1 - null_branch]))
        if not isinstance(t, Mapping):
            raise Unsupported(f"schema {t!r}")
        kind = t["type"]
        if kind in ("record", "error"):
            return self.record(t)
        if kind == "enum":
            return self.enum(t)
        # checked before the kind, as bus.codec's converters do
        if t.get("logicalType") == "timestamp-micros":
            if kind != "long":
                raise Unsupported(f"timestamp-micros on {kind!r}")
            return ("timestamp-micros",)
        if kind == "array":
            return ("array", self.op(t["items"]))
        if kind == "map":
            return ("map", self.op(t["values"]))
        if isinstance(kind, (list, Mapping)) or kind in _PRIMITIVES:
            return self.op(kind)
        raise Unsupported(f"type {kind!r}")

    def record(self, t: Mapping[str, Any]) -> Program:
        full = str(t["name"])
        if full in self.index:
            return self.index[full]
        if full in self.open:
            raise Unsupported(f"{full} is recursive")
        cls = self._class(full)
        self.named[full] = t
        self.open.add(full)
        names = tuple(str(f["name"]) for f in t["fields"])
        ops = tuple(self.op(f["type"]) for f in t["fields"])
        self.open.discard(full)
        # same test as bus.codec: fill the slots directly only when every field is a slot
        direct = all(isinstance(getattr(cls, n, None), MemberDescriptorType) for n in names)
        self.index[full] = ("record", len(self.records))
        self.records.append((full, cls, direct, names, ops))
        return self.index[full]

    def enum(self, t: Mapping[str, Any]) -> Program:
        full = str(t["name"])
        if full in self.index:
            return self.index[full]
        cls = self._class(full)
        if not issubclass(cls, Enum):
            raise Unsupported(f"{full} is not an Enum class")
        by_value = {member.value: member for member in cls}
        symbols = tuple(str(s) for s in t["symbols"])
        self.named[full] = t
        self.index[full] = ("enum", len(self.enums))
        self.enums.append((full, symbols, tuple(by_value.get(s) for s in symbols)))
        return self.index[full]

    def _class(self, full: str) -> type:
        cls = self.classes.get(full)
        if cls is None:
            raise Unsupported(f"no Python class for {full}")
        return cls


def compile_codec(
    events: Iterable[EventSchema], classes: Mapping[str, type], error: type[Exception]
) -> Codec:
    """The native codec of these events; corrupt payloads raise ``error``."""
    compiler = _Compiler(classes)
    table = []
    for event in events:
        _, index = compiler.record(event.schema)
        if compiler.records[index][1] is not event.cls:
            raise Unsupported(f"{event.schema['name']} is not {event.cls.__name__}")
        table.append((event.cls, bytes(event.fingerprint), index))
    return Codec(compiler.records, compiler.enums, table, error)
