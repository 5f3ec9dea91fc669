"""Validation of configuration entities: a bad value is refused, naming the field and why.

``validate(entity)`` checks one entity on its own; ``validate_against(view, entity)`` checks its
references against a configuration view (destinations, hosts, transfer groups and users it
names must exist there). Both raise ``ConfigurationError(field, reason)`` with ``field`` like
``destination.max_connections``. The rules follow OpenECPDS (ECPDS-REFERENCE.md §2.1, §2.5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Protocol

from bus.config import KNOWN_SCHEMES, Entity
from bus.config.secrets import is_argon2_hash
from bus.errors import ConfigurationError
from bus.events.base import Compression
from bus.events.config import (
    Association,
    DataUser,
    DeleteFromSpool,
    Destination,
    DestinationType,
    Host,
    HostType,
    IfTargetExists,
    MqttSettings,
    OnHostFailure,
    Policy,
    PortalOperation,
    PortalService,
    TimeWindow,
    TransferGroup,
)
from bus.templates import directory
from bus.templates.lexer import TemplateError
from bus.templates.requeueon import compile_rule
from bus.topics import DEFAULT_TRANSFER_GROUP

# OpenECPDS DES_NAME: letters/digits with single - or _ separators, at most 32 characters
NAME = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
NAME_MAX = 32
HOST_ID = re.compile(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*")
LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,62}[A-Za-z0-9])?")
COUNTRY = re.compile(r"[A-Za-z]{2}")
PROPERTY_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(?:\.[A-Za-z][A-Za-z0-9_-]*)*")
OPTION_KEY = re.compile(r"(?:[a-z][a-z0-9]*\.)?[A-Za-z][A-Za-z0-9_]*")
NETWORK_CODES = frozenset({"I", "R", "LL", "L", "E"})  # Internet, RMDCN, Leased Line, LAN, ECaccess
SSH_KEY = re.compile(
    r"(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp(?:256|384|521)|sk-[a-z0-9@.-]+)"
    r" [A-Za-z0-9+/]+={0,3}(?: .*)?"
)
ASSOCIATED_HOST_TYPES = frozenset({HostType.DISSEMINATION, HostType.ACQUISITION, HostType.PROXY})
MINUTES_PER_DAY = 1440


class References(Protocol):
    """What cross-entity checks look up (a ``ConfigView`` is one)."""

    @property
    def destinations(self) -> Mapping[str, Destination]: ...
    @property
    def hosts(self) -> Mapping[str, Host]: ...
    @property
    def transfer_groups(self) -> Mapping[str, TransferGroup]: ...
    @property
    def users(self) -> Mapping[str, DataUser]: ...


def refuse(field: str, reason: str) -> ConfigurationError:
    """The error for a refused value (raise it)."""
    return ConfigurationError(field, reason)


def _name(field: str, value: str, limit: int = NAME_MAX, pattern: re.Pattern[str] = NAME) -> None:
    if not value:
        raise refuse(field, "must not be empty")
    if len(value) > limit:
        raise refuse(field, f"at most {limit} characters, got {len(value)}")
    if not pattern.fullmatch(value):
        raise refuse(field, f"{value!r}: use letters and digits, with single - or _ between them")


def _positive(field: str, value: int) -> None:
    if value <= 0:
        raise refuse(field, f"must be greater than 0, got {value}")


def _at_least(field: str, value: int, low: int) -> None:
    if value < low:
        raise refuse(field, f"must be at least {low}, got {value}")


def _optional_positive(field: str, value: int | None) -> None:
    if value is not None:
        _positive(field, value)


def _connections(field: str, value: int) -> None:
    if value == 0:
        raise refuse(field, "0 would never transfer: use a positive number, or < 0 for unlimited")


def _retry_count(field: str, value: int) -> None:
    if value < -1:
        raise refuse(field, f"must be -1 (infinite) or at least 0, got {value}")


def _country(field: str, value: str | None) -> None:
    if value is not None and not COUNTRY.fullmatch(value):
        raise refuse(field, f"must be a two-letter ISO 3166 code, got {value!r}")


def _properties(field: str, values: Mapping[str, str], pattern: re.Pattern[str]) -> None:
    for key in values:
        if not pattern.fullmatch(key):
            raise refuse(f"{field}.{key}", "keys are 'key' or 'module.key' (letters, digits, _)")


# e-mail notifications (consumers/mailer, ECPDS-REFERENCE §2.5 "Email"): the only mail.* keys
DESTINATION_MAIL_KEYS = frozenset(
    {"mail.to", "mail.onStart", "mail.onEnd", "mail.onError", "mail.onUpdate"}
)
HOST_MAIL_KEYS = frozenset({"mail.to", "mail.onSuccess", "mail.onError", "mail.notifyOnce"})
MAIL_TRUE = frozenset({"yes", "true"})
MAIL_FLAGS = MAIL_TRUE | {"no", "false"}
MAIL_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)


def mail_addresses(value: str) -> tuple[str, ...]:
    """The addresses of a comma-separated ``mail.to`` value (blanks between commas dropped)."""
    return tuple(a for a in (part.strip() for part in value.split(",")) if a)


def _duplicates(properties: Mapping[str, str]) -> None:
    """The duplicate rule (``scheduler.requeueon``, refused with the column of the error) and
    its target regexes."""
    rule = properties.get("scheduler.requeueon")
    if rule is not None:
        compile_rule(rule)
    for key in ("scheduler.requeuepattern", "scheduler.requeueignore"):
        pattern = properties.get(key)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise refuse(f"destination.properties.{key}", f"not a regex: {error}") from None


def _mail(field: str, values: Mapping[str, str], known: frozenset[str]) -> None:
    for key, value in values.items():
        if not key.startswith("mail."):
            continue
        where = f"{field}.{key}"
        if key not in known:
            raise refuse(where, f"unknown mail key: use {', '.join(sorted(known))}")
        if key == "mail.to":
            addresses = mail_addresses(value)
            if not addresses:
                raise refuse(where, "must list at least one e-mail address")
            for address in addresses:
                if not MAIL_ADDRESS.fullmatch(address):
                    raise refuse(where, f"{address!r} is not an e-mail address (name@domain)")
        elif value.strip().lower() not in MAIL_FLAGS:
            raise refuse(where, f"must be yes, no, true or false, got {value!r}")


def _enum(field: str, value: object, kind: type[StrEnum]) -> None:
    if not isinstance(value, kind):
        raise refuse(field, f"must be one of {', '.join(m.value for m in kind)}, got {value!r}")


def _windows(windows: Iterable[TimeWindow]) -> None:
    for index, window in enumerate(windows):
        field = f"destination.active_windows[{index}]"
        for name in ("start_minute", "end_minute"):
            minute = getattr(window, name)
            if not 0 <= minute < MINUTES_PER_DAY:
                raise refuse(f"{field}.{name}", f"minutes after midnight 0-1439, got {minute}")
        if window.start_minute == window.end_minute:
            raise refuse(field, "start and end are the same minute: the window would be empty")
        bad = [d for d in window.weekdays if not 1 <= d <= 7]
        if bad:
            raise refuse(f"{field}.weekdays", f"ISO weekdays 1 (Monday) to 7, got {bad}")
        if len(set(window.weekdays)) != len(window.weekdays):
            raise refuse(f"{field}.weekdays", "a weekday is listed twice")


def _mqtt(mqtt: MqttSettings) -> None:
    if mqtt.qos not in (0, 1, 2):
        raise refuse("destination.mqtt.qos", f"must be 0, 1 or 2, got {mqtt.qos}")
    if mqtt.topic is not None:
        if not mqtt.topic:
            raise refuse("destination.mqtt.topic", "must not be empty (omit it for the default)")
        if "+" in mqtt.topic or "#" in mqtt.topic:
            raise refuse("destination.mqtt.topic", "wildcards + and # are not allowed to publish")
        if "\x00" in mqtt.topic or len(mqtt.topic.encode()) > 65535:
            raise refuse("destination.mqtt.topic", "not a valid MQTT topic name")
    _optional_positive("destination.mqtt.expiry_interval_ms", mqtt.expiry_interval_ms)


def validate_destination(d: Destination) -> None:
    """Refuse a destination with a bad value."""
    _name("destination.name", d.name)
    _enum("destination.type", d.type, DestinationType)
    _name("destination.transfer_group", d.transfer_group)
    _country("destination.country", d.country)
    _connections("destination.max_connections", d.max_connections)
    _retry_count("destination.retry_count", d.retry_count)
    _positive("destination.retry_frequency_ms", d.retry_frequency_ms)
    _at_least("destination.max_start", d.max_start, 1)
    _positive("destination.start_frequency_ms", d.start_frequency_ms)
    _at_least("destination.max_requeue", d.max_requeue, 0)
    _at_least("destination.max_pending", d.max_pending, 1)
    _optional_positive("destination.max_file_size", d.max_file_size)
    _enum("destination.on_host_failure", d.on_host_failure, OnHostFailure)
    _positive("destination.reset_frequency_ms", d.reset_frequency_ms)
    _optional_positive("destination.max_inactivity_ms", d.max_inactivity_ms)
    _enum("destination.if_target_exists", d.if_target_exists, IfTargetExists)
    _enum("destination.delete_from_spool", d.delete_from_spool, DeleteFromSpool)
    _enum("destination.compression", d.compression, Compression)
    _windows(d.active_windows)
    _positive("destination.default_lifetime_ms", d.default_lifetime_ms)
    seen: set[str] = set()
    for index, alias in enumerate(d.aliases):
        field = f"destination.aliases[{index}]"
        _name(f"{field}.destination", alias.destination)
        if alias.destination == d.name:
            raise refuse(f"{field}.destination", "a destination cannot be its own alias")
        if alias.destination in seen:
            raise refuse(f"{field}.destination", f"{alias.destination} is aliased twice")
        seen.add(alias.destination)
        if alias.pattern is not None:
            try:
                re.compile(alias.pattern)
            except re.error as error:
                raise refuse(
                    f"{field}.pattern", f"not a valid regular expression: {error}"
                ) from None
    if d.mqtt is not None:
        _mqtt(d.mqtt)
    if d.source_host is not None:
        _name("destination.source_host", d.source_host, 64, HOST_ID)
    if not d.date_format:
        raise refuse("destination.date_format", "must not be empty")
    _properties("destination.properties", d.properties, PROPERTY_KEY)
    _mail("destination.properties", d.properties, DESTINATION_MAIL_KEYS)
    _duplicates(d.properties)


def validate_host(h: Host) -> None:
    """Refuse a host with a bad value."""
    _name("host.id", h.id, 64, HOST_ID)
    if not h.nickname.strip() or len(h.nickname) > 64 or not h.nickname.isprintable():
        raise refuse("host.nickname", "1 to 64 printable characters")
    _enum("host.type", h.type, HostType)
    if h.protocol not in KNOWN_SCHEMES:
        raise refuse("host.protocol", f"{h.protocol!r} is not one of {', '.join(KNOWN_SCHEMES)}")
    if not h.address.strip() or any(c.isspace() for c in h.address):
        raise refuse("host.address", "must be a non-empty host[:port] (or bucket) without spaces")
    if h.login is not None and (not h.login or any(c.isspace() for c in h.login)):
        raise refuse("host.login", "must be non-empty and without spaces (omit it for none)")
    _options(h)
    _connections("host.max_connections", h.max_connections)
    _retry_count("host.retry_count", h.retry_count)
    _positive("host.retry_frequency_ms", h.retry_frequency_ms)
    if h.type is HostType.ACQUISITION and h.polling_frequency_ms is None:
        raise refuse("host.polling_frequency_ms", "required for an acquisition host")
    _optional_positive("host.polling_frequency_ms", h.polling_frequency_ms)
    if h.transfer_group is not None:
        _name("host.transfer_group", h.transfer_group)
    if h.network_code is not None and h.network_code not in NETWORK_CODES:
        raise refuse("host.network_code", f"one of {', '.join(sorted(NETWORK_CODES))}")
    _directory(h)


def _options(h: Host) -> None:
    _properties("host.options", h.options, OPTION_KEY)
    _mail("host.options", h.options, HOST_MAIL_KEYS)


def _directory(h: Host) -> None:
    if h.type is not HostType.DISSEMINATION or not h.directory:
        return
    try:
        directory.parse(h.directory)
    except TemplateError as error:
        # TemplateError is a ConfigurationError whose reason already says line and column
        reason = getattr(error, "reason", None) or str(error)
        position = getattr(error, "position", None)
        where = f" (at position {position})" if position is not None else ""
        raise refuse("host.directory", f"{reason}{where}") from error


def validate_association(a: Association) -> None:
    """Refuse an association with a bad value."""
    _name("association.destination", a.destination)
    _name("association.host", a.host, 64, HOST_ID)
    _at_least("association.priority", a.priority, 0)


def validate_transfer_group(g: TransferGroup) -> None:
    """Refuse a transfer group with a bad value."""
    _name("transfer_group.name", g.name)
    if g.region is not None and not g.region.strip():
        raise refuse("transfer_group.region", "must not be empty (omit it for none)")
    for index, store in enumerate(g.stores):
        _name(f"transfer_group.stores[{index}]", store, 64)
    if len(set(g.stores)) != len(g.stores):
        raise refuse("transfer_group.stores", "a store is listed twice")
    if g.backup_host is not None:
        _name("transfer_group.backup_host", g.backup_host, 64, HOST_ID)
    if g.backup and g.backup_host is None:
        raise refuse("transfer_group.backup_host", "required when backup is on")
    _at_least("transfer_group.min_replication_count", g.min_replication_count, 0)
    if g.replicate and len(g.stores) < 2:
        raise refuse("transfer_group.stores", "replication needs at least two stores")


def validate_data_user(u: DataUser) -> None:
    """Refuse a data user with a bad value (a clear password in ``password_hash`` above all)."""
    _name("data_user.login", u.login, 64, LOGIN)
    if u.password_hash is not None and not is_argon2_hash(u.password_hash):
        raise refuse("data_user.password_hash", "must be an argon2 hash, never a clear password")
    for index, key in enumerate(u.ssh_authorized_keys):
        if not SSH_KEY.fullmatch(key.strip()):
            raise refuse(
                f"data_user.ssh_authorized_keys[{index}]", "not an OpenSSH public key line"
            )
    for index, name in enumerate(u.destinations):
        _name(f"data_user.destinations[{index}]", name)
    for op in u.operations:
        _enum("data_user.operations", op, PortalOperation)
    if len(set(u.operations)) != len(u.operations):
        raise refuse("data_user.operations", "an operation is listed twice")
    _enum("data_user.portal_service", u.portal_service, PortalService)
    _country("data_user.country", u.country)
    _properties("data_user.properties", u.properties, PROPERTY_KEY)


def validate_policy(p: Policy) -> None:
    """Refuse a policy with a bad value."""
    _name("policy.id", p.id, 64)
    for index, name in enumerate(p.destinations):
        _name(f"policy.destinations[{index}]", name)
    for index, login in enumerate(p.users):
        _name(f"policy.users[{index}]", login, 64, LOGIN)
    _properties("policy.properties", p.properties, PROPERTY_KEY)


def validate(entity: Entity) -> None:
    """Refuse an entity with a bad value (``ConfigurationError`` naming the field)."""
    if isinstance(entity, Destination):
        validate_destination(entity)
    elif isinstance(entity, Host):
        validate_host(entity)
    elif isinstance(entity, Association):
        validate_association(entity)
    elif isinstance(entity, TransferGroup):
        validate_transfer_group(entity)
    elif isinstance(entity, DataUser):
        validate_data_user(entity)
    else:
        validate_policy(entity)


def _exists(field: str, name: str, known: Mapping[str, object], what: str) -> None:
    if name not in known:
        raise refuse(field, f"no {what} named {name!r}")


def _group(field: str, name: str | None, view: References) -> None:
    if name is not None and name != DEFAULT_TRANSFER_GROUP:
        _exists(field, name, view.transfer_groups, "transfer group")


def validate_against(view: References, entity: Entity) -> None:
    """Refuse an entity whose references are not in ``view``."""
    if isinstance(entity, Destination):
        _group("destination.transfer_group", entity.transfer_group, view)
        for index, alias in enumerate(entity.aliases):
            field = f"destination.aliases[{index}].destination"
            _exists(field, alias.destination, view.destinations, "destination")
        if entity.source_host is not None:
            _exists("destination.source_host", entity.source_host, view.hosts, "host")
    elif isinstance(entity, Host):
        _group("host.transfer_group", entity.transfer_group, view)
    elif isinstance(entity, Association):
        _exists("association.destination", entity.destination, view.destinations, "destination")
        _exists("association.host", entity.host, view.hosts, "host")
        host = view.hosts[entity.host]
        if host.type not in ASSOCIATED_HOST_TYPES:
            raise refuse(
                "association.host",
                f"{host.id} is a {host.type.value} host: only dissemination, acquisition and "
                "proxy hosts are associated with destinations",
            )
    elif isinstance(entity, TransferGroup):
        if entity.backup_host is not None:
            _exists("transfer_group.backup_host", entity.backup_host, view.hosts, "host")
    elif isinstance(entity, DataUser):
        for index, name in enumerate(entity.destinations):
            field = f"data_user.destinations[{index}]"
            _exists(field, name, view.destinations, "destination")
    else:
        for index, name in enumerate(entity.destinations):
            _exists(f"policy.destinations[{index}]", name, view.destinations, "destination")
        for index, login in enumerate(entity.users):
            _exists(f"policy.users[{index}]", login, view.users, "data user")
