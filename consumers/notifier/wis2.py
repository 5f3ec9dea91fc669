"""The check every WIS2 notification passes before it leaves: pure, no I/O after import.

Rules kept here (a message breaking one is not sent; ``refusal`` says which and why):

- The topic is on the WIS2 Topic Hierarchy: ``origin/a/wis2/<centre-id>/data/<core|
  recommended>/<discipline>/...`` (levels checked by ``bus.config.wis2``, as at apply).
- The message is at most 8,192 bytes and valid against the bundled WIS2 Notification Message
  schema (1.1.0, ``wis2-notification-message-bundled.json`` beside this module), formats
  included (``uuid``, RFC 3339 ``date-time``).
- Exactly one link is ``canonical``, ``update`` or ``deletion``; it has ``type`` and ``length``
  and an ``http(s)`` ``href`` without credentials (WIS2 Global Caches fetch nothing else).
- Inline ``content`` only when its encoded value is at most 4,096 bytes.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any, Final

import jsonschema_rs

from bus.config import wis2 as settings
from bus.errors import ConfigurationError

MAX_MESSAGE: Final = 8192
MAX_INLINE: Final = 4096
RELATIONS: Final = frozenset({"canonical", "update", "deletion"})
SCHEMA: Final = json.loads(
    (Path(__file__).with_name("wis2-notification-message-bundled.json")).read_text("utf-8")
)
# jsonschema-rs: draft 2020-12 with formats, ~35x faster than the pure-Python jsonschema (the
# tests check every message again with that one: two implementations agree)
_VALIDATOR: Final = jsonschema_rs.validator_for(SCHEMA, validate_formats=True)


def topic_refusal(topic: str) -> str | None:
    """Why ``topic`` is not a WIS2 data topic ecpds may publish to, or None."""
    levels = topic.split("/")
    if len(levels) < 8 or tuple(levels[:3]) != settings.ROOT or levels[4] != "data":
        return f"topic {topic!r} is not origin/a/wis2/<centre-id>/data/<policy>/<discipline>/..."
    try:
        settings.check_centre_id(levels[3], "topic")
        settings.check_data_policy(levels[5], "topic")
        settings.check_topic("/".join(levels[6:]), "topic")
    except ConfigurationError as error:
        return f"topic {topic!r}: {error.reason}"
    return None


def refusal(topic: str, payload: bytes, message: Any = None) -> str | None:
    """Why this message must not be published on WIS2, or None when it may. ``message`` is
    ``payload`` already decoded, when the caller has it (it saves parsing it again)."""
    why = topic_refusal(topic)
    if why is not None:
        return why
    if len(payload) > MAX_MESSAGE:
        return f"message of {len(payload)} bytes is over the WIS2 limit of {MAX_MESSAGE}"
    if message is None:
        try:
            message = json.loads(payload)
        except ValueError as error:
            return f"message is not JSON: {error}"
    if not _VALIDATOR.is_valid(message):
        errors = sorted(_VALIDATOR.iter_errors(message), key=lambda e: list(e.instance_path))
        first = errors[0]
        where = "/".join(str(p) for p in first.instance_path) or "(message)"
        return f"WIS2 schema: {where}: {first.message}"
    return _links_refusal(message) or _content_refusal(message)


def _links_refusal(message: dict[str, Any]) -> str | None:
    links = [link for link in message["links"] if link.get("rel") in RELATIONS]
    if len(links) != 1:
        rels = [link.get("rel") for link in message["links"]]
        return f"links {rels}: exactly one must be canonical, update or deletion"
    link = links[0]
    for key in ("type", "length"):
        if key not in link:
            return f"the {link['rel']} link has no {key}"
    href = urllib.parse.urlsplit(link["href"])
    if href.scheme not in ("https", "http") or not href.hostname:
        return f"the {link['rel']} link {link['href']!r} is not an http(s) URL"
    if href.username is not None or href.password is not None:
        return f"the {link['rel']} link carries credentials"
    return None


def _content_refusal(message: dict[str, Any]) -> str | None:
    content = message["properties"].get("content")
    if content is None:
        return None
    encoded = len(str(content["value"]).encode("utf-8"))
    if encoded > MAX_INLINE:
        return f"inline content of {encoded} bytes once encoded is over {MAX_INLINE}"
    return None
