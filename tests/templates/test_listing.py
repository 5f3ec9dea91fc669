"""Acquisition listing lines: options, paths, regexes, ``$date`` windows and errors."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from bus.templates.lexer import TemplateError
from bus.templates.listing import ListingDefaults, ResolvedListing, parse_directory

NOW = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def expand(text: str, now: datetime = NOW, **defaults: object) -> list[ResolvedListing]:
    """Every listing of every line of ``text`` at ``now``."""
    values = ListingDefaults(**defaults)  # type: ignore[arg-type]
    return [listing for spec in parse_directory(text) for listing in spec.expand(now, values)]


def paths(text: str, now: datetime = NOW, **defaults: object) -> list[str]:
    """The listed directories only."""
    return [listing.path for listing in expand(text, now, **defaults)]


def test_blank_and_comment_lines_are_ignored() -> None:
    """Blank lines and ``#`` lines yield no listing; the others keep their line numbers."""
    specs = parse_directory("\n# a comment\n   \n/data/a\n  # indented comment\n/data/b\n")
    assert [spec.line for spec in specs] == [4, 6]
    assert paths("\n# c\n/data/a\n") == ["/data/a"]


def test_options_path_and_regex_are_split() -> None:
    """``[k=v;k=v]/path/{regex}`` gives the options, the path and the name regex."""
    [listing] = expand("[recursive=yes; useSymlink = no]/data/in/{.*\\.grib}")
    assert listing.path == "/data/in/"
    assert dict(listing.options) == {"recursive": "yes", "useSymlink": "no"}
    assert listing.regex is not None
    assert listing.regex.fullmatch("fc.grib")
    assert not listing.regex.fullmatch("fc.grib2")


def test_line_without_regex_takes_every_entry() -> None:
    """A line without ``{...}`` has no name regex."""
    [listing] = expand("/data/all")
    assert listing.regex is None
    assert listing.options == {}


def test_regex_with_nested_braces_and_dollar_anchor() -> None:
    """Quantifier braces nest inside the regex and a ``$`` anchor stays an anchor."""
    [listing] = expand("/d/{fc_[0-9]{8}\\.grib$}")
    assert listing.regex is not None
    assert listing.regex.pattern == "fc_[0-9]{8}\\.grib$"
    assert listing.regex.fullmatch("fc_20260301.grib")


def test_date_in_path_and_regex() -> None:
    """``$date`` renders in the path and (regex-escaped) in the regex."""
    [listing] = expand("/d/$date/{obs_$date[yyyy.MM]_.*}")
    assert listing.path == "/d/20260301/"
    assert listing.regex is not None
    assert listing.regex.pattern == "obs_2026\\.03_.*"


def test_date_format_precedence() -> None:
    """Token format beats the line option, which beats ``acquisition.dateformat``."""
    assert paths("/a/$date", dateformat="yyyy") == ["/a/2026"]
    assert paths("[dateformat=MM]/a/$date", dateformat="yyyy") == ["/a/03"]
    assert paths("[dateformat=MM]/a/$date[dd]", dateformat="yyyy") == ["/a/01"]


def test_dirdate_reads_its_own_option_first() -> None:
    """``$dirdate`` uses ``dirdateformat``, then falls back to the ``$date`` chain."""
    text = "[dirdateformat=yyyy/MM;dateformat=dd]/a/$dirdate/{x$date}"
    [listing] = expand(text)
    assert listing.path == "/a/2026/03/"
    assert listing.regex is not None
    assert listing.regex.pattern == "x01"
    assert paths("/a/$dirdate", dateformat="yyyyMM") == ["/a/202603"]


@pytest.mark.parametrize(
    ("now", "delta", "expected"),
    [
        (datetime(2026, 3, 1, tzinfo=UTC), "-1", ["20260228"]),
        (datetime(2024, 3, 1, tzinfo=UTC), "-1", ["20240229"]),
        (datetime(2026, 1, 1, tzinfo=UTC), "-1", ["20251231"]),
        (datetime(2025, 12, 31, tzinfo=UTC), "1", ["20260101"]),
        (datetime(2026, 3, 1, tzinfo=UTC), "-2..0", ["20260227", "20260228", "20260301"]),
        (datetime(2026, 1, 1, tzinfo=UTC), "-1..1", ["20251231", "20260101", "20260102"]),
    ],
)
def test_datedelta_across_month_and_year(now: datetime, delta: str, expected: list[str]) -> None:
    """A day offset or window crosses month, leap-day and year boundaries correctly."""
    assert paths(f"/a/$date[datedelta={delta}]", now) == [f"/a/{day}" for day in expected]
    assert paths("/a/$date", now, datedelta=delta) == [f"/a/{day}" for day in expected]
    assert paths(f"[datedelta={delta}]/a/$date", now) == [f"/a/{day}" for day in expected]


def test_window_drives_every_date_token_of_the_line() -> None:
    """Within a window every ``$date`` of the line takes the same day; fixed offsets stay."""
    listings = expand("[datedelta=-1..0]/a/$date/{$date[dd]_$date[dateformat=dd,datedelta=-5]}")
    pairs = [(item.path, item.regex.pattern if item.regex else None) for item in listings]
    assert pairs == [("/a/20260228/", "28_24"), ("/a/20260301/", "01_24")]


def test_window_without_date_token_lists_once() -> None:
    """A window on a line whose path does not change gives one listing (duplicates dropped)."""
    assert paths("[datedelta=-3..0]/static/{.*}") == ["/static/"]


def test_host_fields_and_no_secret() -> None:
    """``$host[...]`` and friends come from the defaults; ``$host[passwd]`` renders empty."""
    values = MappingProxyType({"host[login]": "bob", "transferMethod[name]": "ftp"})
    text = "/home/$host[login]/$transferMethod[name]/$host[passwd]/x"
    assert paths(text, values=values) == ["/home/bob/ftp//x"]


def test_script_field_is_refused() -> None:
    """The whole-field script forms are refused: nothing is evaluated."""
    with pytest.raises(TemplateError, match="not supported"):
        parse_directory("\n$(js:'/a')")


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("/a\n[recursive=yes/b", 2, 1, "never closed"),
        ("[recursive]/b", 1, 2, "not key=value"),
        ("/a/{x", 1, 4, "never closed"),
        ("/a/x}", 1, 5, "has no '{'"),
        ("/a/{x[}", 1, 6, "bad regular expression"),
        ("/a/$nope", 1, 4, "unknown placeholder"),
        ("/a/$host[secret]", 1, 4, "$host needs one of"),
        ("/a/$date[yyyyq]", 1, 14, "illegal"),
        ("[dateformat=qq]/a", 1, 2, "dateformat"),
        ("[datedelta=x]/a/$date", 1, 1, "datedelta"),
        ("/a/$date[datedelta=-1..0]/$date[datedelta=-2..0]", 1, 1, "one day window"),
    ],
)
def test_errors_carry_their_position(text: str, line: int, column: int, message: str) -> None:
    """Each invalid listing line is refused at parse time with its line and column."""
    with pytest.raises(TemplateError) as caught:
        parse_directory(text)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert message in caught.value.detail


def test_bad_default_format_is_reported_at_expansion() -> None:
    """A bad ``acquisition.dateformat`` default is reported naming that property."""
    [spec] = parse_directory("/a/$date")
    with pytest.raises(TemplateError) as caught:
        spec.expand(NOW, ListingDefaults(dateformat="yyyyq"))
    assert caught.value.field == "acquisition.dateformat"
