"""Turning a batch's writes into few statements: the order they must keep (``plan``) and one
multi-row ``INSERT`` per group of writes that may share a statement (``statements``).

Rules kept here:
- writes of one key keep their order; writes of different keys may be regrouped (see
  ``projections.handlers.base`` for what a key promises);
- a group of writes becomes one multi-row statement only if the result is the one the writes
  give run one by one: every key appears once in the group (so an ``ON CONFLICT DO UPDATE``
  never meets its own row twice: a table's key is made of the leading parameters, which are
  the columns it conflicts on), or the statement only inserts (``DO NOTHING`` keeps the
  first row, as running them in order does). Otherwise the group runs row by row.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, LiteralString

from projections.handlers.base import FREE, Write

MAX_PARAMS = 30_000
"""Parameters per statement (the protocol allows 65,535): a larger group is split."""

PREPARED_ROWS = 32
"""Multi-row statements of up to this many rows may be prepared (the driver prepares a text
seen often): small groups are the common ones, and a long statement's plan is large."""


@dataclass(frozen=True)
class Step:
    """One statement of a plan, its parameter sets, and whether every key in it is distinct."""

    sql: LiteralString
    params: list[tuple[Any, ...]]
    distinct: bool = True


def plan(writes: Sequence[Write]) -> list[Step]:
    """Statements to run, in order, each with its parameter sets.

    Writes of one key keep their order: the n-th write of a key goes to layer n, and layers run
    one after the other; within a layer every key appears once, so its writes are grouped by
    statement. A barrier (key None) closes the layers before it and runs alone.
    """
    steps: list[Step] = []
    layers: list[dict[LiteralString, list[tuple[Any, ...]]]] = []
    free: set[LiteralString] = set()  # statements of FREE writes: keys may repeat
    depth: dict[Hashable, int] = {}

    def close() -> None:
        for layer in layers:
            steps.extend(Step(q, p, q not in free) for q, p in layer.items())
        layers.clear()
        depth.clear()
        free.clear()

    for write in writes:
        if write.key is None:
            close()
            steps.append(Step(write.sql, [write.params]))
            continue
        if write.key == FREE:
            level = 0
            free.add(write.sql)
        else:
            level = depth.get(write.key, -1) + 1
            depth[write.key] = level
        while len(layers) <= level:
            layers.append({})
        layers[level].setdefault(write.sql, []).append(write.params)
    close()
    return steps


@dataclass(frozen=True)
class Statement:
    """One statement to execute with its parameters (one set: a multi-row statement)."""

    sql: LiteralString
    params: list[tuple[Any, ...]]
    numbered: bool  # placeholders $1, $2, ... (a raw cursor) rather than %s
    prepare: bool | None = None  # None: as the driver decides; False: never


@dataclass(frozen=True)
class _Shape:
    """A statement cut around its ``VALUES (...)`` rows: text between, placeholders in each."""

    pieces: tuple[str, ...]  # len(rows) + 1
    rows: tuple[str, ...]
    counts: tuple[int, ...]


_VALUES = re.compile(r"\bVALUES \(")


@lru_cache(maxsize=256)
def _shape(sql: str) -> _Shape | None:
    """The statement cut around its rows, or None if it is not ``INSERT ... VALUES`` with every
    placeholder inside a row (then it cannot repeat its rows)."""
    if not re.match(r"^\s*(WITH \w+ AS \(\s*)?INSERT INTO ", sql):
        return None
    pieces: list[str] = []
    rows: list[str] = []
    at = 0
    for match in _VALUES.finditer(sql):
        start = match.end() - 1
        end = _closing(sql, start)
        if end is None:
            return None
        pieces.append(sql[at:start])
        rows.append(sql[start : end + 1])
        at = end + 1
    pieces.append(sql[at:])
    counts = tuple(row.count("%s") for row in rows)
    if not rows or sum(counts) != sql.count("%s") or any(c in sql for c in ("%%", "%(", "$")):
        return None
    return _Shape(tuple(pieces), tuple(rows), counts)


def _closing(sql: str, start: int) -> int | None:
    """The index of the parenthesis closing the one at ``start`` (quotes respected)."""
    depth = 0
    quoted = False
    for i in range(start, len(sql)):
        char = sql[i]
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


def statements(step: Step) -> Iterator[Statement]:
    """The statements that run ``step``: multi-row where that gives the same result (see the
    module docstring), row by row (prepared) otherwise."""
    shape = _shape(step.sql) if len(step.params) > 1 else None
    if shape is None or not (step.distinct or "DO UPDATE" not in step.sql):
        yield Statement(step.sql, step.params, numbered=False)
        return
    per_row = max(1, sum(shape.counts))
    size = max(1, MAX_PARAMS // per_row)
    for first in range(0, len(step.params), size):
        chunk = step.params[first : first + size]
        prepare = None if len(chunk) <= PREPARED_ROWS else False
        sql = (
            _repeated_small(shape, len(chunk)) if prepare is None else _repeated(shape, len(chunk))
        )
        yield Statement(sql, [_flattened(shape, chunk)], numbered=True, prepare=prepare)


def _repeated(shape: _Shape, n: int) -> LiteralString:
    """The statement with ``n`` copies of each row, placeholders numbered ($1, $2, ...) so the
    driver sends it as it is instead of parsing a long text for ``%s`` every time."""
    parts = [shape.pieces[0]]
    number = 0
    for row, piece in zip(shape.rows, shape.pieces[1:], strict=True):
        bits = row.split("%s")
        copies = []
        for _ in range(n):
            text = [bits[0]]
            for bit in bits[1:]:
                number += 1
                text.append(f"${number}{bit}")
            copies.append("".join(text))
        parts.append(", ".join(copies))
        parts.append(piece)
    return "".join(parts)  # the statement's own text, repeated and numbered


_repeated_small = lru_cache(maxsize=512)(_repeated)  # the common sizes: texts kept, not rebuilt


def _flattened(shape: _Shape, chunk: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    if len(shape.counts) == 1:
        return tuple(value for params in chunk for value in params)
    out: list[Any] = []
    at = 0
    for count in shape.counts:  # every row of the first VALUES, then of the next
        for params in chunk:
            out.extend(params[at : at + count])
        at += count
    return tuple(out)
