"""What a handler is: a pure function from one event to the SQL writes that project it.

Rules kept here: handlers do no I/O and read no clock (the projector executes their writes
inside the batch transaction that also stores the consumed position); they never put a
credential, ciphertext or password hash in a parameter (``redacted`` drops secret-looking
options); every time they write comes from the event.

Ordering: a write's ``key`` says what it must stay in order with. Writes of one key run in the
order the events came; writes of different keys may be regrouped (so a batch runs as a few
``executemany``), which is only right if they touch different rows, or rows they change only
by commutative means (counters, "greatest" times). ``key=None`` (the default) is a barrier:
the write runs after everything before it and before everything after it. ``FREE`` writes
commute with all others (insert-only rows with their own id, counters).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any, LiteralString, TypeVar

from psycopg.types.json import Jsonb

from bus.events.base import Event

FREE = ("free", 0)
"""The key of a write that commutes with every other write."""


@dataclass(frozen=True, slots=True)
class Write:
    """One SQL statement with its parameters and its ordering key (see the module docstring)."""

    sql: LiteralString
    params: tuple[Any, ...]
    key: Hashable | None = None


Handler = Callable[[Any], Sequence[Write]]
E = TypeVar("E", bound=Event)
HandlerOf = Callable[[E], Sequence[Write]]

_SECRET = re.compile(r"pass|secret|token|credential|private|(^|[._-])key($|[._-])", re.I)
REDACTED = "<redacted>"


Rule = tuple[str, int]
"""How writes to a table are keyed: ``FREE``, or (domain, n): key = (domain, first n params)."""

_TABLE = re.compile(r"^\s*(?:INSERT INTO|UPDATE)\s+([a-z_]+)")


@lru_cache(maxsize=512)
def _table(sql: str) -> str:
    match = _TABLE.match(sql)
    return match[1] if match else ""


def keyed(writes: Sequence[Write], rules: Mapping[str, Rule]) -> list[Write]:
    """The writes, each without a key given one by the rule of the table it writes (tables
    without a rule stay barriers)."""
    out = []
    for write in writes:
        if write.key is None:
            rule = rules.get(_table(write.sql))
            if rule is not None:
                key = FREE if rule == FREE else (rule[0], *write.params[: rule[1]])
                write = Write(write.sql, write.params, key)
        out.append(write)
    return out


def registrar(
    registry: dict[str, Handler], rules: Mapping[str, Rule] | None = None
) -> Callable[[type[E]], Callable[[HandlerOf[E]], HandlerOf[E]]]:
    """A decorator that files a handler under its event class's Avro name; its writes get keys
    from ``rules`` (table -> rule)."""

    def on(cls: type[E]) -> Callable[[HandlerOf[E]], HandlerOf[E]]:
        def register(fn: HandlerOf[E]) -> HandlerOf[E]:
            if rules:
                table_rules = rules

                def with_keys(event: E) -> Sequence[Write]:
                    return keyed(fn(event), table_rules)

                registry[cls.AVRO_NAME] = with_keys
            else:
                registry[cls.AVRO_NAME] = fn
            return fn

        return register

    return on


def redacted(options: Mapping[str, str]) -> Jsonb:
    """Options as JSON, with the value of every secret-looking key replaced."""
    return Jsonb({k: (REDACTED if _SECRET.search(k) else v) for k, v in options.items()})


def text(value: Enum | str | None) -> str | None:
    """An enum's value (or the string itself) for a text column."""
    if value is None:
        return None
    return value.value if isinstance(value, Enum) else value


def texts(values: Sequence[Enum | str]) -> list[str]:
    return [v.value if isinstance(v, Enum) else v for v in values]


def short_type(event: Event) -> str:
    """The event's class name (its Avro name without the namespace)."""
    return event.AVRO_NAME.rpartition(".")[2]
