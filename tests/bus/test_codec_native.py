"""The compiled codec (ecpds_avro) against the pure-Python one: same bytes, events and errors.

Each test holds two catalogues over the same schemas, one forced onto the compiled codec and one
onto the fastavro path, so it runs the same whatever ``ECPDS_CODEC`` says.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import shutil
import types
import typing
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import pytest

from bus import codec
from bus.errors import DecodeError, UnknownSchema
from bus.events import Envelope, Event
from bus.events.deadletter import DeadLettered, DeadLetterReason
from bus.events.transfers import TransferQueued
from tests.bus.make_golden import GOLDEN
from tests.bus.samples import SAMPLES, sample
from tests.bus.test_codec import ENVELOPE_SCHEMA, THING_V1, THING_V2, ThingV1, ThingV2

NAMES = sorted(SAMPLES)


def _require_native() -> None:
    try:
        import ecpds_avro  # noqa: F401
    except ImportError:
        if shutil.which("cargo") or (Path.home() / ".cargo/bin/cargo").exists():
            pytest.fail("cargo is installed but ecpds_avro is not: run infra/install.sh")
        pytest.skip("no Rust toolchain here, so no compiled codec")


@pytest.fixture(scope="module")
def native() -> codec.Catalogue:
    """The catalogue on the compiled codec."""
    _require_native()
    catalogue = codec.Catalogue(native=True)
    assert catalogue.native is not None
    return catalogue


@pytest.fixture(scope="module")
def python() -> codec.Catalogue:
    """The catalogue on the pure-Python (fastavro) path."""
    catalogue = codec.Catalogue(native=False)
    assert catalogue.native is None
    return catalogue


# --- values at the edges of each type -----------------------------------------------------------


def _edge(hint: Any, high: bool, name: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in args if a is not type(None))
        return _edge(inner, high, name) if high else None
    if origin is tuple:
        return (_edge(args[0], high, name), _edge(args[0], not high, name)) if high else ()
    if origin in (Mapping, dict):
        value = _edge(args[1], high, name)
        return {"clé-✓": value, "": value} if high else {}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = list(hint)
        return members[-1] if high else members[0]
    if dataclasses.is_dataclass(hint):
        return _build(hint, high)  # type: ignore[arg-type]
    if hint is bool:
        return high
    if hint is int:
        return 2**63 - 1 if high else -(2**63)
    if hint is float:
        return -1.5e300 if high else 5e-324
    if hint is bytes:
        return bytes(range(256)) if high else b""
    if hint is datetime:
        if high:
            return datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
        return datetime(1, 1, 1, tzinfo=UTC)
    if hint is str:
        return f"{name} é✓\U0001f600\x00" if high else ""
    raise TypeError(f"no edge value for {hint!r}")


def _build(cls: type[Any], high: bool) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _edge(hints[f.name], high, f.name) for f in dataclasses.fields(cls)})


def _variants() -> Iterator[tuple[str, Event]]:
    for name in NAMES:
        cls = type(SAMPLES[name])
        for high in (False, True):
            yield f"{name}-{'high' if high else 'low'}", _build(cls, high)


VARIANTS = dict(_variants())


# --- same bytes, same events --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_sample_bytes_identical(
    name: str, native: codec.Catalogue, python: codec.Catalogue
) -> None:
    """Every sample encodes to the same bytes on both paths, and each path reads the other's."""
    event = SAMPLES[name]
    data = python.encode(event)
    assert native.encode(event) == data
    assert native.decode(data) == event
    assert python.decode(native.encode(event)) == event


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_edge_values_identical(name: str, native: codec.Catalogue, python: codec.Catalogue) -> None:
    """Extreme ints, doubles, empty and unicode strings, all byte values, the first and last
    datetime, empty and full collections, absent and present options: same bytes, same event."""
    event = VARIANTS[name]
    data = python.encode(event)
    assert native.encode(event) == data
    decoded = native.decode(data)
    assert decoded == python.decode(data)
    assert decoded == event


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.bin")), ids=lambda p: p.stem)
def test_golden_fixture_decodes_alike(
    path: Path, native: codec.Catalogue, python: codec.Catalogue
) -> None:
    """Every golden fixture decodes to the same event on both paths."""
    data = path.read_bytes()
    assert native.decode(data) == python.decode(data)


