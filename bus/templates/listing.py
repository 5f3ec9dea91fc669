"""Acquisition listing lines: the Directory field of an acquisition host (ECPDS-REFERENCE §3.2).

``parse_directory(text)`` checks and compiles the field when the host is defined;
``ListingSpec.expand(now, defaults)`` gives the directories to list at one poll. A line is
``[opt=v;opt=v]/path/with/$date/{regex}``; rules it keeps:

- Blank lines and lines starting with ``#`` are ignored. The whole-field script forms
  ``$(js:...)`` / ``$(py:...)`` are refused: nothing is ever evaluated.
- ``[...]`` at the start holds ``;``-separated ``key=value`` line options (kept as strings for
  the acquisition stage; ``dateformat``, ``datedelta``, ``dirdateformat`` and ``dirdatedelta``
  are also read here).
- A trailing ``{...}`` is the file-name regular expression (matched in full against entry
  names); without one every entry is taken. Placeholders inside it are substituted with their
  values regex-escaped; a ``$`` that starts no known placeholder stays a regex anchor.
- Placeholders: ``$date`` and ``$dirdate`` (below), ``$host[name|nickname|host|login|passwd|
  comment|userMail|networkCode|networkName]`` (``passwd`` renders empty: no secrets in paths),
  ``$transferMethod[name|comment|value]``, ``$ectransModule[name]``.
- ``$date`` is ``now`` in the format ``$date[dateformat=...]`` > line option ``dateformat`` >
  ``acquisition.dateformat`` (default ``yyyyMMdd``), shifted by ``datedelta`` taken in the same
  order. ``$dirdate`` reads the line option ``dirdateformat`` first, then the same chain.
- A ``datedelta`` is one day offset (``-1``: yesterday) or a window ``-2..0``: the line is then
  expanded once per day of the window, oldest first, every window token taking that day
  (a token with its own single offset keeps it). One window per line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from types import MappingProxyType

from bus.templates.dates import (
    DEFAULT_FORMAT,
    DateFormat,
    DateFormatError,
    compile_format,
    parse_date_spec,
    parse_offsets,
)
from bus.templates.filters import Filter, parse_filter
from bus.templates.lexer import Compiled, Placeholder, TemplateError, compile_tokens, tokenize
from bus.templates.names import parse_metadata, render_name

__all__ = [
    "Filter",
    "ListingDefaults",
    "ListingSpec",
    "ResolvedListing",
    "parse_directory",
    "parse_filter",
    "parse_metadata",
    "render_name",
]

LISTING_FIELDS: Mapping[str, tuple[str, ...]] = {
    "host": (
        "name",
        "nickname",
        "host",
        "login",
        "passwd",
        "comment",
        "userMail",
        "networkCode",
        "networkName",
    ),
    "transferMethod": ("name", "comment", "value"),
    "ectransModule": ("name",),
}
FAMILIES = frozenset({*LISTING_FIELDS, "date", "dirdate"})
_FIELD = "directory"


@dataclass(frozen=True, slots=True)
class ListingDefaults:
    """Host-level values: ``acquisition.dateformat``/``datedelta`` and the host's fields."""

    dateformat: str = DEFAULT_FORMAT
    datedelta: str = "0"
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """``"host[name]"``-style keys -> values; ``host[passwd]`` is never read."""


@dataclass(frozen=True, slots=True)
class ResolvedListing:
    """One directory to list at this poll, the name pattern and the line's options."""

    path: str
    regex: re.Pattern[str] | None
    options: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Scope:
    now: datetime
    day: int
    formats: Mapping[str, DateFormat]
    values: Mapping[str, str]


Accessor = Callable[[_Scope], str]


@dataclass(frozen=True, slots=True)
class ListingSpec:
    """One compiled listing line."""

    line: int
    options: Mapping[str, str]
    path: Compiled[_Scope]
    regex: Compiled[_Scope] | None
    window: tuple[int, ...] | None
    """The line's own day window (a token's ``datedelta=a..b`` or the line option), if any."""

    def expand(
        self, now: datetime, defaults: ListingDefaults | None = None
    ) -> list[ResolvedListing]:
        """The listings of this line at ``now``: one per day of its window, duplicates dropped."""
        defaults = defaults or ListingDefaults()
        window = self.window
        if window is None:
            try:
                window = parse_offsets(defaults.datedelta)
            except ValueError as error:
                raise TemplateError(str(error), 1, 1, field="acquisition.datedelta") from None
        formats = {
            "date": self._format(("dateformat",), defaults),
            "dirdate": self._format(("dirdateformat", "dateformat"), defaults),
        }
        results: list[ResolvedListing] = []
        seen: set[tuple[str, str | None]] = set()
        for day in window:
            scope = _Scope(now, day, formats, defaults.values)
            path = self.path.render(scope).strip()
            pattern = self.regex.render(scope) if self.regex is not None else None
            if (path, pattern) in seen:
                continue
            seen.add((path, pattern))
            regex = _compile_regex(pattern, self.line, 1) if pattern is not None else None
            results.append(ResolvedListing(path, regex, self.options))
        return results

    def _format(self, keys: tuple[str, ...], defaults: ListingDefaults) -> DateFormat:
        for key in keys:
            if key in self.options:
                return compile_format(self.options[key])  # checked at parse time
        try:
            return compile_format(defaults.dateformat)
        except DateFormatError as error:
            raise TemplateError(
                str(error), 1, error.offset + 1, field="acquisition.dateformat"
            ) from None


