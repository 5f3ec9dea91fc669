"""Random input never makes the template languages raise anything but ``TemplateError``."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

from bus.templates.directory import RenderContext, parse
from bus.templates.filters import parse_filter
from bus.templates.lexer import TemplateError
from bus.templates.listing import ListingDefaults, parse_directory
from bus.templates.names import NameContext, parse_metadata, parse_name

NOW = datetime(2026, 6, 30, 23, 59, tzinfo=UTC)
PIECES = (
    *"$[](){}=!.<>;,&\\/#' \n\r\tazAZ09-_:?*+|^",
    "$date",
    "$date[",
    "$dirdate",
    "$host[name]",
    "$host[",
    "$$destination[name]",
    "$metadata[k]",
    "$dataTransfer[target]",
    "$target[",
    "$name",
    "..",
    "==",
    "!=",
    ".=",
    "=.",
    ">>",
    "<<",
    ">=",
    "<=",
    "&&",
    "dateformat=",
    "datedelta=",
    "-1..0",
    "yyyyMMdd",
    "MMM",
    "'",
    "{.*}",
    "10d",
    "10MB",
    "PT1H",
    "99999999999999999999",
    "[recursive=yes]",
    "$(js:",
)
CONTEXT = RenderContext(now=NOW, transfer_target="t/x", metadata={"k": "v"})
NAME_CONTEXT = NameContext("target", "original", "name", NOW)


def samples(seed: int, count: int) -> list[str]:
    """``count`` random strings made of template-significant pieces."""
    chooser = random.Random(seed)
    return [
        "".join(chooser.choice(PIECES) for _ in range(chooser.randint(0, 24))) for _ in range(count)
    ]


def outcomes(attempt: Callable[[str], object], texts: list[str]) -> int:
    """Run ``attempt`` on every text; return how many succeeded (any other error propagates)."""
    succeeded = 0
    for text in texts:
        try:
            attempt(text)
        except TemplateError:
            continue
        succeeded += 1
    return succeeded


def test_directory_templates_fail_only_with_template_error() -> None:
    """Parsing and rendering random target-path templates raises nothing but TemplateError."""
    texts = samples(1, 3000)
    succeeded = outcomes(lambda text: parse(text).render(CONTEXT), texts)
    assert 0 < succeeded < len(texts)  # the samples reach both outcomes


def test_listing_lines_fail_only_with_template_error() -> None:
    """Parsing and expanding random listing fields raises nothing but TemplateError."""
    texts = samples(2, 3000)
    succeeded = outcomes(
        lambda text: [spec.expand(NOW, ListingDefaults()) for spec in parse_directory(text)],
        texts,
    )
    assert 0 < succeeded < len(texts)


def test_names_and_metadata_fail_only_with_template_error() -> None:
    """Random name templates and metadata raise nothing but TemplateError."""
    texts = samples(3, 3000)
    assert 0 < outcomes(lambda text: parse_name(text).render(NAME_CONTEXT), texts) < len(texts)
    assert 0 < outcomes(lambda text: parse_metadata(text).render(NAME_CONTEXT), texts) < len(texts)


def test_filters_fail_only_with_template_error() -> None:
    """Random filters (and random operator + value pairs) raise nothing but TemplateError."""
    texts = samples(4, 3000)
    outcomes(lambda text: parse_filter(text).matches(1), texts)
    operators = ("==", "!=", ">>", "<<", ">=", "<=", "<", ">")
    paired = [operators[i % len(operators)] + text.strip()[:6] for i, text in enumerate(texts)]
    assert outcomes(lambda text: parse_filter(text).matches(1), paired) > 0
