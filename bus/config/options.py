"""Every option name ecpds reads from a host's ``options`` or a destination's ``properties``,
with the check of its value: the one list validation holds names against.

Rule kept here: a name nobody reads is refused when the entity is defined, with the closest
known name (``did you mean acquisition.fileage?``), because an option silently ignored turns
its behaviour off without a word; a value its reader could not use is refused the same way,
naming the option. The tables follow the code that reads the options (a test holds them to
``protocols/`` and the stages); to add an option, add one line to its table below:

- ``ACQUISITION``: ``acquisition.*`` on acquisition hosts (``producers/acquisition``), also
  accepted bare or prefixed as ``[key=value]`` options of a Directory line, with ``LINE``.
- ``MODULES``: each transfer module's options (``protocols/*``), bare names; a host writes them
  with its module's prefix (``SCHEME_PREFIXES``, as ``protocols.location.MODULE_PREFIXES``),
  with ``ectrans.``, or bare. ``COMMON`` are read for every module (movers' temporary names).
- ``HOST_STAGES``: other host options read by a stage (movers' rate, WIS2 acquisition, mail).
- ``DESTINATION``: destination properties (scheduler's duplicate rule, mail).

Names of acquisition options are matched without regard to case, as the acquisition stage
reads them; module options are matched exactly, as the modules read them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from bus.config import wis2
from bus.errors import ConfigurationError
from bus.templates.dates import DateFormatError, compile_format, parse_offsets
from bus.templates.filters import parse_duration_ms, parse_filter
from bus.templates.filters import parse_size as parse_filter_size
from bus.templates.lexer import TemplateError
from bus.templates.names import parse_metadata, parse_name

Check = Callable[[str, str], None]
"""Refuses ``value`` of the option shown as ``field`` (raises ``ConfigurationError``)."""

TRUE = frozenset({"yes", "true", "on", "1"})
MQTT_MODE = "http.mqttMode"  # an acquisition host that listens to WIS2 notifications


def is_wis2(options: Mapping[str, str]) -> bool:
    """Whether a host with these options acquires from WIS2 notifications (MQTT)."""
    return options.get(MQTT_MODE, "").strip().lower() in TRUE


FLAG_VALUES = TRUE | {"no", "false", "off", "0"}


# --- value checks ---------------------------------------------------------------------------


def text(value: str, field: str) -> None:
    """Any text (a path, a name, a key)."""


def mqtt_topic(value: str, field: str) -> None:
    """An MQTT topic to publish on: no wildcards, no empty level at either end."""
    if not value or any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/"):
        raise ConfigurationError(
            field, "must be an MQTT topic without wildcards (+ #) or a leading or trailing /"
        )


def flag(value: str, field: str) -> None:
    """yes/no, true/false, on/off, 1/0: readers take anything else as "no", silently."""
    if value.strip().lower() not in FLAG_VALUES:
        raise ConfigurationError(field, f"must be yes or no (true/false, on/off), got {value!r}")


def whole(low: int | None = None, high: int | None = None) -> Check:
    """A whole number, within ``low``..``high`` when given."""

    def check(value: str, field: str) -> None:
        text = value.strip()
        if not re.fullmatch(r"-?\d+", text):
            raise ConfigurationError(field, f"must be a whole number, got {value!r}")
        number = int(text)
        if (low is not None and number < low) or (high is not None and number > high):
            span = f"{low if low is not None else '…'} to {high if high is not None else '…'}"
            raise ConfigurationError(field, f"must be from {span}, got {number}")

    return check


def number(value: str, field: str) -> None:
    """A plain number (seconds, MiB): what the cloud modules read with ``float``."""
    if not re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value):
        raise ConfigurationError(field, f"must be a plain number, got {value!r}")


_SECONDS = re.compile(r"\s*\d+(?:\.\d+)?\s*(?:ms|s|m|min|h|d)?\s*", re.IGNORECASE)


def seconds(value: str, field: str) -> None:
    """A duration as the FTP/SFTP/HTTP modules read it: seconds, or ``500ms``, ``30s``, ``2m``."""
    if not _SECONDS.fullmatch(value):
        raise ConfigurationError(field, f"not a duration (30, 500ms, 30s, 2m, 1h): {value!r}")


_BYTES = re.compile(r"\s*\d+(?:\.\d+)?\s*[km]?i?b?\s*", re.IGNORECASE)


def byte_count(value: str, field: str) -> None:
    """A byte count as the SFTP module reads it: ``32768``, ``64k``, ``2m``."""
    if not _BYTES.fullmatch(value):
        raise ConfigurationError(field, f"not a byte count (32768, 64k, 2m): {value!r}")


_RATE = re.compile(r"\s*\d+(?:\.\d+)?\s*[kmgt]?i?b?\s*(?:/s)?\s*", re.IGNORECASE)


def rate(value: str, field: str) -> None:
    """A byte rate as the movers read it: ``4MB``, ``500k/s``, ``1048576``; 0 or empty: none."""
    if value.strip() and not _RATE.fullmatch(value):
        raise ConfigurationError(field, f"not a byte rate (4MB, 500k/s, 1048576): {value!r}")


def choice(*allowed: str) -> Check:
    """One of ``allowed`` (any case)."""

    def check(value: str, field: str) -> None:
        if value.strip().lower() not in {a.lower() for a in allowed}:
            raise ConfigurationError(field, f"must be one of {', '.join(allowed)}, got {value!r}")

    return check


def duration(value: str, field: str) -> None:
    """A duration as the acquisition stage reads it (``30s``, ``10m``, ``2d``, ``PT1H``)."""
    try:
        parse_duration_ms(value)
    except ValueError as error:
        raise ConfigurationError(field, str(error)) from None


def date_format(value: str, field: str) -> None:
    """A Java ``SimpleDateFormat`` pattern (``yyyyMMdd``); the column of a bad letter."""
    try:
        compile_format(value)
    except DateFormatError as error:
        raise TemplateError(str(error), 1, error.offset + 1, field=field) from None


def date_delta(value: str, field: str) -> None:
    """A day offset (``-1``) or a window of days (``-2..0``)."""
    try:
        parse_offsets(value)
    except ValueError as error:
        raise ConfigurationError(field, str(error)) from None


def age_filter(value: str, field: str) -> None:
    """An age filter (``<10d``, ``>=5m``)."""
    parse_filter(value, kind="age", field=field)


def size_filter(value: str, field: str) -> None:
    """A size filter (``>=1MB``, ``!=0``)."""
    parse_filter(value, kind="size", field=field)


def name_template(value: str, field: str) -> None:
    """An ``acquisition.target`` template (``$target``, ``$date[yyyy]/$name``)."""
    parse_name(value, field)


def metadata_template(value: str, field: str) -> None:
    """``key=template`` pairs (``stream=oper,date=$date``)."""
    parse_metadata(value, field)


def regex(value: str, field: str) -> None:
    """A regular expression."""
    try:
        re.compile(value)
    except re.error as error:
        position = f" (column {error.pos + 1})" if error.pos is not None else ""
        reason = f"not a regular expression{position}: {error.msg}"
        raise ConfigurationError(field, reason) from None


def size(value: str, field: str) -> None:
    """A byte size (``10MB``)."""
    try:
        parse_filter_size(value)
    except ValueError as error:
        raise ConfigurationError(field, str(error)) from None


# --- tables ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One option: its name (without prefix), default as shown to people, meaning, check."""

    name: str
    default: str
    meaning: str
    check: Check = text


