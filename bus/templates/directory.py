"""The dissemination target-path template (the Host Directory field, ECPDS-REFERENCE §7.2).

``parse(text)`` checks and compiles a template when the host is defined; ``Template.render``
gives the remote path of one transfer. The language, as OpenECPDS operators know it:

- One path per line. A line ``(condition) path`` applies when its conditions match; a bare line
  is the default. Several conditions go in one pair of parentheses separated by ``;`` or ``,``
  (OpenECPDS's separators), or by ``&&``, or in several groups ``(a==b)(c!=d)``.
- Operators: ``==`` (equals; a full regular-expression match when the right side is
  ``{pattern}``), ``!=``, ``.=`` (starts with), ``=.`` (ends with). Both sides are rendered and
  trimmed before comparing. Checked in that order, as OpenECPDS does: ``a.==b`` is ``a.`` ``==``.
- The line with the most matched conditions wins (a line counts each condition it matches, so
  a partial match scores too); if none matches at least one condition the default line is used
  (the last bare line when there are several). Two lines with the same best score are
  ambiguous: rendering raises, as OpenECPDS refuses a "duplicated score". No match and no
  default raises too.
- A path that renders empty or ends with ``/`` gets the transfer's target appended; runs of
  ``/`` are collapsed to one.
- Placeholders: ``FIELDS`` in ``context`` (``$host[...]``, ``$dataFile[...]``,
  ``$dataTransfer[...]``, ``$destination[...]``, ``$country[...]``, ...), ``$metadata[key]``
  (an unknown key renders empty), ``$date`` / ``$date[yyyyMMdd]`` /
  ``$date[dateformat=...,datedelta=-1]`` (from ``RenderContext.now``), ``$moverName``.

Unlike OpenECPDS, which substitutes values into the text and then parses it, the structure is
parsed first and values are only ever data: a metadata value holding ``)`` or ``==`` cannot
change which line is chosen. Regular expressions are compiled once, at parse time, so
placeholders are not substituted inside ``{...}``. No script mode: nothing is evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from bus.templates.context import FIELDS, Accessor, RenderContext
from bus.templates.dates import DEFAULT_FORMAT, DateFormatError, compile_format, parse_date_spec
from bus.templates.lexer import Compiled, Placeholder, TemplateError, compile_tokens, tokenize

__all__ = ["FAMILIES", "Condition", "Line", "RenderContext", "Template", "parse"]

FAMILIES = frozenset({*FIELDS, "metadata", "date", "moverName"})
OPERATORS = ("==", "!=", ".=", "=.")


def _error(message: str, line: int, column: int) -> TemplateError:
    return TemplateError(message, line, column, field="directory")


def resolve(token: Placeholder) -> Accessor:
    """The accessor rendering ``token`` from a ``RenderContext``; ``TemplateError`` if unknown."""
    family, arg = token.family, token.arg
    arg_column = token.column + len(family) + 2
    if family == "moverName":
        if arg is not None:
            raise _error("$moverName takes no [argument]", token.line, arg_column - 1)
        return lambda c: c.mover_name
    if family == "metadata":
        if not arg:
            raise _error("$metadata needs a key: $metadata[key]", token.line, token.column)
        key = arg
        return lambda c: c.metadata.get(key, "")
    if family == "date":
        return _date_accessor(token)
    fields = FIELDS[family]
    if arg is None:
        raise _error(f"${family} needs a field: ${family}[name]", token.line, token.column)
    accessor = fields.get(arg)
    if accessor is None:
        known = "|".join(fields)
        raise _error(f"unknown field {arg!r} of ${family} (known: {known})", token.line, arg_column)
    return accessor


def _date_accessor(token: Placeholder) -> Accessor:
    try:
        spec = parse_date_spec(token.arg)
    except DateFormatError as error:
        raise _error(str(error), token.line, token.column + 6 + error.offset) from None
    fmt = spec.format or compile_format(DEFAULT_FORMAT)
    offsets = spec.offsets or (0,)
    if len(offsets) != 1:
        raise _error("a day window has no meaning in a target path", token.line, token.column)
    shift = timedelta(days=offsets[0])
    if not shift:
        return lambda c: fmt.format(c.now)
    return lambda c: fmt.format(c.now + shift)


def _compile(text: str, line: int, column: int) -> Compiled[RenderContext]:
    return compile_tokens(tokenize(text, FAMILIES, line=line, column=column), resolve)


@dataclass(frozen=True, slots=True)
class Condition:
    """``left op right``, compared after rendering and trimming both sides."""

    left: Compiled[RenderContext]
    operator: str
    right: Compiled[RenderContext]
    pattern: re.Pattern[str] | None

    def holds(self, context: RenderContext) -> bool:
        """Whether the condition matches for ``context``."""
        left = self.left.render(context).strip()
        if self.pattern is not None:
            return self.pattern.fullmatch(left) is not None
        right = self.right.render(context).strip()
        if self.operator == "==":
            return left == right
        if self.operator == "!=":
            return left != right
        if self.operator == ".=":
            return left.startswith(right)
        return left.endswith(right)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the template: its conditions (none for a default line) and its path."""

    number: int
    conditions: tuple[Condition, ...]
    path: Compiled[RenderContext]

    def score(self, context: RenderContext) -> int:
        """How many of the line's conditions match."""
        return sum(1 for condition in self.conditions if condition.holds(context))


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled target-path template; ``render`` never touches the clock, disk or network."""

    source: str
    choices: tuple[Line, ...]
    default: Line | None

    def render(self, context: RenderContext) -> str:
        """The remote path of the transfer described by ``context``."""
        line = self.choose(context)
        path = line.path.render(context).strip() if line is not None else ""
        if not path or path[-1] in "/\\":
            path += context.transfer_target
        while "//" in path:
            path = path.replace("//", "/")
        return path

    def choose(self, context: RenderContext) -> Line | None:
        """The line that applies (``None`` for an empty template); raise when ambiguous."""
        best: Line | None = None
        best_score = 0
        tied: Line | None = None
        for line in self.choices:
            score = line.score(context)
            if score > best_score:
                best, best_score, tied = line, score, None
            elif score and score == best_score:
                tied = line
        if tied is not None and best is not None:
            raise _error(
                f"lines {best.number} and {tied.number} both match {best_score} condition(s)",
                tied.number,
                1,
            )
        if best is not None:
            return best
        if self.default is None and self.choices:
            raise _error("no line matches and there is no default line", 1, 1)
        return self.default


def parse(text: str) -> Template:
    """Check and compile a Host Directory template; ``TemplateError`` says where it is wrong."""
    choices: list[Line] = []
    default: Line | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        offset = len(raw) - len(raw.lstrip())
        if stripped.startswith("("):
            conditions, rest = _conditions(raw, offset, number)
            path = _compile(raw[rest:], number, rest + 1)
            choices.append(Line(number, conditions, path))
        else:
            default = Line(number, (), _compile(raw, number, 1))
    return Template(text, tuple(choices), default)


def _conditions(raw: str, start: int, number: int) -> tuple[tuple[Condition, ...], int]:
    """Parse the ``(...)`` groups from ``start``; return them and where the path begins."""
    conditions: list[Condition] = []
    position = start
    while position < len(raw) and raw[position] == "(":
        close = _closing(raw, position, number)
        conditions.extend(_group(raw, position + 1, close, number))
        position = close + 1
        while position < len(raw) and raw[position] in " \t":
            position += 1
    return tuple(conditions), position


def _closing(raw: str, open_at: int, number: int) -> int:
    """Index of the ``)`` closing ``raw[open_at]``, skipping ``{...}`` and ``[...]``."""
    depth = 0
    index = open_at
    while index < len(raw):
        char = raw[index]
        if char in "{[":
            index = _skip(raw, index, number)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise _error("'(' is never closed by ')'", number, open_at + 1)


def _skip(raw: str, open_at: int, number: int) -> int:
    """Index just after the bracket or brace group opened at ``open_at`` (braces nest)."""
    opener = raw[open_at]
    closer = "}" if opener == "{" else "]"
    depth = 0
    index = open_at
    while index < len(raw):
        char = raw[index]
        if char == "\\" and opener == "{":
            index += 2  # an escaped brace in a regex does not nest
            continue
        if char == opener:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise _error(f"'{opener}' is never closed by '{closer}'", number, open_at + 1)


def _group(raw: str, begin: int, end: int, number: int) -> list[Condition]:
    """The conditions between ``begin`` and ``end``, split on ``;``, ``,`` or ``&&``."""
    pieces: list[tuple[int, int]] = []
    piece_start = index = begin
    while index < end:
        char = raw[index]
        if char in "{[":
            index = _skip(raw, index, number)
            continue
        width = 2 if raw.startswith("&&", index) else 1 if char in ";," else 0
        if width:
            pieces.append((piece_start, index))
            index += width
            piece_start = index
            continue
        index += 1
    pieces.append((piece_start, end))
    conditions = [_condition(raw, a, b, number) for a, b in pieces if raw[a:b].strip()]
    if not conditions:
        raise _error("empty condition", number, begin)
    return conditions


def _find_operator(raw: str, begin: int, end: int, number: int) -> tuple[str, int] | None:
    """The first operator (by OpenECPDS's precedence) outside ``{...}`` and ``[...]``."""
    outside: list[int] = []
    index = begin
    while index < end:
        if raw[index] in "{[":
            index = _skip(raw, index, number)
            continue
        outside.append(index)
        index += 1
    visible = set(outside)
    for operator in OPERATORS:
        for index in outside:
            if raw.startswith(operator, index) and index + 1 in visible and index + 1 < end:
                return operator, index
    return None


def _condition(raw: str, begin: int, end: int, number: int) -> Condition:
    found = _find_operator(raw, begin, end, number)
    if found is None:
        raise _error(
            f"condition {raw[begin:end].strip()!r} has no operator (==, !=, .=, =.)",
            number,
            begin + 1 + len(raw[begin:end]) - len(raw[begin:end].lstrip()),
        )
    operator, at = found
    left = _compile(raw[begin:at], number, begin + 1)
    right_text = raw[at + 2 : end]
    right_start = at + 2 + len(right_text) - len(right_text.lstrip())
    stripped = right_text.strip()
    pattern: re.Pattern[str] | None = None
    if operator == "==" and len(stripped) >= 2 and stripped[0] == "{" and stripped[-1] == "}":
        pattern = _regex(stripped[1:-1], number, right_start + 2)
        right: Compiled[RenderContext] = Compiled(stripped, ())
    else:
        right = _compile(right_text, number, at + 3)
    return Condition(left, operator, right, pattern)


def _regex(source: str, number: int, column: int) -> re.Pattern[str]:
    try:
        return re.compile(source)
    except (re.error, RecursionError, OverflowError) as error:
        offset = getattr(error, "pos", None) or 0
        raise _error(f"bad regular expression: {error}", number, column + offset) from None
