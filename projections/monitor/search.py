"""The monitor's search syntax, OpenECPDS's: ``field=value`` terms and free words, pure.

Destinations: ``enabled=yes name=AB? country=fr comment=*test*``; transfers: ``expired=no
target=*.grib size>=700kb status=FAIL,STOP case=i``. Rules kept here:

- A term is ``field`` then one of ``= != >= <= > <`` then a value (double quotes keep spaces);
  anything else is a free word, matched as the page always did (a substring of the name ...).
- ``=`` and ``!=`` on a text field take globs: ``*`` any run, ``?`` one character; matching is
  case-sensitive unless the query says ``case=i`` (as OpenECPDS's). A list field (``status``)
  takes a comma-separated list. Sizes take ``b``, ``kb``, ``mb``, ``gb``, ``tb`` (1024-based).
- Each field and operator maps to a constant SQL fragment; values are only ever parameters. An
  unknown field, an operator the field does not take or a value it cannot read is refused
  with a sentence naming it (``SearchError``), shown to the operator instead of the rows.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, LiteralString

from bus.errors import EcpdsError


class SearchError(EcpdsError):
    """A query the syntax cannot read; the message names the term and what is allowed."""


_TERM = re.compile(r"^([a-z_]+)(!=|>=|<=|=|>|<)(.*)$", re.I)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(b|k|kb|m|mb|g|gb|t|tb)?$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_YES = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False}


@dataclass(frozen=True, slots=True)
class Term:
    """One ``field op value`` of a query."""

    field: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: its terms, its free words, and whether globs ignore case."""

    terms: tuple[Term, ...] = ()
    words: tuple[str, ...] = ()
    ignore_case: bool = False


def parse(text: str) -> Query:
    """Split ``text`` into terms and free words (``case=i`` sets ``ignore_case``)."""
    try:
        parts = shlex.split(text)
    except ValueError as error:
        raise SearchError(f"cannot read the query: {error}") from None
    terms, words, ignore_case = [], [], False
    for part in parts:
        match = _TERM.match(part)
        if match is None:
            words.append(part)
            continue
        name, op, value = match[1].lower(), match[2], match[3]
        if name == "case" and op == "=":
            ignore_case = value.lower() == "i"
            continue
        terms.append(Term(name, op, value))
    return Query(tuple(terms), tuple(words), ignore_case)


def glob_to_like(pattern: str) -> str:
    """A glob (``*``, ``?``) as a LIKE pattern, LIKE's own wildcards escaped."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def size_of(text: str) -> int:
    """``700kb`` -> 716800: a size in bytes (1024-based units)."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise SearchError(f"'{text}' is not a size: write e.g. 700kb, 2mb or 1048576")
    unit = (match[2] or "").lower()[:1]
    return int(float(match[1]) * _UNITS[unit])


def _yes(text: str) -> bool:
    try:
        return _YES[text.lower()]
    except KeyError:
        raise SearchError(f"'{text}' is not yes or no") from None


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SearchError(f"'{text}' is not a whole number") from None


_COMPARE: Mapping[str, LiteralString] = {
    "=": " = ",
    "!=": " <> ",
    ">=": " >= ",
    "<=": " <= ",
    ">": " > ",
    "<": " < ",
}


@dataclass(frozen=True, slots=True)
class Field:
    """How one search field reads: its SQL column (constant) and kind."""

    column: LiteralString
    kind: str  # text, number, size, flag, list
    upper: bool = False  # list values compared upper-cased (status codes)


def where(query: Query, fields: Mapping[str, Field]) -> tuple[list[LiteralString], list[Any]]:
    """The SQL conditions (constant fragments, ANDed by the caller) and their parameters for
    the terms of ``query`` over ``fields``; free words are the caller's."""
    clauses: list[LiteralString] = []
    params: list[Any] = []
    for term in query.terms:
        spec = fields.get(term.field)
        if spec is None:
            known = ", ".join(sorted(fields))
            raise SearchError(f"unknown field '{term.field}': search by {known}")
        clause, values = _clause(term, spec, query.ignore_case)
        clauses.append(clause)
        params.extend(values)
    return clauses, params


def _clause(term: Term, spec: Field, ignore_case: bool) -> tuple[LiteralString, list[Any]]:
    col, op = spec.column, term.op
    if spec.kind == "text":
        if op not in ("=", "!="):
            raise SearchError(f"'{term.field}' takes = or != (with * and ?), not {op}")
        like: LiteralString = " ILIKE " if ignore_case else " LIKE "
        negate: LiteralString = "NOT " if op == "!=" else ""
        return "(" + negate + "coalesce(" + col + ", '')" + like + "%s)", [glob_to_like(term.value)]
    if spec.kind == "flag":
        if op not in ("=", "!="):
            raise SearchError(f"'{term.field}' takes =yes or =no, not {op}")
        wanted = _yes(term.value) != (op == "!=")
        return "(coalesce(" + col + ", false) = %s)", [wanted]
    if spec.kind == "list":
        if op not in ("=", "!="):
            raise SearchError(f"'{term.field}' takes = or != and a comma-separated list")
        values = [v.strip() for v in term.value.split(",") if v.strip()]
        values = [v.upper() for v in values] if spec.upper else values
        negate = "NOT " if op == "!=" else ""
        return "(" + negate + "coalesce(" + col + ", '') = ANY(%s))", [values]
    read: Callable[[str], int] = size_of if spec.kind == "size" else _number
    return "(" + col + _COMPARE[op] + "%s)", [read(term.value)]


DESTINATION_FIELDS: Mapping[str, Field] = {
    "name": Field("name", "text"),
    "country": Field("country", "text"),
    "comment": Field("comment", "text"),
    "owner": Field("owner", "text"),
    "group": Field("transfer_group", "text"),
    "type": Field("type", "text"),
    "host": Field("coalesce(current_host, last_host)", "text"),
    "enabled": Field("active", "flag"),
    "standby": Field("standby", "flag"),
    "status": Field("status", "list", upper=True),
    "queued": Field("queued", "number"),
    "failed": Field("failed", "number"),
}
"""The overview's fields (``name=AB? enabled=yes``)."""

TRANSFER_FIELDS: Mapping[str, Field] = {
    "destination": Field("destination", "text"),
    "target": Field("target", "text"),
    "host": Field("host_id", "text"),
    "group": Field("transfer_group", "text"),
    "status": Field("status", "list", upper=True),
    "size": Field("size", "size"),
    "priority": Field("priority", "number"),
    "attempt": Field("attempt", "number"),
    "requeues": Field("requeue_count", "number"),
    "expired": Field("(expiry_time < now())", "flag"),
    # OpenECPDS's ``ts``: the time step of the file's product (metadata ``step``, a whole
    # number), read from the product transfers; a transfer without a numeric step matches none
    "ts": Field(
        "(SELECT CASE WHEN split_part(p.product, '/', 3) ~ '^[0-9]+$'"
        " THEN split_part(p.product, '/', 3)::bigint END"
        " FROM product_transfers p WHERE p.transfer_id = transfers.transfer_id)",
        "number",
    ),
}
"""The transfers page's fields (``target=*.grib size>=700kb``)."""
