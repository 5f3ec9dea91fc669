"""The Avro codec: single-object encoding, golden bytes, errors, headers, evolution, JSON view."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from bus import codec
from bus.errors import DecodeError
from bus.events import EVENT_TYPES, Envelope, Event, envelope
from bus.events.config_changes import DestinationDefined
from bus.events.deadletter import DeadLettered, DeadLetterReason
from bus.events.transfers import TransferQueued
from tests.bus.make_golden import GOLDEN
from tests.bus.samples import SAMPLES, sample

NAMES = sorted(SAMPLES)
GOLDEN_FILES = sorted(GOLDEN.glob("*.bin"))


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str) -> None:
    """Every event type decodes to an equal event after encoding."""
    event = SAMPLES[name]
    data = codec.encode(event)
    assert codec.decode(data) == event
    assert codec.decode_with_type(data, name) == event


@pytest.mark.parametrize("name", NAMES)
def test_single_object_header(name: str) -> None:
    """A payload starts with C3 01 and the CRC-64-AVRO fingerprint of the canonical form."""
    data = codec.encode(SAMPLES[name])
    version = codec.CATALOGUE.versions[data[2:10]]
    canonical = to_parsing_canonical_form(version.schema)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == codec.fingerprint(canonical)
    assert data[2:10] == bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO"))
    assert version.name == name
    assert version.current


def test_fingerprint_of_int_matches_avro_spec() -> None:
    """CRC-64-AVRO of the schema "int" is the spec's value, stored little-endian."""
    assert codec.fingerprint('"int"') == (0x7275D51A3F395C8F).to_bytes(8, "little")


def test_every_event_type_has_a_golden_fixture() -> None:
    """Each current schema version has its golden fixture (run tests/bus/make_golden.py)."""
    have = {p.stem for p in GOLDEN_FILES}
    for name in NAMES:
        assert f"{name}@{codec.CATALOGUE.fingerprint_of(name).hex()}" in have, name


def _expected(name: str, data: bytes) -> Event:
    """The sample as a reader of the fixture's schema version sees it (later fields defaulted)."""
    event = SAMPLES[name]
    reader = codec.CATALOGUE._readers[data[2:10]]
    if reader.reader_parsed is None:
        return event
    old = BytesIO()
    schemaless_writer(old, reader.parsed, codec.CATALOGUE._writers[type(event)].to_avro(event))
    old.seek(0)
    result: Event = reader.from_avro(schemaless_reader(old, reader.parsed, reader.reader_parsed))
    return result


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_fixture_decodes_to_sample(path: Path) -> None:
    """Bytes written by every published schema version still decode to the sample event."""
    name, _, fp = path.stem.partition("@")
    data = path.read_bytes()
    assert data[2:10].hex() == fp
    assert codec.decode(data) == _expected(name, data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not an Avro single-object"),
        (b"\xc3", "not an Avro single-object"),
        (b'{"json": true, "not": "avro"}', "not an Avro single-object"),
        (b"\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00body", "unknown schema fingerprint"),
        (b"\xc3\x02" + bytes(20), "not an Avro single-object"),
    ],
)
def test_garbage_raises_decode_error(data: bytes, reason: str) -> None:
    """Payloads that are not ours fail with a DecodeError saying why."""
    with pytest.raises(DecodeError, match=reason) as info:
        codec.decode(data)
    assert info.value.retriable is False


def test_unknown_fingerprint_names_it() -> None:
    """A payload from a schema we do not have names the fingerprint in the error."""
    data = b"\xc3\x01" + bytes.fromhex("0123456789abcdef") + b"\x00"
    with pytest.raises(DecodeError, match="0123456789abcdef"):
        codec.decode(data)