ACQUISITION: tuple[Option, ...] = (
    Option(
        "dateformat", "yyyyMMdd", "format of `$date` in the Directory (Java letters)", date_format
    ),
    Option(
        "datedelta", "0", "day offset of `$date` (`-1`), or a window of days (`-2..0`)", date_delta
    ),
    Option("filesize", "none", "take only files whose size passes (`>=1KB`, `!=0`)", size_filter),
    Option("fileage", "none", "take only files whose age passes (`>=2m`, `<10d`)", age_filter),
    Option(
        "target",
        "$target",
        "target name template (`$name`, `$date[yyyy]/$name`, `$target[2..12]`)",
        name_template,
    ),
    Option(
        "metadata",
        "none",
        "metadata as `key=template` pairs (`stream=oper,date=$date`)",
        metadata_template,
    ),
    Option("priority", "99", "priority of the acquired file's transfers (0 first)", whole(0, 99)),
    Option("lifetime", "destination's", "how long the acquired file lives (`2d`)", duration),
    Option("standby", "no", "hold the acquired file's transfers until released", flag),
    Option(
        "event",
        "no",
        "publish a notification when the file is delivered (destination `mqtt.publish`)",
        flag,
    ),
    Option("deleteoriginal", "no", "delete the file at the provider once stored", flag),
    Option("removeParameters", "no", "drop a `?query` from listed names", flag),
    Option(
        "skipPostRetrievalSizeCheck",
        "no",
        "do not compare the retrieved size with the listed one",
        flag,
    ),
    Option("useSymlink", "no", "take symbolic links too", flag),
    Option("recursive", "no", "list sub-directories too (also `listRecursive`)", flag),
    Option("listRecursive", "no", "same as `recursive`", flag),
    Option(
        "requeueOnFailure",
        "no",
        "retry a retrieval that failed for good at the next poll (a retriable one always is)",
        flag,
    ),
    Option(
        "requeueonupdate",
        "yes",
        "fetch again a file listed with a newer time and another size",
        flag,
    ),
    Option(
        "requeueonsamesize",
        "yes",
        "fetch again a file listed with a newer time, whatever its size (`no`: only when its"
        " size changed too)",
        flag,
    ),
    Option(
        "stable",
        "yes",
        "take a file only once its size and time are unchanged across listings"
        " `stableInterval` apart (`no`: as listed)",
        flag,
    ),
    Option("stableInterval", "10s", "how long a file must stay unchanged to be taken", duration),
    Option(
        "companion",
        "none",
        "take a file once its companion is listed: a suffix (`.done`) or a name (`$name.ok`)",
        text,
    ),
    Option("uniqueByNameAndTime", "no", "a file listed with any other time is a new file", flag),
    Option("maximumDuration", "10m", "longest listing phase of one poll", duration),
    Option("retrievalMaximumDuration", "10m", "longest retrieval of one file", duration),
)
"""``acquisition.*`` options of an acquisition host (``producers/acquisition``)."""

