"""The options of ``POST /api/v1/datafiles``: read from the query string or from
``X-Ecpds-<Option>`` headers (the query wins), parsed into a ``Submission``.

A malformed option is a ``Refused(INVALID, field, message)`` naming the option, the same shape
as every other refusal. Times: ``at`` is ISO 8601 or OpenECPDS's ``yyyyMMddHHmmss``, UTC when no
zone is given; durations (``lifetime``, ``delay``) are ``30s``, ``10m``, ``2d``, ``1w`` or ISO 8601;
flags are true when present with an empty value or ``1``, ``true``, ``yes``, ``on``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bus.config.durations import parse_duration
from bus.errors import ConfigurationError
from bus.events.datafiles import RefusalReason, SubmissionMode
from producers.ingest.core import DEFAULT_PRIORITY, Refused, Submission

OPTIONS = (
    "destination",
    "target",
    "priority",
    "lifetime",
    "delay",
    "at",
    "metadata",
    "standby",
    "asap",
    "event",
    "requeue",
    "force",
    "version",
    "identity",
    "original",
)
FLAGS = ("standby", "asap", "event", "requeue", "force")
_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Invalid(Exception):
    field: str
    message: str


def options(query: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, str]:
    """The raw options of a request: each from the query, else its ``X-Ecpds-*`` header."""
    found: dict[str, str] = {}
    for name in OPTIONS:
        value = query.get(name)
        if value is None:
            value = headers.get(f"x-ecpds-{name}")
        if value is not None:
            found[name] = value
    return found


def _flag(raw: Mapping[str, str], name: str) -> bool:
    value = raw.get(name)
    if value is None:
        return False
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Invalid(name, f"{name} must be true or false, got {value!r}")


def parse_time(value: str) -> datetime:
    """``yyyyMMddHHmmss`` or ISO 8601; naive times are UTC."""
    text = value.strip()
    try:
        if len(text) == 14 and text.isdigit():
            moment = datetime.strptime(text, "%Y%m%d%H%M%S")
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("at", f"expected yyyyMMddHHmmss or ISO 8601, got {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_metadata(value: str) -> dict[str, str]:
    """``k=v,k2=v2`` into a mapping (values may not contain a comma)."""
    found: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise Invalid("metadata", f"expected name=value pairs, comma-separated, got {item!r}")
        found[name.strip()] = text.strip()
    return found


def _duration(raw: Mapping[str, str], name: str) -> int | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_duration(value, name)
    except ConfigurationError as error:
        raise Invalid(name, error.reason) from None


def submission(
    raw: Mapping[str, str],
    *,
    size: int | None,
    user: str | None,
    requested_by: str,
) -> Submission | Refused:
    """A ``Submission`` from raw options, or the refusal naming the bad option."""
    try:
        requeue, force = _flag(raw, "requeue"), _flag(raw, "force")
        if requeue and force:
            raise Invalid("force", "give requeue or force, not both")
        priority_text = raw.get("priority", "")
        try:
            priority = int(priority_text) if priority_text else DEFAULT_PRIORITY
        except ValueError:
            message = f"priority must be a number 0-99, got {priority_text!r}"
            raise Invalid("priority", message) from None
        return Submission(
            destination=raw.get("destination", "").strip(),
            target=raw.get("target", "").strip(),
            priority=priority,
            lifetime_ms=_duration(raw, "lifetime"),
            delay_ms=_duration(raw, "delay"),
            at=parse_time(raw["at"]) if raw.get("at") else None,
            metadata=parse_metadata(raw.get("metadata", "")),
            standby=_flag(raw, "standby"),
            asap=_flag(raw, "asap"),
            notify=_flag(raw, "event"),
            mode=(
                SubmissionMode.FORCE
                if force
                else SubmissionMode.REQUEUE
                if requeue
                else SubmissionMode.NORMAL
            ),
            version=raw.get("version") or None,
            identity=raw.get("identity") or None,
            size=size,
            user=user,
            requested_by=requested_by,
            original=raw.get("original") or None,
        )
    except Invalid as error:
        return Refused(RefusalReason.INVALID, error.field, error.message)
