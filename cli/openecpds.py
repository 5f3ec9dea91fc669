"""OpenECPDS's ``ecpds`` command line, for migrating sites: ``ecpds -destination D -source F
[-target T -priority N -lifetime 2d -metadata k=v,... -at yyyyMMddHHmmss -standby -event ...]``
is translated into ``ecpds put`` so that existing scripts run unchanged.

Rules kept here: an argument list is OpenECPDS's when its first word is one of OpenECPDS's
single-dash options (``-destination``; ecpds's own verbs never start with a dash); it is then
translated word for word into ``put`` options, which prints the data file id alone, as
OpenECPDS's command does. Options of the C client that only tune its own connection
(``-buffsize``, ``-tryCount`` ...) are accepted and have no effect; a mode ecpds does not offer
(``-scheduler``, ``-waitfor`` ...) is refused with exit 2 naming the option. Product status
(``-expected|-started|-completed|-reset``) is routed through ``product_status`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cli.put import default_api

# OpenECPDS option -> ecpds put option (``None``: the source file, a positional argument)
_VALUES: dict[str, str | None] = {
    "destination": "--destination",
    "source": None,
    "target": "--target",
    "priority": "--priority",
    "metadata": "--metadata",
    "identity": "--identity",
    "lifetime": "--lifetime",
    "delay": "--delay",
    "at": "--at",
    "version": "--version",
    "user": "--user",
    "pass": "--password",
}
_FLAGS = {
    "asap": "--asap",
    "event": "--event",
    "standby": "--standby",
    "requeue": "--requeue",
    "force": "--force",
}
_PRODUCT_STATUS = ("expected", "started", "completed", "reset")
# options of the C client that tune its own connection: accepted, no effect here
_IGNORED_VALUES = ("caller", "buffsize", "connectTimeoutSec", "tryCount", "tryDelaySec", "opts")
_IGNORED_FLAGS = ("verbose", "noretrieval")
_ADDRESS = ("echost", "ecport")
_REFUSED = (
    "scheduler",
    "waitfor",
    "reqid",
    "groupby",
    "index",
    "remove",
    "purge",
    "group",
    "buffer",
    "start",
    "stop",
    "check",
    "streams",
    "timeout",
)
_DEFAULT_FORMAT = "yyyyMMddHHmmss"
KNOWN = frozenset(
    (*_VALUES, *_FLAGS, *_PRODUCT_STATUS, *_IGNORED_VALUES, *_IGNORED_FLAGS, *_ADDRESS, *_REFUSED)
) | {"format"}


class Unsupported(ValueError):
    """An OpenECPDS option or mode that ecpds does not offer; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True, slots=True)
class ProductStatus:
    """An ``ecpds -expected|-started|-completed|-reset`` call, as given."""

    status: str
    metadata: str | None
    at: str | None


def is_openecpds(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (without the program name) is an OpenECPDS command line."""
    return bool(argv) and argv[0].startswith("-") and argv[0][1:] in KNOWN


def product_status(call: ProductStatus) -> list[str]:
    """The ``ecpds product`` command for a product status call: ``-metadata`` names the
    product (``stream``, ``time``, ``step``, ``type``, as OpenECPDS reads them); ``-at`` (its
    ``yyyyMMddHHmmss``) is passed on. A product not fully named is refused, naming what lacks."""
    fields: dict[str, str] = {}
    for pair in (call.metadata or "").split(","):
        key, sep, value = pair.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    missing = [k for k in ("stream", "time", "step", "type") if not fields.get(k)]
    if missing:
        raise Unsupported(
            "-metadata",
            f"-{call.status}: -metadata must name the product: {', '.join(missing)} missing"
            " (e.g. -metadata stream=oper,time=00,step=24,type=fc)",
        )
    out = ["product", call.status]
    for key in ("stream", "time", "step", "type"):
        out += [f"--{key}", fields[key]]
    if call.at:
        out += ["--at", call.at]
    return out


def translate(argv: Sequence[str]) -> list[str]:
    """The ``ecpds`` arguments for the OpenECPDS command line ``argv``; ``Unsupported`` for an
    option ecpds does not offer, or one that is unknown or lacks its value."""
    out = ["put", "--id-only"]
    values: dict[str, str] = {}
    flags: set[str] = set()
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        name = word[1:] if word.startswith("-") and not word.startswith("--") else None
        if name is None or name not in KNOWN:
            raise Unsupported(word, f"{word}: not an OpenECPDS option")
        if name in _REFUSED:
            raise Unsupported(word, f"{word}: not offered by ecpds's OpenECPDS compatibility")
        takes_value = name in _VALUES or name in _IGNORED_VALUES or name in _ADDRESS
        takes_value = takes_value or name == "format"
        if takes_value:
            if i + 1 >= len(words):
                raise Unsupported(word, f"{word}: needs a value")
            values[name] = words[i + 1]
            i += 2
        else:
            flags.add(name)
            i += 1
    statuses = [s for s in _PRODUCT_STATUS if s in flags]
    if len(statuses) > 1:
        raise Unsupported(f"-{statuses[1]}", "give one of -expected -started -completed -reset")
    if statuses:
        return product_status(ProductStatus(statuses[0], values.get("metadata"), values.get("at")))
    fmt = values.get("format", _DEFAULT_FORMAT)
    if fmt != _DEFAULT_FORMAT:
        raise Unsupported("-format", f"-format: only {_DEFAULT_FORMAT} is supported")
    for name, option in _VALUES.items():
        value = values.get(name)
        if value is None or option is None:
            continue
        if name == "target" and value.endswith("/") and "source" in values:
            # OpenECPDS: a target ending in / is a directory the source keeps its name in
            value += values["source"].rstrip("/").rpartition("/")[2]
        out += [option, value]
    out += [option for name, option in _FLAGS.items() if name in flags]
    if "echost" in values or "ecport" in values:
        host = values.get("echost", "127.0.0.1")
        port = values.get("ecport") or default_api().rpartition(":")[2]
        out += ["--api", f"http://{host}:{port}"]
    if "source" in values and values["source"] != "-":
        out.append(values["source"])
    return out