LINE: tuple[Option, ...] = (
    Option("dirdateformat", "dateformat", "format of `$dirdate` on this line", date_format),
    Option(
        "dirdatedelta", "datedelta", "day offset or window of the line, as `datedelta`", date_delta
    ),
)
"""Options only a Directory line's ``[key=value]`` takes (besides the acquisition options)."""

COMMON: Mapping[str, Check] = MappingProxyType({"usetmp": flag, "prefix": text, "suffix": text})
"""Read for every module: the temporary name of a put (``consumers/movers``)."""

_TLS = {"sslValidation": flag, "cafile": text}
_OBJECT_STORE = {"usetmp": flag, "dirMarker": flag, "listPageSize": whole(1)}

MODULES: Mapping[str, Mapping[str, Check]] = MappingProxyType({
    "ftp": {
        **_TLS, "connectionType": choice("explicit", "implicit"), "strict": flag,
        "extended": flag, "passive": flag, "mkdirs": flag, "blockSize": whole(1),
        "connectTimeOut": seconds, "commTimeOut": seconds, "dataTimeOut": seconds,
    },
    "sftp": {
        "passPhrase": text, "privateKey": text, "privateKeyFile": text, "cipher": text,
        "knownHosts": text, "fingerPrint": text, "password": text,
        "connectTimeOut": seconds, "serverAliveInterval": seconds,
        "serverAliveCountMax": whole(0), "window": byte_count, "maxPacketSize": byte_count,
        "blockSize": byte_count, "maxRequests": whole(1), "listRecursive": flag,
        "listMaxThreads": whole(1), "mkdirs": flag, "chmod": text,
    },
    "http": {
        **_TLS, "headers": text, "token": text, "connectTimeOut": seconds,
        "streamTimeout": seconds, "maxRedirects": whole(0), "webdav": flag,
        "listRecursive": flag, "listMaxThreads": whole(1), "parser": choice("html", "json"),
        "urldir": flag, "useHead": flag, "arrayPath": text, "nameField": text,
        "sizeField": text, "timeField": text, "typeField": text, "mkdirs": flag,
        "usePost": flag, "uploadEndPoint": text, "useMultipart": flag,
        "filenameAttribute": text,
        # WIS2 acquisition (producers/acquisition/wis2): an MQTT subscription, not a listing
        "mqttMode": flag, "mqttQos": choice("0", "1", "2"), "mqttPort": whole(1, 65535),
    },
    "s3": {
        **_OBJECT_STORE, "partSize": number, "multipartSize": number,
        "numUploadThreads": whole(1), "queueCapacity": whole(1), "scheme": choice("http", "https"),
        "region": text, "enablePathStyleAccess": flag, "connectTimeOut": number,
        "readTimeOut": number, "retryCount": whole(0), "sslValidation": flag,
        "mkBucket": flag, "bucketName": text,
    },
    "azure": {
        **_OBJECT_STORE, "url": text, "sasUrl": text, "sasToken": text,
        "scheme": choice("http", "https"), "blockSize": number, "multipartSize": number,
        "numBuffers": whole(1), "useMD5": flag, "retryCount": whole(0),
        "retryFrequency": number, "connectTimeOut": number, "readTimeOut": number,
        "mkContainer": flag, "containerName": text,
    },
    "gcs": {
        **_OBJECT_STORE, "serviceAccountFile": text, "chunkSize": number, "timeOut": number,
        "emulator": flag, "scheme": choice("http", "https"), "mkBucket": flag,
        "projectId": text, "bucketName": text,
    },
    "file": {"fsync": flag, "mkdirs": flag},
    "memory": {"mkdirs": flag},
})  # fmt: skip
"""Each transfer module's options, by module (``protocols/<module>.py``)."""