def test_decoded_shapes(native: codec.Catalogue) -> None:
    """Arrays come back as tuples, enums as members, times as UTC datetimes (the UTC object)."""
    event = VARIANTS["ecpds.deadletter.DeadLettered-high"]
    decoded = native.decode(native.encode(event))
    assert isinstance(decoded, DeadLettered)
    assert isinstance(decoded.original_headers, tuple)
    assert type(decoded.reason) is DeadLetterReason
    assert decoded.origin_timestamp is not None
    assert decoded.origin_timestamp.tzinfo is UTC
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.reason = DeadLetterReason.UNKNOWN_SCHEMA  # type: ignore[misc]


def test_times_in_other_zones(native: codec.Catalogue, python: codec.Catalogue) -> None:
    """A time in another zone (the Python fallback) is written as its instant, as fastavro does."""
    for offset in (timedelta(hours=2), timedelta(hours=-9, minutes=-30)):
        when = datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=timezone(offset))
        event = sample(TransferQueued, queue_time=when)
        assert native.encode(event) == python.encode(event)
        decoded = native.decode(native.encode(event))
        assert isinstance(decoded, TransferQueued)
        assert decoded.queue_time == when
        assert decoded.queue_time.tzinfo is UTC


def test_plain_string_enum_value(native: codec.Catalogue, python: codec.Catalogue) -> None:
    """A plain string equal to a symbol encodes as that symbol, as fastavro's symbols.index."""
    event = sample(DeadLettered, reason="UNDECODABLE")
    assert native.encode(event) == python.encode(event)


def test_other_collection_types(native: codec.Catalogue, python: codec.Catalogue) -> None:
    """A read-only mapping for a map and a list for an array give the same bytes as fastavro."""
    event = sample(TransferQueued, metadata=MappingProxyType({"a": "b", "é": ""}), checksums=None)
    assert native.encode(event) == python.encode(event)
    listing = SAMPLES["ecpds.acquisition.ListingCompleted"]
    as_list = dataclasses.replace(listing, errors=["one", "two"])  # type: ignore[call-arg]
    assert native.encode(as_list) == python.encode(as_list)
    changed = SAMPLES["ecpds.config.DestinationChanged"]
    aliases = changed.destination.aliases  # type: ignore[attr-defined]
    as_list = dataclasses.replace(
        changed,
        destination=dataclasses.replace(changed.destination, aliases=list(aliases)),  # type: ignore[attr-defined, call-arg]
    )
    assert native.encode(as_list) == python.encode(as_list)


def test_encode_errors(native: codec.Catalogue) -> None:
    """A naive datetime and a foreign class raise TypeError, an unknown symbol ValueError."""
    with pytest.raises(TypeError):
        native.encode(sample(TransferQueued, queue_time=datetime(2026, 1, 1)))
    with pytest.raises(TypeError, match="Envelope is not an ecpds event"):
        native.encode(SAMPLES[NAMES[0]].envelope)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NO_SUCH_REASON"):
        native.encode(sample(DeadLettered, reason="NO_SUCH_REASON"))


def test_other_buffers_decode(native: codec.Catalogue) -> None:
    """A bytearray or memoryview payload decodes too (through the Python path)."""
    event = SAMPLES["ecpds.transfers.TransferQueued"]
    data = native.encode(event)
    assert native.decode(bytearray(data)) == event  # type: ignore[arg-type]
    assert native.decode(memoryview(data)) == event  # type: ignore[arg-type]


# --- every way a payload can be wrong -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_truncation_raises(name: str, native: codec.Catalogue) -> None:
    """Every cut of a valid payload past the header raises DecodeError, saying truncated."""
    data = native.encode(VARIANTS[f"{name}-high"])
    for cut in range(HEADER, len(data)):
        with pytest.raises(DecodeError, match=r"(truncated|corrupt) body"):
            native.decode(data[:cut])
    with pytest.raises(DecodeError, match="truncated body"):
        native.decode(data[:-1])


