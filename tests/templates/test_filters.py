"""Acquisition size and age filters (``acquisition.filesize`` / ``acquisition.fileage``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bus.templates.filters import parse_duration_ms, parse_filter, parse_size
from bus.templates.lexer import TemplateError

DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("text", "below", "equal", "above"),
    [
        ("==100", False, True, False),
        ("!=100", True, False, True),
        (">>100", False, False, True),
        ("<<100", True, False, False),
        (">=100", False, True, True),
        ("<=100", True, True, False),
        (">100", False, False, True),
        ("<100", True, False, False),
        ("=100", False, True, False),
    ],
)
def test_every_operator(text: str, below: bool, equal: bool, above: bool) -> None:
    """Each operator compares the value to the threshold as its symbol says."""
    rule = parse_filter(text)
    assert (rule.matches(99), rule.matches(100), rule.matches(101)) == (below, equal, above)


@pytest.mark.parametrize(
    ("text", "milliseconds"),
    [
        ("500ms", 500),
        ("30s", 30_000),
        ("10m", 600_000),
        ("5min", 300_000),
        ("2h", 7_200_000),
        ("10d", 10 * DAY_MS),
        ("1w", 7 * DAY_MS),
        ("1.5h", 5_400_000),
        ("PT1H", 3_600_000),
        ("P2DT30M", 2 * DAY_MS + 1_800_000),
        ("250", 250),
    ],
)
def test_durations(text: str, milliseconds: int) -> None:
    """Durations with units or in ISO 8601 are read as milliseconds."""
    assert parse_duration_ms(text) == milliseconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10", 10),
        ("10B", 10),
        ("10K", 10_240),
        ("10kb", 10_240),
        ("10MB", 10 * 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1T", 1024**4),
    ],
)
def test_sizes(text: str, size: int) -> None:
    """Sizes with binary units are read as bytes."""
    assert parse_size(text) == size


def test_age_filter_from_its_unit() -> None:
    """``<10d`` is an age filter in milliseconds and accepts a timedelta too."""
    rule = parse_filter("<10d")
    assert (rule.kind, rule.operator, rule.threshold) == ("age", "<<", 10 * DAY_MS)
    assert rule.matches(timedelta(days=9))
    assert not rule.matches(timedelta(days=10))


def test_size_filter_and_unit_case() -> None:
    """``10M`` is a size (mebibytes) while ``10m`` is an age (minutes)."""
    assert parse_filter(">=10M").kind == "size"
    assert parse_filter(">=10m").kind == "age"
    assert parse_filter(">= 10MB").matches(10 * 1024**2)


def test_explicit_kind_wins() -> None:
    """A caller naming the kind reads a bare number in that kind's unit."""
    assert parse_filter("<<60000", kind="age").kind == "age"
    with pytest.raises(TemplateError):
        parse_filter("<<10MB", kind="age")


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("10d", 1, "starts with one of"),
        ("  <<", 5, "needs a value"),
        ("<< ten", 4, "not a size"),
        ("$size > 10", 1, "not supported"),
        (" <=P", 4, "not an ISO 8601"),
    ],
)
def test_bad_filters_are_refused_where_they_fail(text: str, column: int, message: str) -> None:
    """A filter without operator or with a bad value, or a script, is refused at its column."""
    with pytest.raises(TemplateError) as caught:
        parse_filter(text)
    assert caught.value.column == column
    assert message in caught.value.detail
    assert caught.value.field == "acquisition.filesize"
