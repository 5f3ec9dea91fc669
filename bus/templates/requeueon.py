"""The duplicate rule of a destination (``scheduler.requeueon``): which of two transfers with the
same target wins. A safe expression language (parsed to a small tree, never evaluated by Python).

OpenECPDS runs a JavaScript snippet here; the expressions operators write are comparisons of the
two files, so this keeps that syntax and nothing else:

- variables: ``$time1``/``$size1`` (the transfer being looked at), ``$time2``/``$size2`` (the
  other one), ``$destination``, ``$target``; times are epoch milliseconds, sizes bytes;
- literals: integers, decimals, ``'text'`` or ``"text"``, ``true``/``false``;
- operators, loosest first: ``||``, ``&&``, ``!``, comparisons (``==``, ``===``, ``!=``,
  ``!==``, ``<``, ``<=``, ``>``, ``>=``), ``+``/``-``, ``*``/``/``/``%``, unary ``-``, and
  parentheses.

``compile_rule`` refuses anything else with the column of the error (``TemplateError``, field
``destination.properties.scheduler.requeueon``); a rule compiled once is evaluated many times.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bus.templates.lexer import TemplateError

FIELD = "destination.properties.scheduler.requeueon"
VARIABLES = frozenset({"time1", "size1", "time2", "size2", "destination", "target"})

Value = int | float | str | bool
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<var>\$[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<str>'[^']*'|\"[^\"]*\")|(?P<word>[A-Za-z_]+)"
    r"|(?P<op>===|!==|==|!=|<=|>=|&&|\|\||[<>!+\-*/%()]))"
)
_COMPARE: Mapping[str, Callable[[Value, Value], bool]] = {
    "==": operator.eq,
    "===": operator.eq,
    "!=": operator.ne,
    "!==": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITHMETIC: Mapping[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}


@dataclass(frozen=True, slots=True)
class _Const:
    value: Value


@dataclass(frozen=True, slots=True)
class _Var:
    name: str


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Neg:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Binary:
    op: str
    left: _Node
    right: _Node


_Node = _Const | _Var | _Not | _Neg | _Binary


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled ``scheduler.requeueon`` expression."""

    source: str
    _tree: _Node

    def holds(self, values: Mapping[str, Value]) -> bool:
        """The rule's truth for these variable values (JavaScript-like truthiness)."""
        try:
            return bool(_eval(self._tree, values))
        except (TypeError, ZeroDivisionError):
            return False  # comparing a number with text, or x/0: the rule does not hold


def compile_rule(source: str) -> Rule:
    """Parse ``source``; ``TemplateError`` (naming the column) if it is not a valid rule."""
    parser = _Parser(source)
    tree = parser.expression()
    if parser.peek() is not None:
        raise parser.error(f"unexpected {parser.peek()!r}")
    return Rule(source, tree)


def _eval(node: _Node, values: Mapping[str, Value]) -> Value:
    if isinstance(node, _Const):
        return node.value
    if isinstance(node, _Var):
        return values[node.name]
    if isinstance(node, _Not):
        return not _eval(node.operand, values)
    if isinstance(node, _Neg):
        return -_number(_eval(node.operand, values))
    if node.op == "&&":
        return bool(_eval(node.left, values)) and bool(_eval(node.right, values))
    if node.op == "||":
        return bool(_eval(node.left, values)) or bool(_eval(node.right, values))
    left, right = _eval(node.left, values), _eval(node.right, values)
    if node.op in _COMPARE:
        return _COMPARE[node.op](left, right)
    if node.op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    return _ARITHMETIC[node.op](_number(left), _number(right))


def _number(value: Value) -> float:
    if isinstance(value, str):
        raise TypeError("text where a number is needed")
    return float(value)


class _Parser:
    """Recursive descent over the tokens, one method per precedence level."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._tokens: list[tuple[str, str, int]] = []  # (kind, text, column)
        at = 0
        while at < len(source):
            match = _TOKEN.match(source, at)
            if match is None or match.end() == at:
                if source[at:].strip() == "":
                    break
                raise TemplateError(
                    f"unexpected {source[at:].strip()[0]!r}", 1, at + 1, field=FIELD
                )
            kind = match.lastgroup or ""
            self._tokens.append((kind, match.group(kind), match.start(kind) + 1))
            at = match.end()
        self._at = 0
        if not self._tokens:
            raise TemplateError("empty rule", 1, 1, field=FIELD)

    def peek(self) -> str | None:
        return self._tokens[self._at][1] if self._at < len(self._tokens) else None

    def error(self, message: str) -> TemplateError:
        column = (
            self._tokens[self._at][2] if self._at < len(self._tokens) else len(self._source) + 1
        )
        return TemplateError(message, 1, column, field=FIELD)

    def _take(self, *texts: str) -> str | None:
        if self.peek() in texts:
            self._at += 1
            return self._tokens[self._at - 1][1]
        return None

    def expression(self) -> _Node:
        node = self._and()
        while self._take("||"):
            node = _Binary("||", node, self._and())
        return node

    def _and(self) -> _Node:
        node = self._not()
        while self._take("&&"):
            node = _Binary("&&", node, self._not())
        return node

    def _not(self) -> _Node:
        if self._take("!"):
            return _Not(self._not())
        return self._compare()

    def _compare(self) -> _Node:
        node = self._sum()
        while (op := self._take(*_COMPARE)) is not None:
            node = _Binary(op, node, self._sum())
        return node

    def _sum(self) -> _Node:
        node = self._product()
        while (op := self._take("+", "-")) is not None:
            node = _Binary(op, node, self._product())
        return node

    def _product(self) -> _Node:
        node = self._unary()
        while (op := self._take("*", "/", "%")) is not None:
            node = _Binary(op, node, self._unary())
        return node

    def _unary(self) -> _Node:
        if self._take("-"):
            return _Neg(self._unary())
        return self._atom()

    def _atom(self) -> _Node:
        if self._at >= len(self._tokens):
            raise self.error("the rule ends too early")
        kind, text, _ = self._tokens[self._at]
        if self._take("("):
            node = self.expression()
            if not self._take(")"):
                raise self.error("a ')' is missing")
            return node
        if kind == "num":
            self._at += 1
            return _Const(float(text) if "." in text else int(text))
        if kind == "str":
            self._at += 1
            return _Const(text[1:-1])
        if kind == "var":
            if text[1:] not in VARIABLES:
                known = ", ".join(f"${v}" for v in sorted(VARIABLES))
                raise self.error(f"unknown variable {text} (known: {known})")
            self._at += 1
            return _Var(text[1:])
        if kind == "word" and text in ("true", "false"):
            self._at += 1
            return _Const(text == "true")
        raise self.error(f"unexpected {text!r}")


__all__ = ["FIELD", "VARIABLES", "Rule", "compile_rule"]