HEADER = codec.HEADER_SIZE


def _differing_byte(first: bytes, second: bytes) -> int:
    return next(i for i, (x, y) in enumerate(zip(first, second, strict=False)) if x != y)


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"", DecodeError, "not an Avro single-object"),
        (b"\xc3\x02" + bytes(20), DecodeError, "not an Avro single-object"),
        (b"\xc3\x01" + bytes.fromhex("0123456789abcdef") + b"\x00", UnknownSchema, "0123456789ab"),
    ],
)
def test_foreign_payloads(
    data: bytes, error: type[Exception], reason: str, native: codec.Catalogue
) -> None:
    """A payload without our marker or fingerprint gets the Python path's precise error."""
    with pytest.raises(error, match=reason):
        native.decode(data)


def test_trailing_bytes(native: codec.Catalogue) -> None:
    """Bytes after the record are reported with their count."""
    data = native.encode(SAMPLES["ecpds.transfers.TransferQueued"]) + b"\x00\x01"
    with pytest.raises(DecodeError, match="2 bytes after the record"):
        native.decode(data)


def test_bad_enum_index(native: codec.Catalogue) -> None:
    """An enum index past the symbols (or negative) is a corrupt body."""
    reasons = list(DeadLetterReason)
    first = native.encode(sample(DeadLettered, reason=reasons[0]))
    position = _differing_byte(first, native.encode(sample(DeadLettered, reason=reasons[1])))
    for index in (0x7E, 0x01):  # zigzag 63, zigzag -1
        corrupt = bytearray(first)
        corrupt[position] = index
        with pytest.raises(DecodeError, match=r"corrupt body \(enum index"):
            native.decode(bytes(corrupt))


def test_bad_union_index(native: codec.Catalogue) -> None:
    """A union index other than the two branches is a corrupt body."""
    absent = native.encode(sample(TransferQueued, alias_of=None))
    position = _differing_byte(absent, native.encode(sample(TransferQueued, alias_of="x")))
    for index in (0x04, 0x01):  # zigzag 2, zigzag -1
        corrupt = bytearray(absent)
        corrupt[position] = index
        with pytest.raises(DecodeError, match=r"corrupt body \(union index"):
            native.decode(bytes(corrupt))


def test_invalid_utf8(native: codec.Catalogue) -> None:
    """A string that is not UTF-8 is a corrupt body chained to the UnicodeDecodeError."""
    data = native.encode(sample(TransferQueued, target="ABCD"))
    corrupt = data.replace(b"ABCD", b"AB\xff\xfe", 1)
    with pytest.raises(DecodeError, match=r"corrupt body \(UnicodeDecodeError") as info:
        native.decode(corrupt)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_negative_length_and_endless_varint(native: codec.Catalogue) -> None:
    """A negative string length and a varint of more than 10 bytes are corrupt bodies."""
    data = native.encode(sample(TransferQueued, target="ABCD"))
    at = data.index(b"ABCD") - 1  # the length byte, zigzag 4 = 0x08
    negative = data[:at] + b"\x07" + data[at + 1 :]
    with pytest.raises(DecodeError, match="corrupt body"):
        native.decode(negative)
    endless = data[:at] + b"\xff" * 11 + data[at + 1 :]
    with pytest.raises(DecodeError, match="corrupt body"):
        native.decode(endless)


def test_huge_array_count_is_not_allocated(native: codec.Catalogue) -> None:
    """An array claiming more items than the bytes left is refused before any allocation."""
    header = VARIANTS["ecpds.deadletter.DeadLettered-high"].original_headers[0]  # type: ignore[attr-defined]
    empty = native.encode(sample(DeadLettered, original_headers=()))
    position = _differing_byte(
        empty, native.encode(sample(DeadLettered, original_headers=(header,)))
    )
    assert empty[position] == 0  # the empty array's end marker: claim 2**62 items there instead
    corrupt = empty[:position] + b"\x80" * 9 + b"\x01" + empty[position + 1 :]
    with pytest.raises(DecodeError, match="truncated body"):
        native.decode(corrupt)


