"""Durations and sizes as operators write them."""

from __future__ import annotations

import pytest

from bus.config.durations import format_duration, format_size, parse_duration, parse_size
from bus.errors import ConfigurationError


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("30s", 30_000),
        ("10m", 600_000),
        ("5min", 300_000),
        ("2h", 7_200_000),
        ("2d", 172_800_000),
        ("1w", 604_800_000),
        ("1h30m", 5_400_000),
        ("1.5h", 5_400_000),
        ("30000", 30_000),
        (45, 45),
        ("PT1H", 3_600_000),
        ("P2D", 172_800_000),
        ("P1W", 604_800_000),
        ("PT1H30M", 5_400_000),
        ("PT0.5S", 500),
        ("P1DT2H", 93_600_000),
    ],
)
def test_durations_parse_to_milliseconds(text: str | int, ms: int) -> None:
    """Every accepted duration form gives the right number of milliseconds."""
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5", -5, "P", "PT", "1h x", "h", True])
def test_bad_durations_are_refused_naming_the_field(text: str | int) -> None:
    """A malformed or negative duration is a ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError) as caught:
        parse_duration(text, "destination.retry_frequency")
    assert caught.value.field == "destination.retry_frequency"


@pytest.mark.parametrize("ms", [1, 500, 1500, 30_000, 600_000, 7_200_000, 172_800_000, 604_800_000])
def test_formatted_durations_parse_back(ms: int) -> None:
    """format_duration writes a form that parses back to the same milliseconds."""
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MB", 10_000_000),
        ("1.5GiB", 1_610_612_736),
        ("700kb", 700_000),
        ("700K", 700_000),
        ("1KiB", 1024),
        ("12", 12),
        (12, 12),
        ("2TB", 2 * 10**12),
    ],
)
def test_sizes_parse_to_bytes(text: str | int, size: int) -> None:
    """Decimal (kB, MB) and binary (KiB, GiB) units give the right number of bytes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "10XB", "-1", -1, "1.5.5MB", "10iB"])
def test_bad_sizes_are_refused(text: str | int) -> None:
    """A malformed or negative size is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        parse_size(text, "destination.max_file_size")


@pytest.mark.parametrize("size", [1, 1000, 1024, 10 * 1024**2, 3 * 1024**3])
def test_formatted_sizes_parse_back(size: int) -> None:
    """format_size writes a form that parses back to the same bytes."""
    assert parse_size(format_size(size)) == size