@lru_cache(maxsize=1024)
def _compile_regex(pattern: str, line: int, column: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        offset = getattr(error, "pos", None) or 0
        raise TemplateError(
            f"bad regular expression: {error}", line, column + offset, field=_FIELD
        ) from None


def parse_directory(text: str) -> list[ListingSpec]:
    """Check and compile an acquisition Directory field; ``TemplateError`` says what is wrong."""
    stripped = text.lstrip()
    if stripped.startswith(("$(js:", "$(py:")):
        line = text[: len(text) - len(stripped)].count("\n") + 1
        raise TemplateError(
            "script listings are not supported (nothing is evaluated)", line, 1, field=_FIELD
        )
    specs: list[ListingSpec] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        content = raw.strip()
        if content and not content.startswith("#"):
            specs.append(_parse_line(raw, number))
    return specs


def _parse_line(raw: str, number: int) -> ListingSpec:
    position = len(raw) - len(raw.lstrip())
    end = len(raw.rstrip())
    options: dict[str, str] = {}
    if raw[position] == "[":
        close = raw.find("]", position)
        if close == -1 or close >= end:
            raise TemplateError("'[' of the line options is never closed", number, position + 1)
        options = _options(raw, position + 1, close, number)
        position = close + 1
    regex_text: str | None = None
    regex_at = end
    if end > position and raw[end - 1] == "}":
        regex_at = _opening_brace(raw, position, end - 1, number)
        regex_text = raw[regex_at + 1 : end - 1]
    elif "{" in raw[position:end]:
        at = raw.index("{", position)
        raise TemplateError("'{' of the file-name regex is never closed", number, at + 1)
    window_holder: list[tuple[int, ...]] = []
    resolve = _resolver(options, window_holder, number)
    path = compile_tokens(
        tokenize(raw[position:regex_at], FAMILIES, line=number, column=position + 1), resolve
    )
    regex: Compiled[_Scope] | None = None
    if regex_text is not None:
        tokens = tokenize(regex_text, FAMILIES, line=number, column=regex_at + 2, strict=False)
        regex = compile_tokens(tokens, _escaped(resolve))
        # placeholders never change the regex syntax (their values are escaped): check it now
        sample = regex.fmt.format(*["0"] * len(regex.accessors)) if regex.accessors else regex.fmt
        _compile_regex(sample, number, regex_at + 2)
    window = _line_window(options, window_holder, number)
    return ListingSpec(number, MappingProxyType(options), path, regex, window)


def _options(raw: str, begin: int, end: int, number: int) -> dict[str, str]:
    options: dict[str, str] = {}
    position = begin
    for piece in raw[begin:end].split(";"):
        if piece.strip():
            key, sep, value = piece.partition("=")
            if not sep or not key.strip():
                raise TemplateError(
                    f"line option {piece.strip()!r} is not key=value", number, position + 1
                )
            options[key.strip()] = value.strip()
        position += len(piece) + 1
    for key in ("dateformat", "dirdateformat"):
        if key in options:
            try:
                compile_format(options[key])
            except DateFormatError as error:
                raise TemplateError(f"{key}: {error}", number, begin + 1) from None
    return options


def _line_window(
    options: Mapping[str, str], holder: list[tuple[int, ...]], number: int
) -> tuple[int, ...] | None:
    windows = set(holder)
    for key in ("datedelta", "dirdatedelta"):
        if key in options:
            try:
                windows.add(parse_offsets(options[key]))
            except ValueError as error:
                raise TemplateError(f"{key}: {error}", number, 1) from None
    if len(windows) > 1:
        raise TemplateError("a line has one day window (datedelta) only", number, 1)
    return windows.pop() if windows else None


def _opening_brace(raw: str, begin: int, close: int, number: int) -> int:
    """Index of the ``{`` matching the ``}`` at ``close`` (braces inside the regex nest)."""
    depth = 0
    for index in range(close, begin - 1, -1):
        if raw[index] == "}":
            depth += 1
        elif raw[index] == "{":
            depth -= 1
            if depth == 0:
                return index
    raise TemplateError("'}' of the file-name regex has no '{'", number, close + 1)


def _escaped(resolve: Callable[[Placeholder], Accessor]) -> Callable[[Placeholder], Accessor]:
    def wrap(token: Placeholder) -> Accessor:
        get = resolve(token)
        return lambda s: re.escape(get(s))

    return wrap


def _resolver(
    options: Mapping[str, str], windows: list[tuple[int, ...]], number: int
) -> Callable[[Placeholder], Accessor]:
    def resolve(token: Placeholder) -> Accessor:
        family, arg = token.family, token.arg
        arg_column = token.column + len(family) + 2
        if family in LISTING_FIELDS:
            if arg not in LISTING_FIELDS[family]:
                known = "|".join(LISTING_FIELDS[family])
                raise TemplateError(
                    f"${family} needs one of [{known}]", number, token.column, field=_FIELD
                )
            if family == "host" and arg == "passwd":
                return lambda _s: ""  # secrets never go into paths
            key = f"{family}[{arg}]"
            return lambda s: s.values.get(key, "")
        try:
            spec = parse_date_spec(arg)
        except DateFormatError as error:
            raise TemplateError(
                str(error), number, arg_column + error.offset, field=_FIELD
            ) from None
        fixed: int | None = None
        if spec.offsets is not None and len(spec.offsets) == 1:
            fixed = spec.offsets[0]
        elif spec.offsets is not None:
            windows.append(spec.offsets)
        own_format = spec.format

        def render(scope: _Scope) -> str:
            fmt = own_format or scope.formats[family]
            day = scope.day if fixed is None else fixed
            return fmt.format(scope.now + timedelta(days=day))

        return render

    return resolve
