"""What the notifier publishes for a delivered or expired file: pure, ``now`` passed in.

Rules kept here:

- Only a destination whose ``mqtt.publish`` is true is notified; an expired transfer is not.
- A static ``mqtt.payload`` is sent verbatim on ``mqtt.topic`` (or ``<destination>/``; a
  trailing ``/`` appends the target): the operator's own message, not a WIS2 one.
- Otherwise the message is a WIS2 Notification Message 1.x, built from the destination's
  ``wis2.*`` settings (``bus.config.wis2``) on ``origin/a/wis2/<centre>/data/<policy>/<topic>``;
  a destination without them is refused (its topic would not be on the hierarchy), never sent.
- ``data_id`` is ``<centre>/<destination>/<target>``; ``id`` is a UUID 5 of the transfer,
  attempt and relation, so a redelivered event publishes the same id (subscribers deduplicate).
- Exactly one link: ``canonical``; ``update`` when the file republishes a ``data_id`` (a new
  file instance, or another transfer announced it before); ``deletion`` when the file expired or
  was deleted and the destination asks (``wis2.deletion``). Its ``href`` is where subscribers
  download: ``wis2.downloadBase`` or the Data Portal's HTTPS address, then ``/<destination>/``
  (the date folder when the destination groups by date) and the target; never credentials.
- ``integrity`` is the sha512 (base64) of the stored bytes, which the portal serves; ``length``
  their size. ``geometry``, ``datetime`` or ``start_datetime``/``end_datetime`` come from the
  file's metadata (``geometry`` as GeoJSON or ``latitude``/``longitude``); else null.
- Every WIS2 message is checked (``consumers.notifier.wis2``) before it is handed out: one that
  breaks a rule becomes a ``Refused`` with the reason.
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import posixpath
import re
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from bus.config import wis2 as wis2_settings
from bus.config.options import TRUE as FLAG_TRUE
from bus.config.view import ConfigView
from bus.errors import ConfigurationError
from bus.events.base import Envelope
from bus.events.config import DeleteFromSpool, Destination, MqttSettings
from bus.events.datafiles import Checksums
from bus.events.notifications import NotificationFailed, NotificationPublished, NotificationRefused
from bus.events.products import TransferLate
from bus.events.transfers import TransferQueued, TransferSucceeded
from bus.templates.dates import DateFormatError, compile_format
from consumers.notifier import wis2

WIS2_CORE: Final = "http://wis.wmo.int/spec/wnm/1/conf/core"
# the namespace of message ids: uuid5(NAMESPACE, "<transfer id>/<attempt>[/<relation>]")
NAMESPACE: Final = uuid.UUID("6f1e4c1e-2d7b-5a52-9a0e-6e6f74696669")
GEOJSON: Final = "application/geo+json"
_SLASHES = re.compile(r"/{2,}")
Relation = Literal["canonical", "update", "deletion"]


@dataclass(frozen=True, slots=True)
class Queued:
    """What the notifier remembers of a transfer from its ``TransferQueued``."""

    data_file_id: str
    target: str
    size: int
    expiry_time: datetime
    queue_time: datetime
    checksums: Checksums | None = None
    notify: bool = True  # the event flag (API/CLI ``event``, ``acquisition.event``)
    file_instance: int = 1
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, event: TransferQueued) -> Queued:
        return cls(
            data_file_id=event.data_file_id,
            target=event.target,
            size=event.size,
            expiry_time=event.expiry_time,
            queue_time=event.queue_time,
            checksums=event.checksums,
            notify=event.notify,
            file_instance=event.file_instance,
            metadata=dict(event.metadata),
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """One MQTT message to publish, and what to record about it."""

    destination: str
    transfer_id: str
    data_file_id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    expiry_interval_s: int | None  # MQTT 5 message expiry; None = never expires
    content_type: str | None
    message_id: str  # the WIS2 id (also set for a static payload: it names the attempt)
    data_id: str
    relation: str = "canonical"  # of the WIS2 link ("" for a static payload)


@dataclass(frozen=True, slots=True)
class Skip:
    """No message for this transfer, and why (not a notification case)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A message that would break a WIS2 rule: not sent, and recorded with the reason."""

    destination: str
    transfer_id: str
    data_file_id: str
    topic: str | None
    message_id: str
    data_id: str | None
    reason: str


def topic_for(destination: str, mqtt: MqttSettings, target: str) -> str:
    """A static payload's topic: configured or ``<destination>/``; a trailing ``/`` appends
    the target."""
    topic = mqtt.topic or f"{destination}/"
    if topic.endswith("/"):
        topic = topic + target
    return _SLASHES.sub("/", topic)


def message_id(transfer_id: str, attempt: int, relation: str = "canonical") -> str:
    """The same id for the same message, whoever computes it and however often."""
    name = (
        f"{transfer_id}/{attempt}"
        if relation == "canonical"
        else f"{transfer_id}/{attempt}/{relation}"
    )
    return str(uuid.uuid5(NAMESPACE, name))


def data_id_of(settings: wis2_settings.Wis2Settings, destination: str, target: str) -> str:
    return _SLASHES.sub("/", f"{settings.centre_id}/{destination}/{target.lstrip('/')}")


def download_href(dest: Destination, base: str, target: str, queue_time: datetime) -> str:
    """Where a subscriber downloads ``target`` of ``dest``: ``base/<destination>/[<day>/]<target>``
    (the Data Portal's path of the file; ``base`` never carries credentials)."""
    parts = [dest.name]
    if dest.group_by_date:
        try:
            day = compile_format(dest.date_format)
        except DateFormatError:  # as the portal: a safe name rather than no link
            day = compile_format("yyyyMMdd")
        parts.append(day.format(queue_time))
    parts.extend(p for p in target.split("/") if p)
    return base.rstrip("/") + "/" + "/".join(urllib.parse.quote(p) for p in parts)


def integrity(checksums: Checksums | None) -> dict[str, str] | None:
    """The WIS2 integrity object of the stored bytes, when their sha512 is known."""
    if checksums is None or checksums.sha512 is None:
        return None
    value = base64.b64encode(bytes.fromhex(checksums.sha512)).decode("ascii")
    return {"method": "sha512", "value": value}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _moment(text: str, key: str) -> str:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"metadata {key} {text!r} is not an ISO 8601 date-time") from None
    return rfc3339(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def data_times(metadata: Mapping[str, str]) -> dict[str, object]:
    """``datetime``, or ``start_datetime`` and ``end_datetime``, from the file's metadata."""
    if "start_datetime" in metadata or "end_datetime" in metadata:
        if "start_datetime" not in metadata or "end_datetime" not in metadata:
            raise ValueError("metadata needs both start_datetime and end_datetime")
        return {
            "start_datetime": _moment(metadata["start_datetime"], "start_datetime"),
            "end_datetime": _moment(metadata["end_datetime"], "end_datetime"),
        }
    if "datetime" in metadata:
        return {"datetime": _moment(metadata["datetime"], "datetime")}
    return {"datetime": None}


def geometry(metadata: Mapping[str, str]) -> object:
    """The GeoJSON geometry of the file's metadata (``geometry``, or ``latitude`` and
    ``longitude``), or None."""
    if "geometry" in metadata:
        try:
            return json.loads(metadata["geometry"])
        except ValueError:
            raise ValueError("metadata geometry is not GeoJSON") from None
    if "latitude" in metadata and "longitude" in metadata:
        try:
            return {
                "type": "Point",
                "coordinates": [float(metadata["longitude"]), float(metadata["latitude"])],
            }
        except ValueError:
            raise ValueError("metadata latitude/longitude are not numbers") from None
    return None


def wis2_message(
    *,
    ident: str,
    data_id: str,
    relation: Relation,
    href: str,
    media_type: str,
    length: int,
    now: datetime,
    checks: dict[str, str] | None,
    metadata: Mapping[str, str],
    metadata_id: str | None,
) -> dict[str, Any]:
    """A WIS2 notification message (a GeoJSON Feature) as a JSON-ready dict."""
    properties: dict[str, object] = {"data_id": data_id, "pubtime": rfc3339(now)}
    properties.update(data_times(metadata))
    if metadata_id is not None:
        properties["metadata_id"] = metadata_id
    if checks is not None:
        properties["integrity"] = checks
    return {
        "id": ident,
        "conformsTo": [WIS2_CORE],
        "type": "Feature",
        "geometry": geometry(metadata),
        "properties": properties,
        "links": [{"rel": relation, "type": media_type, "href": href, "length": length}],
    }


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decide(
    done: TransferSucceeded,
    queued: Queued | None,
    view: ConfigView,
    now: datetime,
    *,
    portal: str,
    republished: bool = False,
) -> Notification | Skip | Refused:
    """The message for a delivered file, or why there is none.

    As in OpenECPDS, only a transfer with the event flag is announced (``event`` on the API
    and the CLI, ``acquisition.event``), and only to a destination with ``mqtt.publish``.
    Without the transfer's ``TransferQueued`` (the notifier restarted past it, or forgot it)
    the flag is not known and the message is published with what is known (an announcement
    is not lost for a restart): the target is the delivered file's name, the length the bytes
    sent, no integrity, and the expiry only the configured one. ``portal`` is the Data
    Portal's HTTPS base URL; ``republished`` says another transfer announced this ``data_id``.
    """
    dest = view.destinations.get(done.destination)
    if dest is None:
        return Skip("destination not configured")
    mqtt = dest.mqtt
    if mqtt is None or not mqtt.publish:
        return Skip("destination does not publish notifications")
    if queued is not None and not queued.notify:
        return Skip("transfer without the event flag")
    expiry: int | None = None
    if queued is not None:
        remaining = (queued.expiry_time - now).total_seconds()
        if remaining <= 0:
            return Skip("transfer expired")
        expiry = math.ceil(remaining)
    if mqtt.expiry_interval_ms is not None:
        expiry = max(1, math.ceil(mqtt.expiry_interval_ms / 1000))
    target = queued.target if queued is not None else posixpath.basename(done.remote_path)
    data_file_id = queued.data_file_id if queued is not None else ""  # "" = not known
    if mqtt.payload is not None:
        return Notification(
            destination=done.destination,
            transfer_id=done.transfer_id,
            data_file_id=data_file_id,
            topic=topic_for(done.destination, mqtt, target),
            payload=mqtt.payload.encode("utf-8"),
            qos=mqtt.qos,
            retain=mqtt.retain,
            expiry_interval_s=expiry,
            content_type=mqtt.content_type,
            message_id=message_id(done.transfer_id, done.attempt),
            data_id=_SLASHES.sub("/", f"{done.destination}/{target}"),
            relation="",
        )
    relation: Relation = (
        "update"
        if republished or (queued is not None and queued.file_instance > 1)
        else "canonical"
    )
    ident = message_id(done.transfer_id, done.attempt, relation)

    def refused(reason: str, topic: str | None = None, data_id: str | None = None) -> Refused:
        return Refused(
            done.destination, done.transfer_id, data_file_id, topic, ident, data_id, reason
        )

    try:
        settings = wis2_settings.settings_for(dest, view.transfer_groups)
    except ConfigurationError as error:  # configured before the check existed
        return refused(f"{error.field}: {error.reason}")
    if settings is None:
        return refused(
            "no WIS2 settings (wis2.centreId, wis2.topic): the topic would not be on the "
            "WIS2 topic hierarchy"
        )
    topic = settings.full_topic
    data_id = data_id_of(settings, done.destination, target)
    if settings.download_base is None and dest.delete_from_spool is DeleteFromSpool.ON_SUCCESS:
        return refused(
            "files are deleted on success, so the portal link would not download: "
            "set wis2.downloadBase",
            topic,
            data_id,
        )
    queue_time = queued.queue_time if queued is not None else done.envelope.occurred_at
    try:
        message = wis2_message(
            ident=ident,
            data_id=data_id,
            relation=relation,
            href=download_href(dest, settings.download_base or portal, target, queue_time),
            media_type=mimetypes.guess_type(target)[0] or "application/octet-stream",
            length=queued.size if queued is not None else done.bytes_sent,
            now=now,
            checks=integrity(queued.checksums if queued is not None else None),
            metadata=queued.metadata if queued is not None else {},
            metadata_id=settings.metadata_id,
        )
    except ValueError as error:
        return refused(str(error), topic, data_id)
    payload = encode(message)
    why = wis2.refusal(topic, payload, message)
    if why is not None:
        return refused(why, topic, data_id)
    return Notification(
        destination=done.destination,
        transfer_id=done.transfer_id,
        data_file_id=data_file_id,
        topic=topic,
        payload=payload,
        qos=mqtt.qos,
        retain=mqtt.retain,
        expiry_interval_s=expiry,
        content_type=mqtt.content_type or GEOJSON,
        message_id=ident,
        data_id=data_id,
        relation=relation,
    )


def deletion(note: Notification, view: ConfigView, now: datetime) -> Notification | Skip | Refused:
    """The ``deletion`` of a file announced by ``note`` (its stored bytes expired or were
    deleted), when its destination still asks for deletions (``wis2.deletion``)."""
    dest = view.destinations.get(note.destination)
    if dest is None or dest.mqtt is None or not dest.mqtt.publish or note.relation == "":
        return Skip("destination no longer publishes WIS2 notifications")
    try:
        settings = wis2_settings.settings_for(dest, view.transfer_groups)
    except ConfigurationError:
        settings = None
    if settings is None or not settings.deletion:
        return Skip("destination does not announce deletions")
    announced = json.loads(note.payload)
    ident = message_id(note.transfer_id, 0, "deletion")
    announced["id"] = ident
    announced["properties"]["pubtime"] = rfc3339(now)
    announced["properties"].pop("content", None)
    announced["links"][0]["rel"] = "deletion"
    payload = encode(announced)
    why = wis2.refusal(note.topic, payload, announced)
    if why is not None:
        return Refused(
            note.destination,
            note.transfer_id,
            note.data_file_id,
            note.topic,
            ident,
            note.data_id,
            why,
        )
    return Notification(
        destination=note.destination,
        transfer_id=note.transfer_id,
        data_file_id=note.data_file_id,
        topic=note.topic,
        payload=payload,
        qos=note.qos,
        retain=False,
        expiry_interval_s=None,
        content_type=note.content_type,
        message_id=ident,
        data_id=note.data_id,
        relation="deletion",
    )


LATE_TOPIC: Final = "ecpds/late/{destination}"  # where lateness goes unless mqtt.lateTopic


def lateness(late: TransferLate, view: ConfigView) -> Notification | Skip:
    """The message of a ``TransferLate`` (from the timeliness watcher) when its destination
    asks for it (``mqtt.onLate``): JSON, on ``mqtt.lateTopic`` or ``ecpds/late/<destination>``,
    never on the WIS2 hierarchy (it is no data); its id is the event's (ids of lateness events
    are derived from what they report, so a redelivery publishes the same id)."""
    dest = view.destinations.get(late.destination)
    if dest is None or dest.properties.get("mqtt.onLate", "").strip().lower() not in FLAG_TRUE:
        return Skip("destination does not publish lateness")
    topic = dest.properties.get("mqtt.lateTopic") or LATE_TOPIC.format(destination=dest.name)
    moments = {
        "base_time": late.base_time,
        "predicted_at": late.predicted_at,
        "target_at": late.target_at,
        "observed_at": late.observed_at,
    }
    payload = {
        "id": late.envelope.event_id,
        "destination": late.destination,
        "product": f"{late.stream}/{late.time}/{late.step}/{late.type}",
        "transfer_id": late.transfer_id,
        "measure": late.measure.value.lower(),
        "lateness": late.lateness.value.lower(),
        **{k: None if v is None else rfc3339(v) for k, v in moments.items()},
        "late_by_s": late.late_by_ms // 1000,
    }
    return Notification(
        destination=late.destination,
        transfer_id=late.transfer_id or "",
        data_file_id="",
        topic=topic,
        payload=encode(payload),
        qos=dest.mqtt.qos if dest.mqtt is not None else 1,
        retain=False,
        expiry_interval_s=None,
        content_type="application/json",
        message_id=late.envelope.event_id,
        data_id="",
        relation="",
    )


def published(
    note: Notification, broker: str, cause: Envelope, now: datetime, source: str
) -> NotificationPublished:
    """The record of a message the broker accepted."""
    return NotificationPublished(
        envelope=_envelope(cause, now, source, f"{note.message_id}/published"),
        destination=note.destination,
        transfer_id=note.transfer_id,
        data_file_id=note.data_file_id,
        topic=note.topic,
        qos=note.qos,
        retain=note.retain,
        payload_size=len(note.payload),
        broker=broker,
        message_id=note.message_id,
        data_id=note.data_id,
    )


def failed(
    note: Notification,
    error: BaseException,
    retriable: bool,
    cause: Envelope,
    now: datetime,
    source: str,
) -> NotificationFailed:
    """The record of a message that could not be published."""
    return NotificationFailed(
        envelope=_envelope(cause, now, source, f"{note.message_id}/failed"),
        destination=note.destination,
        transfer_id=note.transfer_id,
        topic=note.topic,
        error_class=type(error).__name__,
        message=str(error),
        retriable=retriable,
    )


def refusal(refused: Refused, cause: Envelope, now: datetime, source: str) -> NotificationRefused:
    """The record of a message that broke a WIS2 rule and was not sent."""
    return NotificationRefused(
        envelope=_envelope(cause, now, source, f"{refused.message_id}/refused"),
        destination=refused.destination,
        transfer_id=refused.transfer_id,
        data_file_id=refused.data_file_id,
        topic=refused.topic,
        message_id=refused.message_id,
        data_id=refused.data_id,
        reason=refused.reason,
    )


def _envelope(cause: Envelope, now: datetime, source: str, name: str) -> Envelope:
    # derived from the message id: a redelivered outcome keeps its event id
    return Envelope(
        event_id=str(uuid.uuid5(NAMESPACE, name)),
        occurred_at=now,
        source=source,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
    )