SCHEME_MODULES: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType({
    "ftp": ("ftp", ("ftp.",)),
    "ftps": ("ftp", ("ftps.", "ftp.")),
    "sftp": ("sftp", ("sftp.",)),
    "http": ("http", ("http.",)),
    "https": ("http", ("https.", "http.")),
    "s3": ("s3", ("s3.",)),
    "az": ("azure", ("az.", "azure.")),
    "gs": ("gcs", ("gs.", "gcs.")),
    "file": ("file", ("file.",)),
    "memory": ("memory", ("memory.",)),
})  # fmt: skip
"""A host's protocol -> its module and the prefixes its options take
(``protocols.location.MODULE_PREFIXES``; ``bus`` may not import ``protocols``)."""

HOST_MAIL = ("mail.to", "mail.onSuccess", "mail.onError", "mail.notifyOnce")
DESTINATION_MAIL = (
    "mail.to",
    "mail.onStart",
    "mail.onEnd",
    "mail.onError",
    "mail.onUpdate",
    "mail.onLate",  # a TransferLate of the destination (the timeliness watcher)
)

HOST_STAGES: Mapping[str, Check] = MappingProxyType(
    {"upload.rateThrottling": rate, **dict.fromkeys(HOST_MAIL, text)}
)
"""Host options read by stages rather than by the module (values of ``mail.*`` are checked
with the other mail rules)."""

DESTINATION: Mapping[str, Check] = MappingProxyType({
    "scheduler.requeueon": text,  # compiled with its column by the validator
    "scheduler.requeuepattern": regex,
    "scheduler.requeueignore": regex,
    **dict.fromkeys(DESTINATION_MAIL, text),
    **wis2.CHECKS,
    "monitor.target": duration,  # products delivered by this long after their base time
    "mqtt.onLate": flag,  # a TransferLate of the destination, as JSON, on mqtt.lateTopic
    "mqtt.lateTopic": mqtt_topic,
})  # fmt: skip
"""Destination properties read by the stages (``consumers/scheduler``, ``consumers/mailer``,
``consumers/notifier``: ``wis2.*``, read by ``bus.config.wis2``; the timeliness watcher and
grid: ``monitor.target``)."""

ACQUISITION_PREFIX = "acquisition."
ECTRANS_PREFIX = "ectrans."
_ACQUISITION_BY_KEY = {o.name.lower(): o for o in ACQUISITION}
_LINE_BY_KEY = {o.name.lower(): o for o in LINE}


