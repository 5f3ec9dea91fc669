"""The event catalogue: ``schemas/*.avsc`` are well formed and the dataclasses mirror them."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from bus import codec
from bus.events import EVENT_TYPES, NAMED_TYPES, Event
from bus.events.base import DestinationStatus, TransferStatus

SCHEMAS = codec.SCHEMAS_DIR
CURRENT = {p.stem: json.loads(p.read_text()) for p in SCHEMAS.glob("*.avsc") if "@" not in p.stem}
RECORDS = {name: s for name, s in CURRENT.items() if s["type"] == "record"}
ENUMS = {name: s for name, s in CURRENT.items() if s["type"] == "enum"}
CLASSES: Mapping[str, type] = {**NAMED_TYPES, **EVENT_TYPES}
PRIMITIVES = {"string": str, "int": int, "long": int, "boolean": bool, "double": float}
PRIMITIVES |= {"float": float, "bytes": bytes}


def _fullname(schema: Mapping[str, Any]) -> str:
    return f"{schema['namespace']}.{schema['name']}"


def expected_hint(avro: Any) -> Any:
    """The Python type a dataclass field must have for an Avro field type."""
    if isinstance(avro, list):
        assert avro[0] == "null", f"only [null, X] unions: {avro}"
        assert len(avro) == 2, f"only [null, X] unions: {avro}"
        return expected_hint(avro[1]) | None
    if isinstance(avro, str):
        return PRIMITIVES[avro] if avro in PRIMITIVES else CLASSES[avro]
    if avro.get("logicalType") == "timestamp-micros":
        assert avro["type"] == "long"
        return datetime
    if avro.get("logicalType") == "uuid":
        return str
    if avro["type"] == "array":
        return tuple[expected_hint(avro["items"]), ...]  # type: ignore[misc]
    if avro["type"] == "map":
        return Mapping[str, expected_hint(avro["values"])]  # type: ignore[misc]
    raise AssertionError(f"unexpected inline type {avro}")


def expected_default(avro: Any, default: Any) -> Any:
    """The Python default a dataclass field must have for an Avro default."""
    if isinstance(avro, dict) and avro["type"] == "array":
        return ()
    if isinstance(avro, str) and avro in ENUMS:
        return CLASSES[avro](default)
    return default


def test_every_schema_file_is_named_by_its_full_name() -> None:
    """Each current .avsc file is ``<namespace>.<name>.avsc`` and declares a namespace."""
    assert CURRENT
    for stem, schema in CURRENT.items():
        assert "namespace" in schema
        assert stem == _fullname(schema)


def test_every_schema_has_a_class_and_every_class_a_schema() -> None:
    """Records and enums of schemas/ and the Python classes are the same set of names."""
    assert set(CURRENT) == set(CLASSES)
    for name, cls in CLASSES.items():
        if dataclasses.is_dataclass(cls):
            assert name == cls.AVRO_NAME  # type: ignore[attr-defined]


def test_events_carry_the_envelope_first_and_a_doc() -> None:
    """Every event schema starts with the ecpds.Envelope field and says what it means."""
    for name in EVENT_TYPES:
        schema = RECORDS[name]
        assert schema["fields"][0] == {"name": "envelope", "type": "ecpds.Envelope"}
        assert schema.get("doc"), name
        assert issubclass(EVENT_TYPES[name], Event)


def test_envelope_fields() -> None:
    """The envelope has the ids, UTC micros time and source every event needs."""
    fields = {f["name"]: f for f in RECORDS["ecpds.Envelope"]["fields"]}
    assert fields["event_id"]["type"] == {"type": "string", "logicalType": "uuid"}
    assert fields["occurred_at"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert fields["causation_id"]["type"] == ["null", "string"]
    assert {"source", "correlation_id"} <= set(fields)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_dataclass_mirrors_record(name: str) -> None:
    """Field names, order, types and defaults of a class are those of its record schema."""
    cls = CLASSES[name]
    schema = RECORDS[name]
    assert dataclasses.is_dataclass(cls)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    hints = typing.get_type_hints(cls)
    py_fields = dataclasses.fields(cls)
    assert [f.name for f in py_fields] == [f["name"] for f in schema["fields"]]
    for field, avro in zip(py_fields, schema["fields"], strict=True):
        assert hints[field.name] == expected_hint(avro["type"]), f"{name}.{field.name}"
        if "default" in avro:
            if field.default_factory is not dataclasses.MISSING:
                actual = field.default_factory()
            else:
                actual = field.default
            assert actual == expected_default(avro["type"], avro["default"]), field.name
        else:
            assert field.default is dataclasses.MISSING, f"{name}.{field.name}"
            assert field.default_factory is dataclasses.MISSING, f"{name}.{field.name}"


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_enum_mirrors_schema(name: str) -> None:
    """A StrEnum has exactly the symbols of its Avro enum, each its own value."""
    cls = CLASSES[name]
    assert issubclass(cls, StrEnum)
    assert [m.value for m in cls] == ENUMS[name]["symbols"]
    assert [m.name for m in cls] == ENUMS[name]["symbols"]


def test_optional_fields_default_to_null() -> None:
    """Every nullable field defaults to null, so adding one is a compatible change."""
    for name, schema in RECORDS.items():
        for field in schema["fields"]:
            if isinstance(field["type"], list):
                assert field.get("default", "missing") is None, f"{name}.{field['name']}"


def test_status_codes_are_openecpds_codes() -> None:
    """Transfer and destination statuses keep OpenECPDS's codes."""
    assert {s.value for s in TransferStatus} == {
        "INIT",
        "SCHE",
        "FETC",
        "HOLD",
        "WAIT",
        "EXEC",
        "DONE",
        "RETR",
        "STOP",
        "FAIL",
        "INTR",
    }
    assert {s.value for s in DestinationStatus} == {
        "INIT",
        "EXEC",
        "SCHE",
        "FAIL",
        "INTR",
        "WAIT",
        "DONE",
        "RETR",
        "RSTR",
        "STOP",
        "HOLD",
        "IDLE",
    }


