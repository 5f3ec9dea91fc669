"""Durations and byte sizes as operators write them, parsed into milliseconds and bytes.

Durations: plain numbers are milliseconds (``30000``); a number with a unit (``500ms``,
``30s``, ``10m``/``10min``, ``2h``, ``2d``, ``1w``), several in a row (``1h30m``), or ISO 8601
(``PT1H``, ``P2D``, ``P1W``, ``PT0.5S``). Sizes: plain numbers are bytes; ``k``/``kb``/``KB``
= 1000, ``KiB`` = 1024, and so on up to ``T``/``TiB`` (decimal fractions allowed, ``1.5GiB``).
A bad value raises ``ConfigurationError`` naming the field.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from bus.errors import ConfigurationError

_MS_PER_UNIT = {
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)", re.IGNORECASE)
_ISO = re.compile(
    r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_duration(value: str | int, field: str = "duration") -> int:
    """Milliseconds in ``value``; refuses negative, empty and malformed values."""
    if isinstance(value, bool):
        raise ConfigurationError(field, f"expected a duration, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(field, f"must not be negative, got {value}")
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    if text[:1] in ("P", "p"):
        return _iso(text, field)
    total = Decimal(0)
    position = 0
    for match in _PART.finditer(text):
        if match.start() != position or text[position : match.start()].strip():
            break
        total += Decimal(match.group(1)) * _MS_PER_UNIT[match.group(2).lower()]
        position = match.end()
        while position < len(text) and text[position] == " ":
            position += 1
    if position != len(text) or not text:
        raise ConfigurationError(
            field, f"expected a duration like 500ms, 30s, 10m, 2h, 2d, 1w or PT1H, got {value!r}"
        )
    return int(total)


def _iso(text: str, field: str) -> int:
    match = _ISO.fullmatch(text)
    if match is None or not any(match.groupdict().values()) or text.upper().endswith("T"):
        raise ConfigurationError(field, f"not an ISO 8601 duration: {text!r}")
    units = {"w": "w", "d": "d", "h": "h", "m": "min", "s": "s"}
    total = Decimal(0)
    for group, unit in units.items():
        amount = match.group(group)
        if amount is not None:
            total += Decimal(amount) * _MS_PER_UNIT[unit]
    return int(total)


def format_duration(ms: int) -> str:
    """The shortest exact form of a duration (``30s``, ``10m``, ``2d``, ``1500ms``)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _MS_PER_UNIT[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_size(value: str | int, field: str = "size") -> int:
    """Bytes in ``value``; ``KB`` is 1000 bytes, ``KiB`` 1024."""
    if isinstance(value, bool):
        raise ConfigurationError(field, f"expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(field, f"must not be negative, got {value}")
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None or (match.group(3) and not match.group(2)):
        raise ConfigurationError(
            field, f"expected a size like 700kb, 10MB or 1.5GiB, got {value!r}"
        )
    number, prefix, binary, _ = match.groups()
    base = 1024 if binary else 1000
    try:
        amount = Decimal(number) * base ** _POWERS[prefix.lower()]
    except InvalidOperation:
        raise ConfigurationError(field, f"not a number: {number!r}") from None
    return int(amount)


def format_size(size: int) -> str | int:
    """An exact binary-unit form of a size (``10MiB``), or the plain number of bytes."""
    for prefix, power in (("Ti", 4), ("Gi", 3), ("Mi", 2), ("Ki", 1)):
        unit = 1024**power
        if size and size % unit == 0:
            return f"{size // unit}{prefix}B"
    return size
