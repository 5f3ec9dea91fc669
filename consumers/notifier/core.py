"""What the notifier publishes for a delivered file: pure, ``now`` passed in.

Rules kept here:

- Only a destination whose ``mqtt.publish`` is true is notified; an expired transfer is not.
- Topic: ``mqtt.topic`` or ``<destination>/``; a trailing ``/`` appends the transfer's target;
  runs of slashes collapse to one.
- Payload: ``mqtt.payload`` verbatim when set, else a WIS2 notification message (GeoJSON
  Feature, WIS2 Notification Message 1.x, ``conformsTo`` core). Its ``id`` is derived from the
  transfer id and attempt (UUID 5), so a redelivered success publishes the same id and
  subscribers can deduplicate.
- ``integrity`` is given only as the schema allows it: sha512 (base64) of the stored content,
  and only when the file was delivered uncompressed (else the checksum would not describe the
  linked bytes). The schema has no md5 method, so an md5-only file gets no ``integrity``.
- The canonical link is the delivered file as a URL ``<protocol>://<address>/<remote path>``
  from the host that delivered it: never its login or password.
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import posixpath
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from bus.config.view import ConfigView
from bus.events.base import Compression, Envelope
from bus.events.config import Host, MqttSettings
from bus.events.datafiles import Checksums
from bus.events.notifications import NotificationFailed, NotificationPublished
from bus.events.transfers import TransferQueued, TransferSucceeded

WIS2_CORE: Final = "http://wis.wmo.int/spec/wnm/1/conf/core"
# the namespace of message ids: uuid5(NAMESPACE, "<transfer id>/<attempt>")
NAMESPACE: Final = uuid.UUID("6f1e4c1e-2d7b-5a52-9a0e-6e6f74696669")
_SLASHES = re.compile(r"/{2,}")


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


@dataclass(frozen=True, slots=True)
class Skip:
    """No message for this transfer, and why."""

    reason: str


def topic_for(destination: str, mqtt: MqttSettings, target: str) -> str:
    """The MQTT topic: configured or ``<destination>/``; trailing ``/`` appends the target."""
    topic = mqtt.topic or f"{destination}/"
    if topic.endswith("/"):
        topic = topic + target
    return _SLASHES.sub("/", topic)


def message_id(transfer_id: str, attempt: int) -> str:
    """The same id for the same transfer attempt, whoever computes it and however often."""
    return str(uuid.uuid5(NAMESPACE, f"{transfer_id}/{attempt}"))


def canonical_href(host: Host | None, remote_path: str) -> str:
    """Where the file was delivered, as a URL without credentials."""
    if host is None:
        return remote_path  # the host was removed since: the path is all that is known
    path = "/" + remote_path.lstrip("/")
    return f"{host.protocol}://{host.address}{path}"


def integrity(checksums: Checksums | None, compression: Compression) -> dict[str, str] | None:
    """The WIS2 integrity object, when the schema can express it (see the module docstring)."""
    if checksums is None or checksums.sha512 is None or compression is not Compression.NONE:
        return None
    value = base64.b64encode(bytes.fromhex(checksums.sha512)).decode("ascii")
    return {"method": "sha512", "value": value}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wis2_message(
    *,
    message_id: str,
    data_id: str,
    href: str,
    media_type: str,
    length: int,
    data_time: datetime,
    now: datetime,
    checks: dict[str, str] | None,
) -> dict[str, object]:
    """A WIS2 notification message (a GeoJSON Feature) as a JSON-ready dict."""
    properties: dict[str, object] = {
        "data_id": data_id,
        "datetime": rfc3339(data_time),
        "pubtime": rfc3339(now),
        "content_length": length,
    }
    if checks is not None:
        properties["integrity"] = checks
    return {
        "id": message_id,
        "conformsTo": [WIS2_CORE],
        "type": "Feature",
        "geometry": None,
        "properties": properties,
        "links": [{"rel": "canonical", "type": media_type, "href": href, "length": length}],
    }


def decide(
    done: TransferSucceeded, queued: Queued | None, view: ConfigView, now: datetime
) -> Notification | Skip:
    """The message for a delivered file, or why there is none.

    As in OpenECPDS, only a transfer with the event flag is announced (``event`` on the API
    and the CLI, ``acquisition.event``), and only to a destination with ``mqtt.publish``.
    Without the transfer's ``TransferQueued`` (the notifier restarted past it, or forgot it)
    the flag is not known and the message is published with what is known (an announcement
    is not lost for a restart): the target is the delivered file's name, the length the bytes
    sent, no integrity, and the expiry only the configured one.
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
    data_id = _SLASHES.sub("/", f"{done.destination}/{target}")
    ident = message_id(done.transfer_id, done.attempt)
    if mqtt.payload is not None:
        payload = mqtt.payload.encode("utf-8")
    else:
        media_type = mimetypes.guess_type(target)[0] or "application/octet-stream"
        message = wis2_message(
            message_id=ident,
            data_id=data_id,
            href=canonical_href(view.hosts.get(done.host_id), done.remote_path),
            media_type=media_type,
            length=done.bytes_sent,
            data_time=queued.queue_time if queued is not None else done.envelope.occurred_at,
            now=now,
            checks=integrity(queued.checksums if queued else None, done.compression),
        )
        payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return Notification(
        destination=done.destination,
        transfer_id=done.transfer_id,
        data_file_id=queued.data_file_id if queued is not None else "",  # "" = not known
        topic=topic_for(done.destination, mqtt, target),
        payload=payload,
        qos=mqtt.qos,
        retain=mqtt.retain,
        expiry_interval_s=expiry,
        content_type=mqtt.content_type
        or ("application/geo+json" if mqtt.payload is None else None),
        message_id=ident,
        data_id=data_id,
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


def _envelope(cause: Envelope, now: datetime, source: str, name: str) -> Envelope:
    # derived from the message id: a redelivered outcome keeps its event id
    return Envelope(
        event_id=str(uuid.uuid5(NAMESPACE, name)),
        occurred_at=now,
        source=source,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
    )
