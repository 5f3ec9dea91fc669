"""Acquisition target and metadata templates: tokens, substrings, dates and errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus.templates.lexer import TemplateError
from bus.templates.listing import parse_metadata, render_name
from bus.templates.names import NameContext, parse_name

NOW = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
FILE_TIME = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)


def name(template: str) -> str:
    """Render ``template`` for one discovered file."""
    return render_name(
        template,
        target="A1D12311200123112001",
        original="/remote/in/A1D12311200123112001",
        name="A1D12311200123112001",
        link="https://example.org/x",
        destination="acq",
        now=NOW,
        timestamp=FILE_TIME,
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$target", "A1D12311200123112001"),
        ("$original", "/remote/in/A1D12311200123112001"),
        ("$name", "A1D12311200123112001"),
        ("$link", "https://example.org/x"),
        ("$destination/$name", "acq/A1D12311200123112001"),
        ("$timestamp", str(int(FILE_TIME.timestamp() * 1000))),
        ("$date/$target", "20260101/A1D12311200123112001"),
        ("$date[yyyy-MM-dd]", "2026-01-01"),
        ("$date[dateformat=yyyyMMdd,datedelta=-1]", "20251231"),
        ("$target[11]", "123112001"),
        ("$target[2..12]", "D123112001"),
        ("$target[0..3]_$name[17]", "A1D_001"),
        ("$target[15..99]", "12001"),
        ("$target[99]", ""),
        ("prefix-$target[ 2 .. 4 ]", "prefix-D1"),
    ],
)
def test_tokens_and_substrings(template: str, expected: str) -> None:
    """Each token renders its value; ``[n]`` and ``[a..b]`` cut substrings, clamped at the end."""
    assert name(template) == expected


def test_templates_are_compiled_once() -> None:
    """Parsing the same template twice returns the same compiled template."""
    assert parse_name("$target[2..5]") is parse_name("$target[2..5]")


def test_dirdate_and_missing_timestamp() -> None:
    """``$dirdate`` is the value passed in; a missing timestamp renders empty."""
    context = NameContext("t", "o", "n", NOW, dirdate="2026/01/01")
    assert parse_name("$dirdate/$timestamp/$target").render(context) == "2026/01/01//t"


def test_metadata_pairs() -> None:
    """``k=v`` pairs render in order, commas inside ``[...]`` do not split, blanks are skipped."""
    template = parse_metadata(
        "targetdir=$date[dateformat=yyyy/MM,datedelta=-1], stream=oper ,,n=$name[0..3]"
    )
    context = NameContext("target", "original", "A1D123", NOW)
    assert dict(template.render(context)) == {"targetdir": "2025/12", "stream": "oper", "n": "A1D"}


def test_empty_metadata() -> None:
    """An empty metadata property gives no pairs."""
    assert parse_metadata("").items == ()


@pytest.mark.parametrize(
    ("template", "column", "message"),
    [
        ("$target[a..b]", 9, "expected [start]"),
        ("$target[5..2]", 9, "end is before"),
        ("$nope", 1, "unknown placeholder"),
        ("x$target[3", 9, "never closed"),
        ("$date[yyyyq]", 11, "illegal"),
        ("$date[datedelta=-1..0]", 7, "day window"),
    ],
)
def test_bad_name_templates(template: str, column: int, message: str) -> None:
    """Bad substring arguments, tokens and date specs are refused at their column."""
    with pytest.raises(TemplateError) as caught:
        parse_name(template)
    assert caught.value.column == column
    assert message in caught.value.detail
    assert caught.value.field == "acquisition.target"


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("a=1,novalue", 5, "expected key=value"),
        ("a=1, =2", 6, "bad metadata key"),
        ("a=1,b=$nope", 7, "unknown placeholder"),
        ("a=1,b= x$target[z]", 17, "expected [start]"),
    ],
)
def test_bad_metadata(text: str, column: int, message: str) -> None:
    """Malformed pairs and bad value templates are refused at their column in the property."""
    with pytest.raises(TemplateError) as caught:
        parse_metadata(text)
    assert caught.value.column == column
    assert message in caught.value.detail
    assert caught.value.field == "acquisition.metadata"