def reference() -> str:
    """The README's table of acquisition options (a test keeps the README equal to it)."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for o in ACQUISITION:
        default = f"`{o.default}`" if o.default not in ("none", "destination's") else o.default
        rows.append(f"| `acquisition.{o.name}` | {default} | {o.meaning} |")
    for o in LINE:
        rows.append(f"| `{o.name}` (line only) | as `{o.default}` | {o.meaning} |")
    return "\n".join(rows)


# --- lookups --------------------------------------------------------------------------------


def suggestion(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the known name closest to ``name``, or nothing."""
    names = list(known)
    lowered = {k.lower(): k for k in names}
    if name.lower() in lowered:
        return f"; did you mean {lowered[name.lower()]}?"  # same name, other case
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if not close:
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)
        close = [lowered[c] for c in close]
    return f"; did you mean {close[0]}?" if close else ""


def acquisition_option(name: str) -> Option | None:
    """The acquisition option ``name`` (bare, any case), if it exists."""
    return _ACQUISITION_BY_KEY.get(name.lower())


def line_option(name: str) -> Option | None:
    """An option a Directory line's ``[...]`` takes: its own, or an acquisition option
    (bare or with ``acquisition.``), any case."""
    bare = name.removeprefix(ACQUISITION_PREFIX)
    return _LINE_BY_KEY.get(bare.lower()) or acquisition_option(bare)


def line_option_names() -> list[str]:
    """Every name a Directory line's ``[...]`` takes, for suggestions."""
    return [o.name for o in (*LINE, *ACQUISITION)]


def host_option_names(protocol: str, *, acquisition: bool) -> list[str]:
    """Every option name (with prefix, as written in a host's ``options``) a host takes."""
    module, prefixes = SCHEME_MODULES.get(protocol, (protocol, (f"{protocol}.",)))
    bare = [*COMMON, *MODULES.get(module, {})]
    names = [f"{prefix}{b}" for prefix in (*prefixes, ECTRANS_PREFIX) for b in bare]
    names += [*bare, *HOST_STAGES]
    if acquisition:
        names += [f"{ACQUISITION_PREFIX}{o.name}" for o in ACQUISITION]
    return names


def host_option(protocol: str, key: str, *, acquisition: bool) -> Check:
    """The check of host option ``key``; ``ConfigurationError`` (field ``options.KEY``) when
    no stage or module of such a host reads it, with the closest known name."""
    field = f"options.{key}"
    module, prefixes = SCHEME_MODULES.get(protocol, (protocol, (f"{protocol}.",)))
    module_checks = {**COMMON, **MODULES.get(module, {})}
    if key in HOST_STAGES:
        return HOST_STAGES[key]
    if key.startswith(ACQUISITION_PREFIX):
        if not acquisition:
            raise ConfigurationError(field, "acquisition options apply to acquisition hosts only")
        found = acquisition_option(key[len(ACQUISITION_PREFIX) :])
        if found is None:
            known = [f"{ACQUISITION_PREFIX}{o.name}" for o in ACQUISITION]
            raise ConfigurationError(field, f"unknown acquisition option{suggestion(key, known)}")
        return found.check
    prefix = next((p for p in (*prefixes, ECTRANS_PREFIX) if key.startswith(p)), None)
    bare = key[len(prefix) :] if prefix is not None else key
    if "." in bare and prefix is None:
        owner = bare.partition(".")[0]
        others = [s for s, (_, ps) in SCHEME_MODULES.items() if f"{owner}." in ps]
        if others:
            reason = f"{owner}. options are for {'/'.join(others)} hosts, this one is {protocol}"
            raise ConfigurationError(field, reason)
    if bare in module_checks:
        return module_checks[bare]
    known = host_option_names(protocol, acquisition=acquisition)
    hint = suggestion(key, known)
    if prefix is None and not hint:
        takes = [f"{p}*" for p in (*prefixes, ECTRANS_PREFIX)]
        takes += [f"{ACQUISITION_PREFIX}*"] if acquisition else []
        hint = f" ({protocol} hosts take {', '.join([*takes, *HOST_STAGES])})"
    what = f"{module} option" if prefix is not None else "option"
    raise ConfigurationError(field, f"unknown {what}{hint}")


def destination_property(key: str) -> Check:
    """The check of destination property ``key``; ``ConfigurationError`` (field
    ``properties.KEY``) when nothing reads it, with the closest known name."""
    if key in DESTINATION:
        return DESTINATION[key]
    raise ConfigurationError(f"properties.{key}", f"unknown property{suggestion(key, DESTINATION)}")
