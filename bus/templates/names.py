"""Acquisition target and metadata templates: ``acquisition.target`` and ``acquisition.metadata``.

Tokens (ECPDS-REFERENCE §3.2 step 8): ``$target``, ``$name``, ``$original``, ``$link``,
``$destination``, ``$date``, ``$dirdate``, ``$timestamp``. Rules it keeps:

- Substrings as OpenECPDS writes them: ``$target[11]`` is from index 11 to the end,
  ``$target[2..12]`` from 2 up to (not including) 12, Java ``substring`` style; indexes past
  the end are clamped (an empty result, never an error at transfer time).
- ``$date`` is ``now`` formatted (default ``yyyyMMdd``); ``$date[yyyy-MM-dd]`` or
  ``$date[dateformat=...,datedelta=-1]`` choose the format and a day offset.
- ``$timestamp`` is the file's time in milliseconds since the epoch.
- ``parse_metadata("k=v,k2=$name")``: comma-separated ``key=template`` pairs; commas inside
  ``[...]`` (a ``$date[...]`` argument) do not split.
- Templates are compiled once (``parse_name`` is cached); rendering is a format call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from bus.templates.dates import DEFAULT_FORMAT, DateFormatError, compile_format, parse_date_spec
from bus.templates.lexer import Compiled, Placeholder, TemplateError, compile_tokens, tokenize

__all__ = [
    "NAME_FAMILIES",
    "MetadataTemplate",
    "NameContext",
    "NameTemplate",
    "parse_metadata",
    "parse_name",
    "render_name",
]

NAME_FAMILIES = frozenset(
    {"target", "name", "original", "link", "destination", "date", "dirdate", "timestamp"}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SUBSTRING = re.compile(r"\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?")


@dataclass(frozen=True, slots=True)
class NameContext:
    """The values a target or metadata template can use for one discovered file."""

    target: str
    original: str
    name: str
    now: datetime
    link: str = ""
    destination: str = ""
    timestamp: int | None = None
    dirdate: str = ""


def _plain(family: str) -> Callable[[NameContext], str]:
    if family == "timestamp":
        return lambda c: "" if c.timestamp is None else str(c.timestamp)
    return lambda c: str(getattr(c, family))


def _resolver(field: str) -> Callable[[Placeholder], Callable[[NameContext], str]]:
    def resolve(token: Placeholder) -> Callable[[NameContext], str]:
        arg_column = token.column + len(token.family) + 2
        if token.family == "date":
            try:
                spec = parse_date_spec(token.arg)
            except DateFormatError as error:
                raise TemplateError(
                    str(error), token.line, arg_column + error.offset, field=field
                ) from None
            fmt = spec.format or compile_format(DEFAULT_FORMAT)
            offsets = spec.offsets or (0,)
            if len(offsets) != 1:
                raise TemplateError(
                    "a day window has no meaning in a name", token.line, arg_column, field=field
                )
            shift = timedelta(days=offsets[0])
            return lambda c: fmt.format(c.now + shift)
        base = _plain(token.family)
        if token.arg is None:
            return base
        match = _SUBSTRING.fullmatch(token.arg)
        if match is None:
            raise TemplateError(
                f"${token.family}[{token.arg}]: expected [start] or [start..end]",
                token.line,
                arg_column,
                field=field,
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else None
        if end is not None and end < start:
            raise TemplateError(
                f"${token.family}[{token.arg}]: the end is before the start",
                token.line,
                arg_column,
                field=field,
            )
        return lambda c: base(c)[start:end]

    return resolve


@dataclass(frozen=True, slots=True)
class NameTemplate:
    """A compiled ``acquisition.target``-style template."""

    source: str
    compiled: Compiled[NameContext]

    def render(self, context: NameContext) -> str:
        """The name for the file described by ``context``."""
        return self.compiled.render(context)


@lru_cache(maxsize=1024)
def parse_name(template: str, field: str = "acquisition.target") -> NameTemplate:
    """Compile a target/metadata value template; ``TemplateError`` if invalid (cached)."""
    if "\n" in template or "\r" in template:
        raise TemplateError("a name template is one line", 1, 1, field=field)
    tokens = tokenize(template, NAME_FAMILIES, field=field)
    return NameTemplate(template, compile_tokens(tokens, _resolver(field)))


def render_name(
    template: str,
    *,
    target: str,
    original: str,
    name: str,
    now: datetime,
    link: str = "",
    destination: str = "",
    timestamp: int | datetime | None = None,
    dirdate: str = "",
) -> str:
    """Render an ``acquisition.target`` template for one file (the template is parsed once)."""
    if isinstance(timestamp, datetime):
        moment = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
        timestamp = (moment - _EPOCH) // timedelta(milliseconds=1)
    context = NameContext(target, original, name, now, link, destination, timestamp, dirdate)
    return parse_name(template).render(context)


@dataclass(frozen=True, slots=True)
class MetadataTemplate:
    """Compiled ``acquisition.metadata``: ``key=template`` pairs in their written order."""

    items: tuple[tuple[str, NameTemplate], ...]

    def render(self, context: NameContext) -> Mapping[str, str]:
        """Each key with its rendered value (a later duplicate key wins)."""
        return {key: value.render(context) for key, value in self.items}


def parse_metadata(text: str, field: str = "acquisition.metadata") -> MetadataTemplate:
    """Parse ``k=v,k2=$name``; ``TemplateError`` (with the column) if a pair is malformed."""
    if "\n" in text or "\r" in text:
        raise TemplateError("metadata is one line of key=value pairs", 1, 1, field=field)
    items: list[tuple[str, NameTemplate]] = []
    for start, piece in _split_pairs(text):
        if not piece.strip():
            continue
        key, sep, value = piece.partition("=")
        key_column = start + 1 + len(key) - len(key.lstrip())
        if not sep:
            raise TemplateError(
                f"expected key=value, got {piece.strip()!r}", 1, key_column, field=field
            )
        key = key.strip()
        if not key or not all(c.isalnum() or c in "_-." for c in key):
            raise TemplateError(f"bad metadata key {key!r}", 1, key_column, field=field)
        value_column = start + len(piece.partition("=")[0]) + 2
        try:
            compiled = parse_name(value.strip(), field)
        except TemplateError as error:
            lead = len(value) - len(value.lstrip())
            column = value_column + lead + error.column - 1
            raise TemplateError(error.detail, 1, column, field=field) from None
        items.append((key, compiled))
    return MetadataTemplate(tuple(items))


def _split_pairs(text: str) -> list[tuple[int, str]]:
    """Split on commas outside ``[...]``; each piece with its 0-based start."""
    pieces: list[tuple[int, str]] = []
    depth = 0
    start = 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        elif char == "," and not depth:
            pieces.append((start, text[start:index]))
            start = index + 1
    pieces.append((start, text[start:]))
    return pieces
