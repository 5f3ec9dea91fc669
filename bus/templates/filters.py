"""Acquisition size and age filters: ``acquisition.filesize`` / ``acquisition.fileage`` values.

``parse_filter("<10d")`` -> ``Filter``; ``Filter.matches(value)``. Rules it keeps:

- Operators as in OpenECPDS: ``==``, ``!=``, ``>>`` (greater), ``<<`` (less), ``>=``, ``<=``; the
  single ``>``, ``<``, ``=`` are accepted as ``>>``, ``<<``, ``==``.
- Ages are in milliseconds (OpenECPDS's ``$age``): ``500ms``, ``30s``, ``10m``/``10min``, ``2h``,
  ``10d``, ``1w``, or ISO 8601 (``PT1H``, ``P2D``); a bare number is milliseconds.
- Sizes are in bytes: ``10``, ``10B``, ``10K``/``10KB``, ``10M``/``10MB``, ``10G``, ``10T`` (binary
  multiples, 1 KB = 1024 bytes; ``KiB`` etc. accepted), case-insensitive.
- Without ``kind`` the unit decides: a time unit makes an age filter, anything else a size
  filter (so ``10m`` is ten minutes and ``10M`` ten mebibytes).
- The script forms (``$size > ...``, ``$age ...``) are refused: nothing is ever evaluated.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from bus.templates.lexer import TemplateError

__all__ = ["Filter", "FilterKind", "parse_duration_ms", "parse_filter", "parse_size"]

FilterKind = Literal["size", "age"]

_OPERATORS = (
    ("==", "=="),
    ("!=", "!="),
    (">>", ">>"),
    ("<<", "<<"),
    (">=", ">="),
    ("<=", "<="),
    (">", ">>"),
    ("<", "<<"),
    ("=", "=="),
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d|w)?")
_DURATION_MS = {
    None: 1,
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_ISO = re.compile(
    r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", re.IGNORECASE
)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", re.IGNORECASE)
_SIZE_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_LARGEST = float(1 << 62)
_TIME_UNIT = re.compile(r"\d\s*(ms|min|s|m|h|d|w)$|^[Pp]")


def parse_duration_ms(text: str) -> int:
    """``"10d"`` -> milliseconds; ``ValueError`` when it is not a duration."""
    text = text.strip()
    if text[:1] in "pP":
        match = _ISO.fullmatch(text)
        if match is None or len(text) < 3 or text.upper().endswith("T"):
            raise ValueError(f"not an ISO 8601 duration: {text!r}")
        weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        total = weeks * 7 * 86400 + days * 86400 + hours * 3600 + minutes * 60 + seconds
        return _whole(total * 1000, text)
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 500ms, 30s, 10m, 2h, 10d, 1w)")
    return _whole(float(match.group(1)) * _DURATION_MS[match.group(2)], text)


def parse_size(text: str) -> int:
    """``"10MB"`` -> bytes; ``ValueError`` when it is not a size."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r} (examples: 100, 10KB, 10MB, 1G)")
    return _whole(float(match.group(1)) * _SIZE_SCALE[match.group(2).lower()], text)


def _whole(value: float, text: str) -> int:
    if not math.isfinite(value) or value > _LARGEST:
        raise ValueError(f"{text!r} is too large")
    return round(value)


@dataclass(frozen=True, slots=True)
class Filter:
    """``value <operator> threshold``; thresholds are bytes (size) or milliseconds (age)."""

    operator: str
    threshold: int
    kind: FilterKind

    def matches(self, value: float | timedelta) -> bool:
        """Whether a file of this size (bytes) or age (milliseconds or timedelta) passes."""
        if isinstance(value, timedelta):
            value = value / timedelta(milliseconds=1)
        threshold = self.threshold
        if self.operator == "==":
            return value == threshold
        if self.operator == "!=":
            return value != threshold
        if self.operator == ">>":
            return value > threshold
        if self.operator == "<<":
            return value < threshold
        if self.operator == ">=":
            return value >= threshold
        return value <= threshold


def parse_filter(text: str, *, kind: FilterKind | None = None, field: str = "") -> Filter:
    """Parse ``<10d``, ``>=10MB``, ``!=0``...; ``TemplateError`` (column 1-based) if invalid."""
    name = field or ("acquisition.fileage" if kind == "age" else "acquisition.filesize")
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    if "$" in stripped:
        raise TemplateError(
            "script filters are not supported (nothing is evaluated); use an operator "
            "and a value, e.g. <10d or >=10MB",
            1,
            lead + 1,
            field=name,
        )
    found = next((pair for pair in _OPERATORS if stripped.startswith(pair[0])), None)
    if found is None:
        raise TemplateError(
            "a filter starts with one of ==, !=, >>, <<, >=, <=", 1, lead + 1, field=name
        )
    written, operator = found
    rest = stripped[len(written) :]
    value = rest.strip()
    value_column = lead + 1 + len(written) + len(rest) - len(rest.lstrip())
    if not value:
        raise TemplateError(
            "a filter needs a value after its operator", 1, value_column, field=name
        )
    chosen: FilterKind = kind or ("age" if _TIME_UNIT.search(value) else "size")
    try:
        threshold = parse_duration_ms(value) if chosen == "age" else parse_size(value)
    except ValueError as error:
        raise TemplateError(str(error), 1, value_column, field=name) from None
    return Filter(operator, threshold, chosen)