def _walk_fields(schema: Any, path: str) -> typing.Iterator[tuple[str, Any]]:
    for field in schema.get("fields", ()):
        yield f"{path}.{field['name']}", field["type"]


def test_no_secret_in_clear() -> None:
    """Passwords only appear as encrypted hashes (or the clear hash field old events carry),
    credentials only as encrypted secrets."""
    for name, schema in RECORDS.items():
        for path, avro in _walk_fields(schema, name):
            leaf = path.rsplit(".", 1)[1]
            if "password" in leaf:
                assert leaf in ("password_hash", "password_secret"), path
            if leaf == "password_secret":
                assert avro == ["null", "ecpds.config.EncryptedSecret"], path
            if leaf in ("credentials", "secret", "passwd", "private_key"):
                assert avro == ["null", "ecpds.config.EncryptedSecret"], path
    secret = {f["name"]: f["type"] for f in RECORDS["ecpds.config.EncryptedSecret"]["fields"]}
    assert secret["ciphertext"] == "bytes"


def test_times_are_timestamp_micros() -> None:
    """Fields named like times are timestamp-micros; durations are long milliseconds."""
    for name, schema in RECORDS.items():
        for path, avro in _walk_fields(schema, name):
            leaf = path.rsplit(".", 1)[1]
            inner = avro[1] if isinstance(avro, list) else avro
            if leaf.endswith(("_time", "_at")) or leaf == "origin_timestamp":
                assert inner == {"type": "long", "logicalType": "timestamp-micros"}, path
            if leaf.endswith("_ms"):
                assert inner == "long", path


def test_readme_catalogue_lists_every_event() -> None:
    """schemas/README.md has a catalogue row for every event type, and no stale one."""
    readme = (SCHEMAS / "README.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`")
        for line in readme.splitlines()
        if line.startswith("| `ecpds.")
    }
    assert rows == set(EVENT_TYPES)


def test_fingerprints_are_unique_and_cover_every_event() -> None:
    """Every event type has exactly one current schema version with its own fingerprint."""
    current = [v for v in codec.CATALOGUE.versions.values() if v.current]
    assert sorted(v.name for v in current) == sorted(EVENT_TYPES)


def test_schemas_package_ships_the_files() -> None:
    """The schemas directory is the ``schemas`` package, so installed copies find it."""
    import schemas

    assert Path(schemas.__file__).parent == SCHEMAS
    assert len(list(SCHEMAS.glob("*.avsc"))) >= len(EVENT_TYPES)
