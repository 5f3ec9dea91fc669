"""Configuration as code: a YAML document <-> configuration entities.

The document has one list per kind: ``transfer_groups``, ``hosts``, ``destinations``,
``associations``, ``users``, ``policies``; each item is an entity's fields by name. Friendlier
forms are accepted: durations for ``*_ms`` fields under their short name (``retry_frequency:
30s``), sizes (``max_file_size: 10MB``), enum values in any case, windows as ``"06:00-18:00"``,
an alias as a bare destination name. Secrets: a host's ``password:`` and a user's
``password:`` are clear in the FILE only — they are held as ``ClearSecret`` and encrypted or
hashed before any event carries them (``bus.config.apply``). ``export`` writes only fields that
differ from their defaults, never a clear secret nor a password hash (host credentials appear
as ``credentials: {encrypted: <key_id>}``, a user's hash as ``password_secret: {encrypted:
<key_id>}``), and applying what it wrote keeps the stored secrets (``bus.config.apply``).

Refusals speak the file's language: every problem of the whole document is reported at once
(``Problems``), each named by where it is in the file as the operator wrote it
(``hosts[2].options.acquisition.fileage``, ``destinations[0].retry_frequency``; a ``*_ms``
field keeps its ``_ms`` only when the file spells it so) and its line in the file, never by a
Python name or message.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType, NoneType, UnionType
from typing import Any

import yaml

from bus.config import Entity, identity, kind_of
from bus.config.durations import format_duration, format_size, parse_duration, parse_size
from bus.config.options import suggestion
from bus.config.secrets import ClearSecret
from bus.config.validate import flatten, raise_all, validate
from bus.config.view import ConfigView
from bus.errors import ConfigurationError
from bus.events.config import (
    Alias,
    Association,
    DataUser,
    Destination,
    Host,
    Policy,
    TimeWindow,
    TransferGroup,
)
from bus.templates.lexer import TemplateError

SECTIONS: Mapping[str, tuple[str, type[Any]]] = MappingProxyType(
    {
        "transfer_groups": ("transfer_group", TransferGroup),
        "hosts": ("host", Host),
        "destinations": ("destination", Destination),
        "associations": ("association", Association),
        "users": ("data_user", DataUser),
        "policies": ("policy", Policy),
    }
)
SIZE_FIELDS = frozenset({"max_file_size"})
_WINDOW = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


@dataclass(frozen=True, slots=True)
class Document:
    """A loaded YAML document: entities (host credentials and user hashes not yet resolved)
    and the secrets given in clear, by host id and by login."""

    entities: tuple[Entity, ...]
    host_passwords: Mapping[str, ClearSecret]
    kept_credentials: frozenset[str]  # hosts written as "credentials: {encrypted: ...}"
    user_passwords: Mapping[str, ClearSecret]
    # users written as "password_secret: {encrypted: ...}" (as exported): keep the stored one
    kept_user_secrets: frozenset[str] = frozenset()
    # where each entity is in the file, by (kind, identity): "destinations[0]", for messages
    where: Mapping[tuple[str, str], str] = dataclasses.field(default_factory=dict)


def load(text: str) -> Document:
    """The entities of a YAML document, each validated on its own; ``Problems`` lists every
    problem of the document (a ``ConfigurationError`` alone when there is one)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigurationError("document", f"not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError("document", "must be a mapping of sections")
    nodes = yaml.compose(text)  # where each field is, for messages (parsed fine just above)
    problems: list[ConfigurationError] = []
    for name in sorted(set(data) - set(SECTIONS), key=str):
        hint = suggestion(str(name), SECTIONS)
        problems.append(
            ConfigurationError(f"document.{name}", f"unknown section ({', '.join(SECTIONS)}){hint}")
        )
    entities: list[Entity] = []
    places: dict[tuple[str, str], str] = {}
    host_passwords: dict[str, ClearSecret] = {}
    kept: set[str] = set()
    user_passwords: dict[str, ClearSecret] = {}
    kept_users: set[str] = set()
    for section, (prefix, cls) in SECTIONS.items():
        items = data.get(section) or []
        if not isinstance(items, list):
            problems.append(ConfigurationError(section, "must be a list"))
            continue
        for index, item in enumerate(items):
            where = f"{section}[{index}]"
            if not isinstance(item, dict):
                problems.append(ConfigurationError(where, "must be a mapping of fields"))
                continue
            item = dict(item)
            written = set(item)
            found: list[ConfigurationError] = []
            entity: Any = None
            try:
                password = _pop_password(item, prefix)
                keep = _pop_kept_credentials(item) if cls is Host else False
                keep = _pop_kept_user_secret(item) if cls is DataUser else keep
                entity, found = _from_mapping(cls, item, prefix)
                if entity is not None:
                    validate(entity)
            except ConfigurationError as error:
                # a field refused while read is not refused again for the default it fell to
                seen = {p.field for p in found}
                found += [e for e in flatten([error]) if e.field not in seen]
            if found or entity is None:
                label = _label(prefix, item)
                for e in found:
                    line = _file_line(nodes, spoken(e, prefix, where, written))
                    at = f"{label}, file line {line}" if line and label else label
                    problems.append(spoken(e, prefix, where, written, at))
                continue
            if isinstance(entity, Host):
                if password is not None:
                    host_passwords[entity.id] = password
                if keep:
                    kept.add(entity.id)
            elif isinstance(entity, DataUser):
                if password is not None:
                    user_passwords[entity.login] = password
                if keep:
                    kept_users.add(entity.login)
            entities.append(entity)
            places.setdefault((kind_of(entity), identity(entity)), where)
    problems.extend(_duplicates(entities))
    raise_all(problems)
    return Document(
        tuple(entities),
        MappingProxyType(host_passwords),
        frozenset(kept),
        MappingProxyType(user_passwords),
        frozenset(kept_users),
        MappingProxyType(places),
    )


def spoken(
    error: ConfigurationError,
    prefix: str,
    where: str,
    written: Iterable[str] = (),
    label: str = "",
) -> ConfigurationError:
    """``error`` (field ``host.retry_frequency_ms``) named as the operator wrote it
    (``hosts[0].retry_frequency``); ``label`` says which entity, ``written`` the field names
    as given (a ``*_ms`` field keeps ``_ms`` only when written so)."""
    field = error.field
    rest = field[len(prefix) :] if field == prefix or field.startswith(f"{prefix}.") else field
    rest = rest.removeprefix(".")
    # a duration is named by its short (documented) spelling, unless the file wrote _ms;
    # option and property names are the operator's own, left as they are
    written = set(written)
    if not rest.startswith(("options.", "properties.")):
        rest = re.sub(
            r"(^|\.)(\w+)_ms\b",
            lambda m: (
                m.group(0)
                if not m.group(1) and f"{m.group(2)}_ms" in written
                else f"{m.group(1)}{m.group(2)}"
            ),
            rest,
        )
    named = f"{where}.{rest}" if rest else where
    suffix = f" ({label})" if label else ""
    if isinstance(error, TemplateError):
        return TemplateError(f"{error.detail}{suffix}", error.line, error.column, field=named)
    return ConfigurationError(named, f"{error.reason}{suffix}")


def _file_line(root: Any, error: ConfigurationError) -> int | None:
    """The line of the document (``root``: its composed nodes) where the field ``error`` names
    is (1-based): its key's, or for a template error in a block scalar (``|``) the line the
    template's own line is on."""
    node, rest, line = root, error.field, None
    while node is not None and rest:
        if isinstance(node, yaml.SequenceNode):
            match = re.match(r"\[(\d+)\]\.?", rest)
            if match is None or int(match.group(1)) >= len(node.value):
                break
            node, rest = node.value[int(match.group(1))], rest[match.end() :]
            line = node.start_mark.line + 1
        elif isinstance(node, yaml.MappingNode):
            keys = [(k, v) for k, v in node.value if isinstance(k.value, str)]
            fits = [
                (k, v)
                for k, v in keys
                if rest == k.value or rest.startswith((f"{k.value}.", f"{k.value}["))
            ]
            if not fits:
                break
            key, node = max(fits, key=lambda kv: len(kv[0].value))
            line = key.start_mark.line + 1
            rest = rest[len(key.value) :].removeprefix(".")
        else:
            break
    if (
        not rest
        and isinstance(error, TemplateError)
        and isinstance(node, yaml.ScalarNode)
        and node.style in ("|", ">")
    ):
        return int(node.start_mark.line) + error.line + 1
    return line


def _label(prefix: str, item: Mapping[str, Any]) -> str:
    """``host demo-ftp``: which entity an item defines, when it says."""
    kind = prefix.replace("_", " ")
    if prefix == "association":
        return f"{kind} {item.get('destination')}/{item.get('host')}"
    for key in ("id", "name", "login"):
        if isinstance(item.get(key), str):
            return f"{kind} {item[key]}"
    return ""


def _pop_password(item: dict[str, Any], prefix: str) -> ClearSecret | None:
    if "password" not in item:
        return None
    if prefix not in ("host", "data_user"):
        raise ConfigurationError(f"{prefix}.password", "unknown field")
    value = item.pop("password")
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{prefix}.password", "must be a non-empty string")
    if "credentials" in item or "password_hash" in item or "password_secret" in item:
        raise ConfigurationError(f"{prefix}.password", "give either password or stored secret")
    return ClearSecret(value)


def _pop_kept_credentials(item: dict[str, Any]) -> bool:
    if "credentials" not in item:
        return False
    value = item.pop("credentials")
    if not isinstance(value, dict) or set(value) != {"encrypted"}:
        raise ConfigurationError(
            "host.credentials", "only 'encrypted: <key_id>' (as exported); use password: instead"
        )
    return True


def _pop_kept_user_secret(item: dict[str, Any]) -> bool:
    if "password_secret" not in item:
        return False
    value = item.pop("password_secret")
    if not isinstance(value, dict) or set(value) != {"encrypted"}:
        raise ConfigurationError(
            "data_user.password_secret",
            "only 'encrypted: <key_id>' (as exported); use password: instead",
        )
    return True


def _duplicates(entities: list[Entity]) -> list[ConfigurationError]:
    seen: set[tuple[str, str]] = set()
    problems: list[ConfigurationError] = []
    for entity in entities:
        key = (kind_of(entity), identity(entity))
        if key in seen:
            problems.append(
                ConfigurationError(key[0], f"{key[1]} is defined twice in the document")
            )
        seen.add(key)
    return problems


def assignments(items: Iterable[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` pairs (values read as YAML: ``30s``, ``10MB``, ``[a, b]``, ``yes``).
    Secrets are refused: they must not be typed where shell history and ``ps`` keep them."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigurationError("--set", f"expected FIELD=VALUE, got {item!r}")
        if name in ("password", "password_hash", "password_secret", "credentials"):
            raise ConfigurationError(name, "secrets are not set this way: use a prompt or stdin")
        try:
            out[name] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            out[name] = raw
    return out


def with_fields(entity: Entity, values: Mapping[str, Any]) -> Entity:
    """``entity`` with some fields given in document form (``retry_frequency: 2m``) replaced,
    validated; stored credentials are kept. Refusals name the fields as ``values`` wrote them."""
    prefix = {"transfer-group": "transfer_group", "data-user": "data_user"}.get(
        kind_of(entity), kind_of(entity)
    )
    fields = to_mapping(entity)
    for secret in ("credentials", "password_secret"):
        fields.pop(secret, None)
    for name, value in values.items():
        # a duration may be given by either spelling: drop the one already there
        fields.pop(f"{name}_ms", None)
        fields.pop(name.removesuffix("_ms"), None)
        fields[name] = value

    def kept(changed: Any) -> Any:
        if isinstance(entity, Host) and isinstance(changed, Host):
            return dataclasses.replace(changed, credentials=entity.credentials)
        if isinstance(entity, DataUser) and isinstance(changed, DataUser):
            return dataclasses.replace(
                changed, password_hash=entity.password_hash, password_secret=entity.password_secret
            )
        return changed

    try:
        changed: Entity = _validated(type(entity), fields, prefix, kept)
    except ConfigurationError as error:
        raise_all([spoken(e, prefix, prefix, values) for e in flatten([error])])
        raise
    return changed


def build(cls: type[Any], prefix: str, fields: Mapping[str, Any]) -> Any:
    """A new entity from fields in document form (``ecpds host add --set ...``), validated;
    refusals name the fields as written."""
    try:
        entity = _validated(cls, fields, prefix)
    except ConfigurationError as error:
        raise_all([spoken(e, prefix, prefix, fields) for e in flatten([error])])
        raise
    return entity


def _validated(
    cls: type[Any],
    fields: Mapping[str, Any],
    prefix: str,
    finish: Callable[[Any], Any] = lambda entity: entity,
) -> Any:
    """An entity from ``fields`` (then ``finish``ed), validated; every problem at once: those
    of the fields as read, then the validator's on what was read well (a field refused while
    read is not refused again for the default it fell to), as ``load`` does for a file."""
    entity, problems = _from_mapping(cls, fields, prefix)
    if entity is not None:
        entity = finish(entity)
        try:
            validate(entity)
        except ConfigurationError as error:
            seen = {p.field for p in problems}
            problems += [e for e in flatten([error]) if e.field not in seen]
    raise_all(problems)
    return entity


# --- mapping -> dataclass -------------------------------------------------------------------


def from_mapping(cls: type[Any], data: Mapping[str, Any], prefix: str) -> Any:
    """An instance of ``cls`` (a config dataclass) from its fields by name; every unknown,
    missing or malformed field is reported (``Problems``)."""
    entity, problems = _from_mapping(cls, data, prefix)
    raise_all(problems)
    return entity


def _from_mapping(
    cls: type[Any], data: Mapping[str, Any], prefix: str
) -> tuple[Any | None, list[ConfigurationError]]:
    """The instance and the problems of its fields. With problems, the instance is built from
    the good fields when no required one is missing (so it can still be validated and the
    operator hears of every problem at once), else it is None."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    remaining = dict(data)
    problems: list[ConfigurationError] = []
    spellings: list[str] = []
    complete = True
    for f in dataclasses.fields(cls):
        names = (f.name, f.name.removesuffix("_ms")) if f.name.endswith("_ms") else (f.name,)
        spellings.extend(names)
        given = [n for n in names if n in remaining]
        field = f"{prefix}.{f.name}"
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if len(given) > 1:
            problems.append(ConfigurationError(field, f"given twice ({' and '.join(given)})"))
            for n in given:
                remaining.pop(n)
            complete = complete and not required
            continue
        if not given:
            if required:
                problems.append(ConfigurationError(field, "required"))
                complete = False
            continue
        value = remaining.pop(given[0])
        try:
            if f.name.endswith("_ms") and value is not None:
                values[f.name] = parse_duration(value, field)
            elif f.name in SIZE_FIELDS and value is not None:
                values[f.name] = parse_size(value, field)
            else:
                values[f.name] = _convert(hints[f.name], value, field)
        except ConfigurationError as error:
            problems.extend(flatten([error]))
            complete = complete and not required
    for name in sorted(remaining, key=str):
        hint = suggestion(str(name), spellings)
        problems.append(ConfigurationError(f"{prefix}.{name}", f"unknown field{hint}"))
    return (cls(**values) if complete else None), problems


_Shorthand = Callable[[Any, str], Any]


def _window(value: Any, field: str) -> TimeWindow:
    if isinstance(value, str):
        value = {"window": value}
    if not isinstance(value, dict):
        raise ConfigurationError(field, "a window is 'HH:MM-HH:MM' or {window:, weekdays:}")
    value = dict(value)
    text = value.pop("window", None)
    weekdays = value.pop("weekdays", ())
    if value or not isinstance(text, str):
        raise ConfigurationError(field, "a window is 'HH:MM-HH:MM' or {window:, weekdays:}")
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise ConfigurationError(field, f"expected HH:MM-HH:MM, got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ConfigurationError(field, f"not a time of day: {text!r}")
    if not isinstance(weekdays, list | tuple):
        weekdays = [weekdays]
    days = tuple(_weekday(d, f"{field}.weekdays") for d in weekdays)
    return TimeWindow(start_minute=h1 * 60 + m1, end_minute=h2 * 60 + m2, weekdays=days)


def _weekday(value: Any, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value[:3].lower() in _WEEKDAYS:
        return _WEEKDAYS[value[:3].lower()]
    raise ConfigurationError(field, f"a weekday is 1-7 or mon..sun, got {value!r}")


_SHORTHANDS: Mapping[type, _Shorthand] = {
    TimeWindow: _window,
    Alias: lambda v, f: Alias(destination=v) if isinstance(v, str) else None,
}


def _convert(tp: Any, value: Any, field: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (UnionType, typing.Union):
        if value is None:
            return None
        return _convert(next(a for a in args if a is not NoneType), value, field)
    if value is None:
        raise ConfigurationError(field, "must not be null")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigurationError(field, f"must be a string (quote it), got {value!r}")
        return value
    if tp is bool:
        return _bool(value, field)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(field, f"must be a whole number, got {value!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return _enum_value(tp, value, field)
    if origin is tuple:
        items = value if isinstance(value, list) else [value]
        return tuple(_convert(args[0], v, f"{field}[{i}]") for i, v in enumerate(items))
    if origin is not None and issubclass(origin, Mapping):
        if not isinstance(value, dict):
            raise ConfigurationError(field, "must be a mapping of key: value")
        return {str(k): _text(v, f"{field}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        shorthand = _SHORTHANDS.get(tp)  # type: ignore[arg-type]
        if shorthand is not None and (short := shorthand(value, field)) is not None:
            return short
        if not isinstance(value, dict):
            raise ConfigurationError(field, "must be a mapping of fields")
        return from_mapping(tp, value, field)  # type: ignore[arg-type]
    raise ConfigurationError(field, f"unsupported field type {tp!r}")


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ConfigurationError(field, f"must be yes/no or true/false, got {value!r}")


def _text(value: Any, field: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ConfigurationError(field, f"must be a plain value, got {value!r}")


def _enum_value(tp: type[StrEnum], value: Any, field: str) -> StrEnum:
    if isinstance(value, str):
        wanted = value.strip().upper().replace("-", "_").replace(" ", "_")
        for member in tp:
            if member.value == wanted:
                return member
    choices = ", ".join(m.value.lower() for m in tp)
    raise ConfigurationError(field, f"must be one of {choices}, got {value!r}")


# --- entities -> YAML -------------------------------------------------------------------------


def to_mapping(entity: Any) -> dict[str, Any]:
    """The fields of a config dataclass that differ from their defaults, in YAML-friendly form."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
            continue
        if f.name == "credentials":
            if value is not None:
                out["credentials"] = {"encrypted": value.key_id}
            continue
        if f.name in ("password_secret", "password_hash"):
            # a user's hash only by the id of its key (a clear one from an old event as
            # "unencrypted": applying the export, or rotate-key, encrypts it)
            if value is not None:
                key_id = value.key_id if f.name == "password_secret" else "unencrypted"
                out["password_secret"] = {"encrypted": key_id}
            continue
        if f.name.endswith("_ms") and isinstance(value, int):
            out[f.name.removesuffix("_ms")] = format_duration(value)
        elif f.name in SIZE_FIELDS and isinstance(value, int):
            out[f.name] = format_size(value)
        else:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value.lower()
    if isinstance(value, TimeWindow):
        text = f"{value.start_minute // 60:02d}:{value.start_minute % 60:02d}-"
        text += f"{value.end_minute // 60:02d}:{value.end_minute % 60:02d}"
        return {"window": text, "weekdays": list(value.weekdays)} if value.weekdays else text
    if isinstance(value, Alias) and value.pattern is None:
        return value.destination
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_mapping(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def export(view: ConfigView) -> str:
    """The whole configuration as a YAML document, without any clear secret."""
    tables: Mapping[str, Mapping[Any, Any]] = {
        "transfer_groups": view.transfer_groups,
        "hosts": view.hosts,
        "destinations": view.destinations,
        "associations": view.associations,
        "users": view.users,
        "policies": view.policies,
    }
    document = {
        section: [to_mapping(table[key]) for key in sorted(table)]
        for section, table in tables.items()
        if table
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
