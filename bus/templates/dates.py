"""Java ``SimpleDateFormat`` patterns, as OpenECPDS operators write them, formatted in Python.

A pattern (``yyyyMMdd``, ``yyyy-MM-dd``, ``HHmm``, ``DDD``, ``MMM``, ``'T'``...) is compiled once
(cached) into a tuple of field writers; formatting is a join over them. Rules it keeps:

- Times are UTC: an aware datetime is converted to UTC, a naive one is taken as UTC.
- Names (``MMM``, ``EEE``, ``a``) are English whatever the process locale is, as OpenECPDS's
  movers run with ``Locale.ENGLISH``; so the writers never call ``strftime`` with a locale
  directive. ``DateFormat.strftime`` still gives the equivalent ``strftime`` pattern (``%``
  escaped) for callers that want one, or ``None`` where there is no exact equivalent.
- Counts follow Java: numbers are zero-padded to the letter count, ``yy`` is the two last digits
  of the year, ``MMM`` short and ``MMMM`` full month names, ``S`` is milliseconds.
- A letter Java does not know, or a week-based one (``w``, ``W``, ``Y``: their Java results depend
  on the locale's week rules), or an unterminated quote is refused with the offset of the
  problem (``DateFormatError.offset``, 0-based into the pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

__all__ = [
    "DEFAULT_FORMAT",
    "DateFormat",
    "DateFormatError",
    "DateSpec",
    "compile_format",
    "parse_date_spec",
    "parse_offsets",
    "to_utc",
]

DEFAULT_FORMAT = "yyyyMMdd"

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

Writer = Callable[[datetime], str]


class DateFormatError(ValueError):
    """A date pattern is invalid; ``offset`` is the 0-based index of the problem in the pattern."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def to_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (naive datetimes are taken as UTC already)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _number(get: Callable[[datetime], int], width: int) -> Writer:
    return lambda d: str(get(d)).zfill(width)


def _text(full: Callable[[datetime], str], count: int) -> Writer:
    if count >= 4:
        return full
    return lambda d: full(d)[:3]


def _constant(text: str) -> Writer:
    return lambda _d: text