def test_timestamp_out_of_range(native: codec.Catalogue) -> None:
    """A timestamp past year 9999 is a corrupt body, not an OverflowError."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    data = native.encode(sample(TransferQueued, queue_time=epoch))
    later = native.encode(sample(TransferQueued, queue_time=epoch + timedelta(microseconds=1)))
    position = _differing_byte(data, later)
    assert data[position] == 0  # zero microseconds: a one-byte varint, made the largest long
    corrupt = data[:position] + b"\xfe" + b"\xff" * 8 + b"\x01" + data[position + 1 :]
    with pytest.raises(DecodeError, match="outside the datetime range"):
        native.decode(corrupt)


# --- earlier versions and the switch ------------------------------------------------------------


def test_earlier_version_decodes_through_fastavro(tmp_path: Path) -> None:
    """A catalogue on the compiled codec still reads a message of a frozen earlier version."""
    _require_native()

    def catalogue(where: str, files: dict[str, Any], cls: type[Event]) -> codec.Catalogue:
        directory = tmp_path / where
        directory.mkdir()
        for name, schema in files.items():
            (directory / f"{name}.avsc").write_text(json.dumps(schema))
        return codec.Catalogue(
            directory, {"ecpds.test.Thing": cls}, {"ecpds.Envelope": Envelope}, native=True
        )

    v1 = catalogue("v1", {"ecpds.Envelope": ENVELOPE_SCHEMA, "ecpds.test.Thing": THING_V1}, ThingV1)
    env = SAMPLES[NAMES[0]].envelope
    old = v1.encode(ThingV1(envelope=env, size=42))
    frozen = v1.versions[v1.fingerprint_of("ecpds.test.Thing")].schema
    files = {
        "ecpds.Envelope": ENVELOPE_SCHEMA,
        "ecpds.test.Thing": THING_V2,
        "ecpds.test.Thing@v1": frozen,
    }
    v2 = catalogue("v2", files, ThingV2)
    assert v2.native is not None
    assert v2.native.decode(old) is None  # not the compiled codec's: fastavro resolves it
    assert v2.decode(old) == ThingV2(envelope=env, size=42)
    new = ThingV2(envelope=env, size=1, label="x", tags=("a", "b"))
    assert v2.decode(v2.encode(new)) == new


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlainThing(Event):
    """Test event without slots: decoded by calling the class, not by filling slots."""

    AVRO_NAME: ClassVar[str] = "ecpds.test.Thing"
    size: int
    label: str | None = None
    tags: tuple[str, ...] = ()


def test_class_without_slots_is_called(tmp_path: Path) -> None:
    """A record class whose fields are not slots is built through its constructor."""
    _require_native()
    (tmp_path / "ecpds.Envelope.avsc").write_text(json.dumps(ENVELOPE_SCHEMA))
    (tmp_path / "ecpds.test.Thing.avsc").write_text(json.dumps(THING_V2))
    events = {"ecpds.test.Thing": PlainThing}
    named = {"ecpds.Envelope": Envelope}
    native = codec.Catalogue(tmp_path, events, named, native=True)
    python = codec.Catalogue(tmp_path, events, named, native=False)
    event = PlainThing(envelope=SAMPLES[NAMES[0]].envelope, size=-5, label="é", tags=("a",))
    assert native.encode(event) == python.encode(event)
    assert native.decode(python.encode(event)) == event


def test_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """ECPDS_CODEC=python keeps to fastavro; native requires the compiled codec; unset uses it."""
    _require_native()
    monkeypatch.setenv(codec.CODEC_ENV, "python")
    assert codec.Catalogue().native is None
    monkeypatch.setenv(codec.CODEC_ENV, "native")
    assert codec.Catalogue().native is not None
    monkeypatch.delenv(codec.CODEC_ENV)
    assert codec.Catalogue().native is not None
