"""How a destination publishes on WIS2: its ``wis2.*`` properties, read and checked here only.

A destination declares (``properties``, as OpenECPDS's ``mqtt.*`` destination properties), or
its transfer group declares for all its destinations (the group's ``properties``; a key the
destination declares itself wins, so a group can give the centre id and policy and each
destination its topic):

- ``wis2.centreId`` — the centre id (level 4 of the topic), e.g. ``int-ecmwf``;
- ``wis2.dataPolicy`` — ``core`` (default) or ``recommended`` (level 6);
- ``wis2.topic`` — the levels below ``data/<policy>/``: the earth-system discipline and what
  follows, e.g. ``weather/surface-based-observations/synop``;
- ``wis2.downloadBase`` — the public base URL subscribers download from; omitted, the Data
  Portal's HTTPS address (``ECPDS_PORTAL_ADDRESS``/``ECPDS_PORTAL_HTTPS_PORT``);
- ``wis2.metadataId`` — the WCMP2 record the data belongs to (``properties.metadata_id``);
- ``wis2.deletion`` — ``yes`` to announce a ``deletion`` when the janitor expires a file.

Rules kept here: a topic is checked level by level against the WIS2 Topic Hierarchy and a bad
one is refused naming the level (``level 7 (earth-system-discipline)``); the discipline is
checked against its code list, the levels below it by the hierarchy's spelling (lower case,
digits, ``-``), as the sub-discipline tables are not bundled. A download base never carries
credentials, a query or a fragment (it is sent to every subscriber). ``wis2.*`` keys without
``wis2.centreId`` and ``wis2.topic``, the group's and the destination's together, are refused:
half a declaration would publish nothing.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from bus.errors import ConfigurationError
from bus.events.config import Destination, TransferGroup

PREFIX: Final = "wis2."
CENTRE_ID: Final = "wis2.centreId"
DATA_POLICY: Final = "wis2.dataPolicy"
TOPIC: Final = "wis2.topic"
DOWNLOAD_BASE: Final = "wis2.downloadBase"
METADATA_ID: Final = "wis2.metadataId"
DELETION: Final = "wis2.deletion"

# WIS2 Topic Hierarchy levels 1-6 as ecpds writes them; 7 is the discipline's code list
ROOT: Final = ("origin", "a", "wis2")
POLICIES: Final = ("core", "recommended")
DISCIPLINES: Final = (
    "weather",
    "climate",
    "hydrology",
    "atmospheric-composition",
    "cryosphere",
    "ocean",
    "space-weather",
)
LEVEL_NAMES: Final = {
    1: "channel",
    2: "version",
    3: "system",
    4: "centre-id",
    5: "notification-type",
    6: "data-policy",
    7: "earth-system-discipline",
}
_CENTRE = re.compile(r"[a-z]{2,}-[a-z0-9][a-z0-9_-]*")
_LEVEL = re.compile(r"[a-z0-9][a-z0-9-]*")
_YES = frozenset({"yes", "true", "on", "1"})
_FLAGS = _YES | {"no", "false", "off", "0"}


@dataclass(frozen=True, slots=True)
class Wis2Settings:
    """A destination's WIS2 publication (see the module docstring)."""

    centre_id: str
    data_policy: Literal["core", "recommended"]
    topic: str  # below data/<policy>/
    download_base: str | None = None  # None: the portal's HTTPS address
    metadata_id: str | None = None
    deletion: bool = False

    @property
    def full_topic(self) -> str:
        """The MQTT topic: ``origin/a/wis2/<centre>/data/<policy>/<topic>``."""
        return "/".join((*ROOT, self.centre_id, "data", self.data_policy, self.topic))


def _level(number: int) -> str:
    name = LEVEL_NAMES.get(number)
    return f"level {number} ({name})" if name else f"level {number}"


def check_centre_id(value: str, field: str) -> None:
    """A centre id: ``<tld>-<organisation>``, lower case (WIS2 Topic Hierarchy level 4)."""
    if not _CENTRE.fullmatch(value):
        raise ConfigurationError(
            field,
            f"{_level(4)} {value!r} is not a centre id: <tld>-<organisation>, lower case "
            "letters, digits, '-' or '_' (e.g. int-ecmwf)",
        )


def check_data_policy(value: str, field: str) -> None:
    if value not in POLICIES:
        raise ConfigurationError(field, f"{_level(6)} must be core or recommended, got {value!r}")


