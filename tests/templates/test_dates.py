"""Java ``SimpleDateFormat`` patterns as OpenECPDS operators write them."""

from __future__ import annotations

import locale
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bus.templates.dates import DateFormatError, compile_format, parse_date_spec

MOMENT = datetime(2026, 2, 9, 7, 5, 3, 42_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyyMMdd", "20260209"),
        ("yyyy-MM-dd", "2026-02-09"),
        ("HHmm", "0705"),
        ("yyyyMMddHHmmss", "20260209070503"),
        ("DDD", "040"),
        ("D", "40"),
        ("MMM", "Feb"),
        ("MMMM", "February"),
        ("M/d/yy", "2/9/26"),
        ("EEE EEEE", "Mon Monday"),
        ("hh a", "07 AM"),
        ("SSS", "042"),
        ("u", "1"),
        ("yyyy'T'HH'h'", "2026T07h"),
        ("'It''s' yyyy", "It's 2026"),
        ("''yy''", "'26'"),
        ("yyyy_%", "2026_%"),
        ("Z z", "+0000 UTC"),
    ],
)
def test_patterns_format_like_java(pattern: str, expected: str) -> None:
    """Each pattern letter, count and quoted literal renders as Java's SimpleDateFormat does."""
    assert compile_format(pattern).format(MOMENT) == expected


def test_aware_times_are_converted_to_utc() -> None:
    """A datetime in another zone is formatted in UTC; a naive one is taken as UTC."""
    paris = MOMENT.astimezone(timezone(timedelta(hours=1)))
    assert compile_format("HH").format(paris) == "07"
    assert compile_format("HH").format(MOMENT.replace(tzinfo=None)) == "07"


def test_names_ignore_the_process_locale() -> None:
    """Month and day names are English whatever the locale (no locale-dependent strftime)."""
    before = locale.setlocale(locale.LC_TIME)
    try:
        try:
            locale.setlocale(locale.LC_TIME, "C.UTF-8")
        except locale.Error:
            pytest.skip("C.UTF-8 locale not available")
        assert compile_format("MMM EEE").format(MOMENT) == "Feb Mon"
    finally:
        locale.setlocale(locale.LC_TIME, before)


def test_strftime_equivalent_when_exact() -> None:
    """The strftime equivalent is offered for exact patterns, with ``%`` escaped, else None."""
    assert compile_format("yyyy-MM-dd'%'HH").strftime == "%Y-%m-%d%%%H"
    assert MOMENT.strftime(compile_format("yyyyMMddHHmmss").strftime or "") == "20260209070503"
    assert compile_format("M").strftime is None


def test_compiled_formats_are_cached() -> None:
    """Compiling the same pattern twice returns the same compiled object."""
    assert compile_format("yyyyMMdd") is compile_format("yyyyMMdd")


@pytest.mark.parametrize(
    ("pattern", "offset", "message"),
    [
        ("yyyyq", 4, "illegal"),
        ("yyyy'MM", 4, "unterminated"),
        ("ww", 0, "not supported"),
        ("", 0, "empty"),
    ],
)
def test_bad_patterns_are_refused_with_offset(pattern: str, offset: int, message: str) -> None:
    """An unknown letter, an unsupported week letter or an open quote is refused where it is."""
    with pytest.raises(DateFormatError, match=message) as caught:
        compile_format(pattern)
    assert caught.value.offset == offset


def test_date_spec_forms() -> None:
    """``$date`` arguments: nothing, a bare pattern, or ``dateformat=``/``datedelta=`` options."""
    assert parse_date_spec(None).format is None
    assert parse_date_spec("yyyy").format == compile_format("yyyy")
    spec = parse_date_spec("dateformat=MMdd;datedelta=-1")
    assert spec.format == compile_format("MMdd")
    assert spec.offsets == (-1,)
    assert parse_date_spec("datedelta=-2..0").offsets == (-2, -1, 0)


@pytest.mark.parametrize(
    ("arg", "offset"),
    [
        ("dateformat=yyyyq", 15),
        ("datedelta=abc", 10),
        ("datedelta=0..-3", 10),
        ("dateformat=yyyy,colour=red", 16),
        ("dateformat=yyyy,datedelta", 16),
    ],
)
def test_bad_date_specs_point_at_the_fault(arg: str, offset: int) -> None:
    """A bad option name, value or format in a ``$date[...]`` argument is located."""
    with pytest.raises(DateFormatError) as caught:
        parse_date_spec(arg)
    assert caught.value.offset == offset
