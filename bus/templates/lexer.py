"""Tokenizer shared by the template languages: literals and ``$name`` / ``$name[arg]`` placeholders.

Rules it keeps:

- A placeholder is ``$`` then a name (``[A-Za-z_][A-Za-z0-9_]*``), optionally followed by
  ``[arg]``; the argument runs to the first ``]`` (no nesting) and a missing ``]`` is an error.
- ``$$name`` is the same placeholder as ``$name`` (the doubled form OpenECPDS operators write in
  conditions, e.g. ``($$destination[name]==archive)``).
- ``\\$`` is a literal ``$`` and ``\\\\`` a literal backslash; any other backslash is kept as is
  (Windows-style paths). A ``$`` not followed by a name is a literal ``$``.
- Which names exist is the caller's business: ``tokenize`` takes the set of known families and
  either refuses an unknown one (``strict``) or keeps it as literal text (regular expressions,
  where ``$`` is an anchor).

Every error is a ``TemplateError`` carrying the 1-based line and column of the offending character,
so configuration validation can point at the spot in the host's field.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Generic, TypeVar

from bus.errors import ConfigurationError

__all__ = [
    "Compiled",
    "Literal",
    "Placeholder",
    "TemplateError",
    "Token",
    "compile_tokens",
    "tokenize",
]

C = TypeVar("C")


class TemplateError(ConfigurationError):
    """A template could not be parsed or rendered; ``line``/``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int, *, field: str = "directory") -> None:
        super().__init__(field, f"line {line}, column {column}: {message}")
        self.detail = message
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Literal:
    """Text copied to the output unchanged."""

    text: str


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``$family`` or ``$family[arg]`` at ``line``/``column`` (of its ``$``)."""

    family: str
    arg: str | None
    line: int
    column: int

    @property
    def source(self) -> str:
        """The placeholder as written (single ``$``), for messages."""
        return f"${self.family}" if self.arg is None else f"${self.family}[{self.arg}]"


Token = Literal | Placeholder


def _is_name_start(char: str) -> bool:
    return char.isascii() and (char.isalpha() or char == "_")


def _is_name_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def tokenize(
    text: str,
    families: Collection[str],
    *,
    line: int = 1,
    column: int = 1,
    strict: bool = True,
    field: str = "directory",
) -> tuple[Token, ...]:
    """Split ``text`` (one line, starting at ``line``/``column``) into literals and placeholders.

    ``strict``: an unknown ``$name`` is an error; otherwise it stays literal text.
    """
    tokens: list[Token] = []
    buffer: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in "$\\":
            buffer.append(text[i + 1])
            i += 2
            continue
        if char != "$":
            buffer.append(char)
            i += 1
            continue
        start = i
        j = i + 1
        if j < n and text[j] == "$" and j + 1 < n and _is_name_start(text[j + 1]):
            j += 1  # "$$name" is "$name"
        if j >= n or not _is_name_start(text[j]):
            buffer.append("$")
            i += 1
            continue
        k = j
        while k < n and _is_name_char(text[k]):
            k += 1
        name = text[j:k]
        if name not in families:
            if strict:
                known = ", ".join(f"${f}" for f in sorted(families))
                raise TemplateError(
                    f"unknown placeholder ${name} (known: {known})",
                    line,
                    column + start,
                    field=field,
                )
            buffer.append(text[start:k])
            i = k
            continue
        arg: str | None = None
        if k < n and text[k] == "[":
            close = text.find("]", k + 1)
            if close == -1:
                raise TemplateError(
                    f"'[' of ${name} is never closed by ']'", line, column + k, field=field
                )
            arg = text[k + 1 : close]
            k = close + 1
        if buffer:
            tokens.append(Literal("".join(buffer)))
            buffer.clear()
        tokens.append(Placeholder(name, arg, line, column + start))
        i = k
    if buffer:
        tokens.append(Literal("".join(buffer)))
    return tuple(tokens)


@dataclass(frozen=True, slots=True)
class Compiled(Generic[C]):
    """A tokenized text bound to its accessors: rendering is one ``str.format`` call.

    Literal braces are doubled in ``fmt`` at compile time, so a value can never be read as a
    format field: the values are only ever arguments.
    """

    fmt: str
    accessors: tuple[Callable[[C], str], ...]

    def render(self, context: C) -> str:
        """The text with every placeholder replaced by its value for ``context``."""
        if not self.accessors:
            return self.fmt
        return self.fmt.format(*[get(context) for get in self.accessors])

    @property
    def is_constant(self) -> bool:
        """True when the text has no placeholder."""
        return not self.accessors


def compile_tokens(
    tokens: tuple[Token, ...], resolve: Callable[[Placeholder], Callable[[C], str]]
) -> Compiled[C]:
    """Bind each placeholder to the accessor ``resolve`` gives (which raises for unknown ones)."""
    parts: list[str] = []
    accessors: list[Callable[[C], str]] = []
    for token in tokens:
        if isinstance(token, Literal):
            parts.append(token.text.replace("{", "{{").replace("}", "}}"))
        else:
            parts.append("{}")
            accessors.append(resolve(token))
    if not accessors:
        # no format call at render: keep the literal text as is
        return Compiled("".join(t.text for t in tokens if isinstance(t, Literal)), ())
    return Compiled("".join(parts), tuple(accessors))