# letter -> (writer factory by count, strftime equivalent by count or None)
def _writer(letter: str, count: int) -> tuple[Writer, str | None]:
    if letter == "y":
        if count == 2:
            return (lambda d: f"{d.year % 100:02d}"), "%y"
        return _number(lambda d: d.year, count), "%Y" if count == 4 else None
    if letter in "ML":
        if count >= 4:
            return (lambda d: MONTHS[d.month - 1]), "%B"
        if count == 3:
            return (lambda d: MONTHS[d.month - 1][:3]), "%b"
        return _number(lambda d: d.month, count), "%m" if count == 2 else None
    if letter == "d":
        return _number(lambda d: d.day, count), "%d" if count == 2 else None
    if letter == "D":
        return _number(lambda d: d.timetuple().tm_yday, count), "%j" if count == 3 else None
    if letter == "H":
        return _number(lambda d: d.hour, count), "%H" if count == 2 else None
    if letter == "k":
        return _number(lambda d: d.hour or 24, count), None
    if letter == "K":
        return _number(lambda d: d.hour % 12, count), None
    if letter == "h":
        return _number(lambda d: d.hour % 12 or 12, count), "%I" if count == 2 else None
    if letter == "m":
        return _number(lambda d: d.minute, count), "%M" if count == 2 else None
    if letter == "s":
        return _number(lambda d: d.second, count), "%S" if count == 2 else None
    if letter == "S":
        return _number(lambda d: d.microsecond // 1000, count), None
    if letter == "E":
        return _text(lambda d: DAYS[d.weekday()], count), "%A" if count >= 4 else "%a"
    if letter == "u":
        return _number(lambda d: d.isoweekday(), count), "%u" if count == 1 else None
    if letter == "F":
        return _number(lambda d: (d.day - 1) // 7 + 1, count), None
    if letter == "a":
        return (lambda d: "AM" if d.hour < 12 else "PM"), "%p"
    if letter == "G":
        return _constant("AD"), None
    if letter == "z":
        return _constant("Coordinated Universal Time" if count >= 4 else "UTC"), None
    if letter == "Z":
        return _constant("+0000"), "%z"
    if letter == "X":
        return _constant("Z"), None
    raise KeyError(letter)


@dataclass(frozen=True, slots=True)
class DateFormat:
    """A compiled Java date pattern; ``format(moment)`` renders it in UTC."""

    pattern: str
    writers: tuple[Writer, ...]
    strftime: str | None

    def format(self, moment: datetime) -> str:
        """``moment`` (converted to UTC) written with this pattern."""
        utc = to_utc(moment)
        return "".join(w(utc) for w in self.writers)


_UNSUPPORTED = {"w": "week in year", "W": "week in month", "Y": "week year"}


@lru_cache(maxsize=512)
def compile_format(pattern: str) -> DateFormat:
    """Compile a Java ``SimpleDateFormat`` pattern; raise ``DateFormatError`` if it is invalid."""
    if not pattern:
        raise DateFormatError("empty date format", 0)
    writers: list[Writer] = []
    strftime: list[str] | None = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            text = "".join(literal)
            writers.append(_constant(text))
            if strftime is not None:
                strftime.append(text.replace("%", "%%"))
            literal.clear()

    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                literal.append("'")
                i += 2
                continue
            close = i + 1
            text: list[str] = []
            while True:
                if close >= n:
                    raise DateFormatError("unterminated quote in date format", i)
                if pattern[close] == "'":
                    if close + 1 < n and pattern[close + 1] == "'":
                        text.append("'")
                        close += 2
                        continue
                    break
                text.append(pattern[close])
                close += 1
            literal.extend(text)
            i = close + 1
            continue
        if not (char.isascii() and char.isalpha()):
            literal.append(char)
            i += 1
            continue
        count = 1
        while i + count < n and pattern[i + count] == char:
            count += 1
        if char in _UNSUPPORTED:
            raise DateFormatError(
                f"date letter '{char}' ({_UNSUPPORTED[char]}) is not supported", i
            )
        try:
            writer, equivalent = _writer(char, count)
        except KeyError:
            raise DateFormatError(f"illegal date pattern character '{char}'", i) from None
        flush()
        writers.append(writer)
        if strftime is not None:
            if equivalent is None:
                strftime = None
            else:
                strftime.append(equivalent)
        i += count
    flush()
    return DateFormat(pattern, tuple(writers), None if strftime is None else "".join(strftime))


@dataclass(frozen=True, slots=True)
class DateSpec:
    """The argument of a ``$date`` token: a format and day offsets, ``None`` meaning the default.

    ``offsets`` holds one day offset (``datedelta=-1``: yesterday) or, for a window written
    ``datedelta=-2..0``, every offset of the window in order.
    """

    format: DateFormat | None = None
    offsets: tuple[int, ...] | None = None


_MAX_WINDOW = 366


def _whole_days(part: str, text: str) -> int:
    try:
        return int(part.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a day offset (-1) or a window of days (-2..0)") from None


def parse_offsets(text: str) -> tuple[int, ...]:
    """``"-1"`` -> ``(-1,)``; ``"-2..0"`` -> ``(-2, -1, 0)``; ``ValueError`` when malformed."""
    text = text.strip()
    if ".." in text:
        low_text, _, high_text = text.partition("..")
        low, high = _whole_days(low_text, text), _whole_days(high_text, text)
        if low > high:
            raise ValueError(f"day window {text!r} runs backwards")
        if high - low >= _MAX_WINDOW:
            raise ValueError(f"day window {text!r} is longer than {_MAX_WINDOW} days")
        return tuple(range(low, high + 1))
    value = _whole_days(text, text)
    if abs(value) > 100_000:
        raise ValueError(f"day offset {text!r} is out of range")
    return (value,)


def parse_date_spec(arg: str | None) -> DateSpec:
    """Parse ``yyyyMMdd`` or ``dateformat=yyyyMMdd,datedelta=-1`` (``;`` also separates).

    Raise ``DateFormatError`` with the offset in ``arg`` of the problem.
    """
    if arg is None:
        return DateSpec()
    if "=" not in arg:
        return DateSpec(format=compile_format(arg))
    fmt: DateFormat | None = None
    offsets: tuple[int, ...] | None = None
    position = 0
    for part in arg.replace(";", ",").split(","):
        key, sep, value = part.partition("=")
        key_name = key.strip()
        if not sep:
            raise DateFormatError(f"expected key=value, got {part!r}", position)
        value_at = position + len(key) + 1
        if key_name == "dateformat":
            try:
                fmt = compile_format(value.strip())
            except DateFormatError as error:
                raise DateFormatError(str(error), value_at + error.offset) from None
        elif key_name == "datedelta":
            try:
                offsets = parse_offsets(value)
            except ValueError as error:
                raise DateFormatError(f"bad datedelta: {error}", value_at) from None
        else:
            raise DateFormatError(
                f"unknown $date option {key_name!r} (known: dateformat, datedelta)", position
            )
        position += len(part) + 1
    return DateSpec(format=fmt, offsets=offsets)