def check_topic(value: str, field: str) -> None:
    """The levels below ``data/<policy>/``: a known discipline, then at least one level."""
    levels = value.split("/")
    if levels[0] in (*ROOT, "cache"):
        raise ConfigurationError(
            field, "give only the levels below data/<core|recommended>/ (from the discipline on)"
        )
    for offset, part in enumerate(levels):
        number = 7 + offset
        if part in ("+", "#"):
            raise ConfigurationError(field, f"{_level(number)}: wildcards cannot be published to")
        if not part:
            raise ConfigurationError(field, f"{_level(number)} is empty")
        if number == 7 and part not in DISCIPLINES:
            raise ConfigurationError(
                field, f"{_level(7)} {part!r} is not one of {', '.join(DISCIPLINES)}"
            )
        if not _LEVEL.fullmatch(part):
            raise ConfigurationError(
                field, f"{_level(number)} {part!r}: lower case letters, digits and '-' only"
            )
    if len(levels) < 2:
        raise ConfigurationError(field, f"{_level(8)} (the sub-discipline) is missing")


def check_download_base(value: str, field: str) -> None:
    """An http(s) URL without credentials, query or fragment."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(field, f"must be an https:// (or http://) URL, got {value!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(field, "must not carry credentials (every subscriber sees it)")
    if parts.query or parts.fragment:
        raise ConfigurationError(field, "must not have a query or a fragment")


def check_flag(value: str, field: str) -> None:
    if value.strip().lower() not in _FLAGS:
        raise ConfigurationError(field, f"must be yes or no, got {value!r}")


def check_text(value: str, field: str) -> None:
    if not value.strip():
        raise ConfigurationError(field, "must not be empty")


CHECKS: Final = {
    CENTRE_ID: check_centre_id,
    DATA_POLICY: check_data_policy,
    TOPIC: check_topic,
    DOWNLOAD_BASE: check_download_base,
    METADATA_ID: check_text,
    DELETION: check_flag,
}
"""Each ``wis2.*`` property's check (``bus.config.options.DESTINATION`` takes them)."""


def missing(properties: Mapping[str, str]) -> tuple[str, ...]:
    """The keys a WIS2 declaration lacks (none when it declares nothing or all it needs)."""
    if not any(k.startswith(PREFIX) for k in properties):
        return ()
    return tuple(k for k in (CENTRE_ID, TOPIC) if k not in properties)


def declared(properties: Mapping[str, str]) -> dict[str, str]:
    """The ``wis2.*`` entries of ``properties``."""
    return {k: v for k, v in properties.items() if k.startswith(PREFIX)}


def declaration_for(
    destination: Destination, groups: Mapping[str, TransferGroup]
) -> dict[str, str]:
    """The ``wis2.*`` properties that apply to ``destination``: its transfer group's, each
    replaced by the destination's own when it declares the key."""
    group = groups.get(destination.transfer_group)
    inherited = declared(group.properties) if group is not None else {}
    return inherited | declared(destination.properties)


def settings_for(
    destination: Destination, groups: Mapping[str, TransferGroup]
) -> Wis2Settings | None:
    """The WIS2 settings of ``destination`` with its group's (``declaration_for``), None when
    neither declares any; ``ConfigurationError`` as ``settings_of``."""
    return settings_of(declaration_for(destination, groups))


def settings_of(properties: Mapping[str, str], field: str = "properties") -> Wis2Settings | None:
    """The WIS2 settings of a destination's properties, None when it declares none.

    Raises ``ConfigurationError`` for a bad value or half a declaration (module docstring).
    """
    declared = {k: v for k, v in properties.items() if k.startswith(PREFIX)}
    if not declared:
        return None
    for key, value in declared.items():
        check = CHECKS.get(key)
        if check is not None:
            check(value, f"{field}.{key}")
    for key in missing(declared):
        raise ConfigurationError(f"{field}.{key}", "required with any other wis2.* property")
    policy = declared.get(DATA_POLICY, "core")
    return Wis2Settings(
        centre_id=declared[CENTRE_ID],
        data_policy="recommended" if policy == "recommended" else "core",
        topic=declared[TOPIC],
        download_base=declared.get(DOWNLOAD_BASE),
        metadata_id=declared.get(METADATA_ID),
        deletion=declared.get(DELETION, "no").strip().lower() in _YES,
    )