@pytest.mark.parametrize("name", NAMES)
def test_truncated_body_raises_decode_error(name: str) -> None:
    """Every truncation of a valid payload fails with a DecodeError, never another exception."""
    data = codec.encode(SAMPLES[name])
    for cut in range(len(data) - 1, 9, -max(1, len(data) // 40)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut])


def test_trailing_bytes_raise_decode_error() -> None:
    """Bytes after the record mean the body is corrupt."""
    data = codec.encode(SAMPLES["ecpds.transfers.TransferQueued"]) + b"\x00"
    with pytest.raises(DecodeError, match="after the record"):
        codec.decode(data)


def test_corrupt_enum_index_raises_decode_error() -> None:
    """An out-of-range enum index in the body is reported as corrupt, not an IndexError."""
    reasons = list(DeadLetterReason)
    first = codec.encode(sample(DeadLettered, reason=reasons[0]))
    second = codec.encode(sample(DeadLettered, reason=reasons[1]))
    [position] = [i for i, (x, y) in enumerate(zip(first, second, strict=True)) if x != y]
    corrupt = bytearray(first)
    corrupt[position] = 0x7E  # zigzag 63: no such symbol
    with pytest.raises(DecodeError, match="corrupt"):
        codec.decode(bytes(corrupt))


def test_header_type_mismatch_raises_decode_error() -> None:
    """A payload whose event-type header names another type is refused."""
    data = codec.encode(SAMPLES["ecpds.transfers.TransferQueued"])
    with pytest.raises(DecodeError, match=r"ecpds\.transfers\.TransferStarted"):
        codec.decode_with_type(data, "ecpds.transfers.TransferStarted")


def test_missing_header_type_still_decodes() -> None:
    """Without an event-type header the payload alone decides."""
    event = SAMPLES["ecpds.transfers.TransferQueued"]
    assert codec.decode_with_type(codec.encode(event), None) == event


def test_headers_and_event_type() -> None:
    """The event-type header carries the Avro full name."""
    event = SAMPLES["ecpds.movers.MoverHeartbeat"]
    assert codec.EVENT_TYPE_HEADER == "event-type"
    assert codec.event_type(event) == "ecpds.movers.MoverHeartbeat"
    assert codec.headers(event) == [("event-type", b"ecpds.movers.MoverHeartbeat")]


def test_encode_refuses_naive_datetime() -> None:
    """Event times must be UTC-aware; a naive datetime is a programming error."""
    event = sample(TransferQueued, queue_time=datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        codec.encode(event)


def test_non_utc_times_decode_as_the_same_instant_in_utc() -> None:
    """A time in another zone is stored as its instant and read back in UTC."""
    paris = datetime(2026, 6, 1, 14, 0, tzinfo=UTC).astimezone().replace(microsecond=5)
    event = sample(TransferQueued, queue_time=paris)
    decoded = codec.decode(codec.encode(event))
    assert isinstance(decoded, TransferQueued)
    assert decoded.queue_time == paris
    assert decoded.queue_time.tzinfo is UTC


def test_decoded_collections_are_tuples_and_enums() -> None:
    """Arrays come back as tuples and enums as their StrEnum members."""
    event = SAMPLES["ecpds.config.DestinationDefined"]
    decoded = codec.decode(codec.encode(event))
    assert isinstance(decoded, DestinationDefined)
    assert isinstance(decoded.destination.aliases, tuple)
    assert isinstance(event, DestinationDefined)
    assert type(decoded.destination.compression) is type(event.destination.compression)


def test_envelope_helper_stamps_uuid4_and_utc_now() -> None:
    """envelope() gives a fresh uuid4 and the current UTC time."""
    before = datetime.now(UTC)
    first = envelope("scheduler/1", "transfer-1", causation_id="cause")
    second = envelope("scheduler/1", "transfer-1")
    assert uuid.UUID(first.event_id).version == 4
    assert first.event_id != second.event_id
    assert first.occurred_at.tzinfo is UTC
    assert before <= first.occurred_at <= datetime.now(UTC)
    assert (first.source, first.correlation_id, first.causation_id) == (
        "scheduler/1",
        "transfer-1",
        "cause",
    )
    assert second.causation_id is None


@pytest.mark.parametrize("name", NAMES)
def test_to_json_is_json_safe(name: str) -> None:
    """to_json gives plain JSON: ISO 8601 UTC times, enum values, base64 bytes."""
    view = codec.to_json(SAMPLES[name])
    assert json.loads(json.dumps(view)) == view
    stamped = view["envelope"]
    assert isinstance(stamped, dict)
    assert stamped["occurred_at"] == "2026-01-02T03:04:05.678901Z"


def test_to_json_bytes_and_enums() -> None:
    """Bytes are base64 and enums their code."""
    event = sample(DeadLettered, original_value=b"\xff\x00raw")
    view = codec.to_json(event)
    assert view["original_value"] == base64.b64encode(b"\xff\x00raw").decode()
    assert view["reason"] == event.reason.value


# --- evolution: an earlier version still decodes into the current class ----------------------

ENVELOPE_SCHEMA = json.loads((codec.SCHEMAS_DIR / "ecpds.Envelope.avsc").read_text())
THING_V1 = {
    "type": "record",
    "name": "Thing",
    "namespace": "ecpds.test",
    "fields": [
        {"name": "envelope", "type": "ecpds.Envelope"},
        {"name": "size", "type": "long"},
    ],
}
THING_V2 = {
    **THING_V1,
    "fields": [
        *THING_V1["fields"],
        {"name": "label", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
    ],
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ThingV1(Event):
    """Test event, first version."""

    AVRO_NAME: ClassVar[str] = "ecpds.test.Thing"
    size: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ThingV2(Event):
    """Test event, second version with added fields."""

    AVRO_NAME: ClassVar[str] = "ecpds.test.Thing"
    size: int
    label: str | None = None
    tags: tuple[str, ...] = ()


def _catalogue(directory: Path, files: dict[str, Any], cls: type[Event]) -> codec.Catalogue:
    directory.mkdir()
    for name, schema in files.items():
        (directory / f"{name}.avsc").write_text(json.dumps(schema))
    return codec.Catalogue(directory, {"ecpds.test.Thing": cls}, {"ecpds.Envelope": Envelope})


def test_earlier_version_decodes_with_defaults(tmp_path: Path) -> None:
    """A message written with a frozen earlier version reads into the current class."""
    v1 = _catalogue(
        tmp_path / "v1", {"ecpds.Envelope": ENVELOPE_SCHEMA, "ecpds.test.Thing": THING_V1}, ThingV1
    )
    env = envelope("tests", "thing-1")
    old_bytes = v1.encode(ThingV1(envelope=env, size=42))
    frozen = v1.versions[v1.fingerprint_of("ecpds.test.Thing")].schema
    v2 = _catalogue(
        tmp_path / "v2",
        {
            "ecpds.Envelope": ENVELOPE_SCHEMA,
            "ecpds.test.Thing": THING_V2,
            "ecpds.test.Thing@v1": frozen,
        },
        ThingV2,
    )
    assert v2.fingerprint_of("ecpds.test.Thing") != old_bytes[2:10]
    assert v2.decode(old_bytes) == ThingV2(envelope=env, size=42)
    new = ThingV2(envelope=env, size=1, label="x", tags=("a",))
    assert v2.decode(v2.encode(new)) == new


def test_schema_file_must_be_named_by_full_name(tmp_path: Path) -> None:
    """A schema file whose name is not its full name is refused at load time."""
    with pytest.raises(DecodeError, match="must be named"):
        _catalogue(
            tmp_path / "bad", {"ecpds.Envelope": ENVELOPE_SCHEMA, "Thing": THING_V1}, ThingV1
        )


def test_every_event_class_is_registered() -> None:
    """The registry maps each full name to its class, with no duplicate."""
    assert all(name == cls.AVRO_NAME for name, cls in EVENT_TYPES.items())
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)


def test_frozen_copy_of_the_current_version_is_harmless(tmp_path: Path) -> None:
    """Freezing a version that was never changed leaves it the current, directly read one."""
    v1 = _catalogue(
        tmp_path / "v1",
        {"ecpds.Envelope": ENVELOPE_SCHEMA, "ecpds.test.Thing": THING_V1},
        ThingV1,
    )
    frozen = v1.versions[v1.fingerprint_of("ecpds.test.Thing")].schema
    again = _catalogue(
        tmp_path / "again",
        {
            "ecpds.Envelope": ENVELOPE_SCHEMA,
            "ecpds.test.Thing": THING_V1,
            "ecpds.test.Thing@v1": frozen,
        },
        ThingV1,
    )
    event = ThingV1(envelope=envelope("tests", "thing-1"), size=7)
    assert again.decode(v1.encode(event)) == event
    assert [v.current for v in again.versions.values()] == [True]


def test_type_header_names_the_event_type_of_a_record() -> None:
    """The ``event-type`` header among a record's headers, None without one; bytes that are not
    UTF-8 come back replaced, so decoding with that type refuses the record instead of crashing."""
    assert codec.type_header([("trace", b"x"), ("event-type", b"ecpds.a.B")]) == "ecpds.a.B"
    assert codec.type_header([("trace", b"x")]) is None
    assert codec.type_header(None) is None
    assert codec.type_header([("event-type", b"")]) is None
    assert codec.type_header([("event-type", b"\xff\xfe")]) == "\ufffd\ufffd"
