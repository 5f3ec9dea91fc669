"""Validation of configuration entities: a bad value is refused, naming the field and why.

``validate(entity)`` checks one entity on its own; ``validate_against(view, entity)`` checks its
references against a configuration view (destinations, hosts, transfer groups and users it
names must exist there). Both raise ``ConfigurationError(field, reason)`` with ``field`` like
``destination.max_connections``; ``validate`` reports every problem of the entity at once
(``Problems``, a ``ConfigurationError`` listing each). The rules follow OpenECPDS
(ECPDS-REFERENCE.md §2.1, §2.5).

Everything a host or destination will be read for is compiled here, when it is defined, so a
mistake is refused by ``config apply`` rather than found at the first poll or transfer: the
Directory field (a dissemination template, acquisition listing lines with ``$date`` and
``{regex}``, or WIS2 topic filters), every option and property name (``bus.config.options``:
an unknown one is refused with the closest known name) and every value its reader parses
(date formats and deltas, size and age filters, name and metadata templates, numbers, flags,
duplicate rules). A template error names the line and column inside the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Protocol

from bus.config import KNOWN_SCHEMES, Entity, wis2
from bus.config import options as known
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
from bus.templates.listing import parse_directory
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


class Problems(ConfigurationError):
    """Several refusals at once; ``problems`` holds each (``field`` and ``reason`` are the
    first's, so a caller that shows one error still shows a true one)."""

    def __init__(self, problems: Iterable[ConfigurationError]) -> None:
        self.problems: tuple[ConfigurationError, ...] = tuple(flatten(problems))
        first = self.problems[0]
        more = len(self.problems) - 1
        reason = first.reason if not more else f"{first.reason} (and {more} more problem(s))"
        super().__init__(first.field, reason)
        self.args = ("\n".join(f"{p.field}: {p.reason}" for p in self.problems),)


def flatten(errors: Iterable[ConfigurationError]) -> list[ConfigurationError]:
    """Each single problem of ``errors`` (a ``Problems`` stands for its own)."""
    out: list[ConfigurationError] = []
    for error in errors:
        out.extend(error.problems if isinstance(error, Problems) else (error,))
    return out


def raise_all(problems: list[ConfigurationError]) -> None:
    """Raise nothing for no problem, the problem itself for one, ``Problems`` for more."""
    single = flatten(problems)
    if len(single) == 1:
        raise single[0]
    if single:
        raise Problems(single)


def check_all(*checks: Callable[[], object]) -> None:
    """Run every check, then refuse with every problem found (not only the first)."""
    problems: list[ConfigurationError] = []
    for check in checks:
        try:
            check()
        except ConfigurationError as error:
            problems.append(error)
    raise_all(problems)


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
    problems: list[ConfigurationError] = []
    for key in values:
        if not pattern.fullmatch(key):
            problems.append(
                refuse(f"{field}.{key}", "keys are 'key' or 'module.key' (letters, digits, _)")
            )
    raise_all(problems)


# e-mail notifications (consumers/mailer, ECPDS-REFERENCE §2.5 "Email"): the only mail.* keys
DESTINATION_MAIL_KEYS = frozenset(known.DESTINATION_MAIL)
HOST_MAIL_KEYS = frozenset(known.HOST_MAIL)
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
    check_all(
        *(
            _bound(_mail_key, f"{field}.{key}", key, value, known)
            for key, value in values.items()
            if key.startswith("mail.")
        )
    )


def _bound(check: Callable[..., None], *args: object) -> Callable[[], None]:
    """``check(*args)`` for later (a loop's lambda would see only its last values)."""
    return lambda: check(*args)


def _mail_key(where: str, key: str, value: str, known: frozenset[str]) -> None:
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
    """Refuse a destination with a bad value (every problem at once)."""
    check_all(
        lambda: _name("destination.name", d.name),
        lambda: _enum("destination.type", d.type, DestinationType),
        lambda: _name("destination.transfer_group", d.transfer_group),
        lambda: _country("destination.country", d.country),
        lambda: _connections("destination.max_connections", d.max_connections),
        lambda: _retry_count("destination.retry_count", d.retry_count),
        lambda: _positive("destination.retry_frequency_ms", d.retry_frequency_ms),
        lambda: _at_least("destination.max_start", d.max_start, 1),
        lambda: _positive("destination.start_frequency_ms", d.start_frequency_ms),
        lambda: _at_least("destination.max_requeue", d.max_requeue, 0),
        lambda: _at_least("destination.max_pending", d.max_pending, 1),
        lambda: _optional_positive("destination.max_file_size", d.max_file_size),
        lambda: _enum("destination.on_host_failure", d.on_host_failure, OnHostFailure),
        lambda: _positive("destination.reset_frequency_ms", d.reset_frequency_ms),
        lambda: _optional_positive("destination.max_inactivity_ms", d.max_inactivity_ms),
        lambda: _enum("destination.if_target_exists", d.if_target_exists, IfTargetExists),
        lambda: _enum("destination.delete_from_spool", d.delete_from_spool, DeleteFromSpool),
        lambda: _enum("destination.compression", d.compression, Compression),
        lambda: _windows(d.active_windows),
        lambda: _positive("destination.default_lifetime_ms", d.default_lifetime_ms),
        lambda: _aliases(d),
        lambda: _mqtt(d.mqtt) if d.mqtt is not None else None,
        lambda: _source_host(d.source_host),
        lambda: _date_format("destination.date_format", d.date_format),
        lambda: _destination_properties(d.properties),
    )


def _aliases(d: Destination) -> None:
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


def _source_host(name: str | None) -> None:
    if name is not None:
        _name("destination.source_host", name, 64, HOST_ID)


def _date_format(field: str, value: str) -> None:
    if not value:
        raise refuse(field, "must not be empty")
    known.date_format(value, field)


def _destination_properties(properties: Mapping[str, str]) -> None:
    field = "destination.properties"
    _properties(field, properties, PROPERTY_KEY)
    check_all(
        lambda: _mail(field, properties, DESTINATION_MAIL_KEYS),
        lambda: _duplicates(properties),
        *(
            _bound(_destination_property, key, value)
            for key, value in properties.items()
            if not key.startswith("mail.") and PROPERTY_KEY.fullmatch(key)
        ),
    )


def _wis2(destination: Destination, view: References) -> None:
    """A destination's WIS2 declaration, with its transfer group's, is whole (each ``wis2.*``
    value is checked with the entity's other properties). What its group declares counts only
    for a destination that publishes WIS2 notifications (MQTT on, no static payload): the other
    destinations of the group publish nothing on WIS2."""
    own = wis2.declared(destination.properties)
    mqtt = destination.mqtt
    if not own and (mqtt is None or not mqtt.publish or mqtt.payload is not None):
        return
    declared = wis2.declaration_for(destination, view.transfer_groups)
    for key in wis2.missing(declared):
        if own:
            why = "required with any other wis2.* property"
        else:
            group = destination.transfer_group
            why = f"required: its transfer group {group} declares wis2.* without it"
        raise refuse(f"destination.properties.{key}", why)


def _group_properties(properties: Mapping[str, str]) -> None:
    """A transfer group's properties are ``wis2.*`` ones only, each value checked."""
    for key, value in properties.items():
        field = f"transfer_group.properties.{key}"
        check = wis2.CHECKS.get(key)
        if check is None:
            known = ", ".join(sorted(wis2.CHECKS))
            raise refuse(field, f"not a transfer group property (known: {known})")
        try:
            check(value, field)
        except ConfigurationError as error:
            raise refuse(field, error.reason) from None


def _destination_property(key: str, value: str) -> None:
    _prefixed("destination.", lambda: known.destination_property(key)(value, f"properties.{key}"))


def _prefixed(prefix: str, check: Callable[[], object]) -> None:
    """Run ``check``; its error's field (``options.KEY``) gets the entity's ``prefix``."""
    try:
        check()
    except TemplateError as error:
        raise TemplateError(
            error.detail, error.line, error.column, field=f"{prefix}{error.field}"
        ) from None
    except ConfigurationError as error:
        raise refuse(f"{prefix}{error.field}", error.reason) from None


def validate_host(h: Host) -> None:
    """Refuse a host with a bad value (every problem at once)."""
    check_all(
        lambda: _name("host.id", h.id, 64, HOST_ID),
        lambda: _nickname(h.nickname),
        lambda: _enum("host.type", h.type, HostType),
        lambda: _protocol(h.protocol),
        lambda: _address(h.address),
        lambda: _login(h.login),
        lambda: _options(h),
        lambda: _connections("host.max_connections", h.max_connections),
        lambda: _retry_count("host.retry_count", h.retry_count),
        lambda: _positive("host.retry_frequency_ms", h.retry_frequency_ms),
        lambda: _polling(h),
        lambda: (
            _name("host.transfer_group", h.transfer_group) if h.transfer_group is not None else None
        ),
        lambda: _network_code(h.network_code),
        lambda: _directory(h),
    )


def _nickname(nickname: str) -> None:
    if not nickname.strip() or len(nickname) > 64 or not nickname.isprintable():
        raise refuse("host.nickname", "1 to 64 printable characters")


def _protocol(protocol: str) -> None:
    if protocol not in KNOWN_SCHEMES:
        raise refuse("host.protocol", f"{protocol!r} is not one of {', '.join(KNOWN_SCHEMES)}")


def _address(address: str) -> None:
    if not address.strip() or any(c.isspace() for c in address):
        raise refuse("host.address", "must be a non-empty host[:port] (or bucket) without spaces")


def _login(login: str | None) -> None:
    if login is not None and (not login or any(c.isspace() for c in login)):
        raise refuse("host.login", "must be non-empty and without spaces (omit it for none)")


def _polling(h: Host) -> None:
    # a WIS2 host is not polled: notifications come as they are published
    if (
        h.type is HostType.ACQUISITION
        and h.polling_frequency_ms is None
        and not known.is_wis2(h.options)
    ):
        raise refuse("host.polling_frequency_ms", "required for an acquisition host")
    _optional_positive("host.polling_frequency_ms", h.polling_frequency_ms)


def _network_code(code: str | None) -> None:
    if code is not None and code not in NETWORK_CODES:
        raise refuse("host.network_code", f"one of {', '.join(sorted(NETWORK_CODES))}")


def _options(h: Host) -> None:
    _properties("host.options", h.options, OPTION_KEY)
    acquisition = h.type is HostType.ACQUISITION
    check_all(
        lambda: _mail("host.options", h.options, HOST_MAIL_KEYS),
        lambda: _requeue_rule(h.options) if acquisition else None,
        *(
            _bound(_host_option, h.protocol, key, value, acquisition)
            for key, value in h.options.items()
            # the mail rules say what is wrong with mail keys, the pattern with malformed ones
            if not key.startswith("mail.") and OPTION_KEY.fullmatch(key)
        ),
    )


# the acquisition stage takes the first of these it finds set; two set would be a silent choice
REQUEUE_RULES = (
    ("acquisition.uniqueByNameAndTime", True),
    ("acquisition.requeueonsamesize", True),
    ("acquisition.requeueonupdate", False),
)


def _requeue_rule(options: Mapping[str, str]) -> None:
    lowered = {k.lower(): v.strip().lower() for k, v in options.items()}
    chosen = [
        f"{key}={'yes' if wanted else 'no'}"
        for key, wanted in REQUEUE_RULES
        if key.lower() in lowered and (lowered[key.lower()] in known.TRUE) is wanted
    ]
    if len(chosen) > 1:
        raise refuse(
            f"host.options.{chosen[1].partition('=')[0]}",
            f"{' and '.join(chosen)} are two requeue rules: choose one",
        )


def _host_option(protocol: str, key: str, value: str, acquisition: bool) -> None:
    if protocol not in KNOWN_SCHEMES:
        return  # refused as host.protocol: which options it takes is unknown
    check = lambda: known.host_option(protocol, key, acquisition=acquisition)(  # noqa: E731
        value, f"options.{key}"
    )
    _prefixed("host.", check)


def _directory(h: Host) -> None:
    if h.type is HostType.DISSEMINATION:
        if h.directory:
            _template("host.directory", lambda: directory.parse(h.directory))
    elif h.type is HostType.ACQUISITION:
        if known.is_wis2(h.options):
            _topic_filters(h.directory)
        else:
            _template("host.directory", lambda: _listing(h.directory))


def _template(field: str, parse: Callable[[], object]) -> None:
    """Run a template parser; its error is refused on ``field``, with its line and column."""
    try:
        parse()
    except TemplateError as error:
        raise TemplateError(error.detail, error.line, error.column, field=field) from None


def _listing(text: str) -> None:
    """Compile acquisition listing lines and check each line's ``[key=value]`` options."""
    problems: list[ConfigurationError] = []
    lines = text.splitlines()
    for spec in parse_directory(text):
        raw = lines[spec.line - 1]
        for key, value in spec.options.items():
            column = raw.find(key, raw.find("[")) + 1
            option = known.line_option(key)
            if option is None:
                names = known.line_option_names()
                detail = f"unknown line option {key!r}{known.suggestion(key, names)}"
            else:
                try:
                    option.check(value, key)
                    continue
                except TemplateError as error:
                    detail = f"option {key}: {error.detail}"
                except ConfigurationError as error:
                    detail = f"option {key}: {error.reason}"
            problems.append(TemplateError(detail, spec.line, column, field="host.directory"))
    raise_all(problems)


def _topic_filters(text: str) -> None:
    """A WIS2 host's Directory: one MQTT topic filter per line (``#`` comments skipped)."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line == "#" or line.startswith("# "):
            continue
        levels = line.split("/")
        for index, level in enumerate(levels):
            bad = ("#" in level and (level != "#" or index != len(levels) - 1)) or (
                "+" in level and level != "+"
            )
            if bad:
                column = len(raw) - len(raw.lstrip()) + len("/".join(levels[:index])) + 1
                raise TemplateError(
                    "a topic filter takes + as a whole level and # as the last level only",
                    number,
                    column + (1 if index else 0),
                    field="host.directory",
                )
    if not any(
        line.strip() and not line.strip().startswith("# ") and line.strip() != "#"
        for line in text.splitlines()
    ):
        raise refuse("host.directory", "a WIS2 host needs at least one topic filter")


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
    if g.replica_store is not None:  # a store host id, like the ``stores`` entries
        _name("transfer_group.replica_store", g.replica_store, 64, HOST_ID)
    if g.fallback_group is not None:
        _name("transfer_group.fallback_group", g.fallback_group)
        if g.fallback_group == g.name:
            raise refuse("transfer_group.fallback_group", "a group cannot fall back to itself")
    _at_least("transfer_group.fallback_after", g.fallback_after, 1)
    _group_properties(g.properties)


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


def _refused(field: str, reason: str) -> None:
    raise refuse(field, reason)


def _exists(field: str, name: str, known: Mapping[str, object], what: str) -> None:
    if name not in known:
        raise refuse(field, f"no {what} named {name!r}")


def _group(field: str, name: str | None, view: References) -> None:
    if name is not None and name != DEFAULT_TRANSFER_GROUP:
        _exists(field, name, view.transfer_groups, "transfer group")


def validate_against(view: References, entity: Entity) -> None:
    """Refuse an entity whose references are not in ``view``, with every dangling reference
    at once."""
    checks: list[Callable[[], object]] = []

    def exists(field: str, name: str, known: Mapping[str, object], what: str) -> None:
        checks.append(lambda: _exists(field, name, known, what))

    if isinstance(entity, Destination):
        checks.append(lambda: _group("destination.transfer_group", entity.transfer_group, view))
        checks.append(lambda: _wis2(entity, view))
        for index, alias in enumerate(entity.aliases):
            field = f"destination.aliases[{index}].destination"
            exists(field, alias.destination, view.destinations, "destination")
        if entity.source_host is not None:
            exists("destination.source_host", entity.source_host, view.hosts, "host")
    elif isinstance(entity, Host):
        checks.append(lambda: _group("host.transfer_group", entity.transfer_group, view))
    elif isinstance(entity, Association):
        exists("association.destination", entity.destination, view.destinations, "destination")
        exists("association.host", entity.host, view.hosts, "host")
        host = view.hosts.get(entity.host)
        if host is not None and host.type not in ASSOCIATED_HOST_TYPES:
            checks.append(
                lambda: _refused(
                    "association.host",
                    f"{host.id} is a {host.type.value} host: only dissemination, acquisition"
                    " and proxy hosts are associated with destinations",
                )
            )
    elif isinstance(entity, TransferGroup):
        if entity.backup_host is not None:
            exists("transfer_group.backup_host", entity.backup_host, view.hosts, "host")
        if entity.replica_store is not None:
            exists("transfer_group.replica_store", entity.replica_store, view.hosts, "host")
        fallback = entity.fallback_group
        if fallback is not None:
            checks.append(lambda: _group("transfer_group.fallback_group", fallback, view))
            central = view.transfer_groups.get(fallback)
            if central is not None and central.fallback_group is not None:
                # one hop only: a chain (or a loop) of fallbacks would hide where a file went
                raise refuse(
                    "transfer_group.fallback_group",
                    f"{fallback} falls back itself (to {central.fallback_group}): name a central"
                    " group",
                )
    elif isinstance(entity, DataUser):
        for index, name in enumerate(entity.destinations):
            exists(f"data_user.destinations[{index}]", name, view.destinations, "destination")
    else:
        for index, name in enumerate(entity.destinations):
            exists(f"policy.destinations[{index}]", name, view.destinations, "destination")
        for index, login in enumerate(entity.users):
            exists(f"policy.users[{index}]", login, view.users, "data user")
    check_all(*checks)
