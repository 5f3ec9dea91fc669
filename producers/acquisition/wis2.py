"""Notification-driven acquisition: WIS2 notifications over MQTT (ECPDS-REFERENCE §3.3).

A host with ``http.mqttMode=yes`` is not polled: its Directory lines are MQTT topic filters
(``cache/a/wis2/+/data/core/...``) on the broker at its address (port ``http.mqttPort``,
default 1883). Each message is a WIS2 notification (schema in ``shared/wis2``); rules kept:

- the file is the notification's ``links[rel=canonical].href``; its target is the
  ``properties.data_id`` (the dedup key: a ``data_id`` already acquired is skipped, so the
  same notification from two global brokers is acquired once);
- the bytes are checked while they stream into the ingest service: the length
  (``links[].length`` or ``properties.content.size``) and the integrity value
  (``properties.integrity``: ``method`` sha256/384/512, sha3-*, md5; value base64 or hex).
  A mismatch raises inside the stream, so nothing is stored or queued, and the retrieval is
  reported failed and not retriable (``IntegrityMismatch``);
- a message that is not a usable notification is reported as a failed retrieval too
  (``InvalidNotification``): no message is dropped silently;
- the paho client runs its network thread; messages cross into the event loop through a
  queue and are handled one at a time per host, in arrival order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bus.config.options import is_wis2
from bus.events.acquisition import Completeness, DiscoveryReason, RetrievalFailed
from bus.events.config import Host
from bus.logging import get_logger
from producers.acquisition.core import Candidate, Status, parse_options
from producers.acquisition.poll import Poller
from producers.acquisition.streams import Tally, close_quietly, remote_body
from protocols.base import Location, TransferError
from protocols.registry import connect

log = get_logger(__name__)

HASHES: Mapping[str, str] = {
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "sha3-256": "sha3_256",
    "sha3-384": "sha3_384",
    "sha3-512": "sha3_512",
    "md5": "md5",
}


class IntegrityMismatch(TransferError):
    """The bytes do not match the notification's integrity value: refused, not retried."""

    retriable = False


class InvalidNotification(ValueError):
    """A message that is not a usable WIS2 notification."""


@dataclass(frozen=True, slots=True)
class Notification:
    """What acquisition takes from a WIS2 notification."""

    data_id: str
    href: str
    length: int | None = None
    method: str | None = None
    value: str | None = None
    pubtime: datetime | None = None


def is_mqtt_host(host: Host) -> bool:
    return is_wis2(host.options)


def topic_filters(host: Host) -> list[str]:
    """The host's Directory lines as topic filters (blank and ``#``-comment lines skipped)."""
    lines = (line.strip() for line in host.directory.splitlines())
    return [line for line in lines if line and not line.startswith("# ") and line != "#"]


def parse_notification(payload: bytes) -> Notification:
    """The data id, canonical link, length and integrity of a notification."""
    try:
        document = json.loads(payload)
        properties = document["properties"]
        data_id = str(properties["data_id"])
        links = document["links"]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidNotification(f"not a WIS2 notification: {error}") from None
    canonical = next(
        (link for link in links if isinstance(link, dict) and link.get("rel") == "canonical"),
        None,
    )
    if canonical is None or not canonical.get("href"):
        raise InvalidNotification(f"notification {data_id!r} has no canonical link")
    integrity = properties.get("integrity") or {}
    content = properties.get("content") or {}
    length = canonical.get("length", content.get("size") if isinstance(content, dict) else None)
    method = integrity.get("method")
    if method is not None and method not in HASHES:
        raise InvalidNotification(f"unknown integrity method {method!r}")
    pubtime = None
    with contextlib.suppress(ValueError, TypeError, KeyError):
        pubtime = datetime.fromisoformat(str(properties["pubtime"]).replace("Z", "+00:00"))
    return Notification(
        data_id=data_id,
        href=str(canonical["href"]),
        length=int(length) if length is not None else None,
        method=method,
        value=integrity.get("value"),
        pubtime=pubtime,
    )


def digest_matches(value: str, digest: bytes) -> bool:
    """Whether ``value`` (base64, as WIS2 writes it, or hex) is ``digest``."""
    if value.lower() == digest.hex():
        return True
    with contextlib.suppress(binascii.Error, ValueError):
        return base64.b64decode(value, validate=True) == digest
    return False


def target_of(data_id: str) -> str:
    """The data file target of a ``data_id``: a relative path without empty or dot parts."""
    parts = [p for p in data_id.replace(":", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "unnamed"


async def _verified(
    stream: AsyncIterator[bytes], notification: Notification, tally: Tally
) -> AsyncIterator[bytes]:
    hasher = hashlib.new(HASHES[notification.method]) if notification.method else None
    async for chunk in stream:
        if hasher is not None:
            hasher.update(chunk)
        yield chunk
    value = notification.value
    if hasher is not None and value is not None and not digest_matches(value, hasher.digest()):
        tally.error = IntegrityMismatch(
            f"{notification.data_id}: {notification.method} does not match the notification"
        )
        raise tally.error


@dataclass
class Subscriber:
    """Acquires what the notifications of one host announce, for one destination."""

    poller: Poller
    host: Host
    destination: str
    password: str | None = None

    async def run(self) -> None:
        """Subscribe and acquire until cancelled."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        filters = topic_filters(self.host)
        qos = int(self.host.options.get("http.mqttQos", "1"))
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"ecpds-acq-{self.host.id}-{time.monotonic_ns() % 10**6}",
            protocol=paho.MQTTv311,  # what every broker speaks, the embedded one included
        )
        if self.host.login:
            client.username_pw_set(self.host.login, self.password)

        def on_connect(c: paho.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            # subscribed on every (re)connection: a clean session forgets the filters
            for topic in filters:
                c.subscribe(topic, qos=qos)

        def on_message(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (message.topic, bytes(message.payload)))

        client.on_connect = on_connect
        client.on_message = on_message
        name, _, port = self.host.address.partition(":")
        broker_port = int(port or self.host.options.get("http.mqttPort", "1883"))
        client.reconnect_delay_set(1, 30)
        await asyncio.to_thread(client.connect, name, broker_port, 30)
        client.loop_start()
        try:
            while True:
                topic, payload = await queue.get()
                try:
                    await self.handle(topic, payload)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # a publish failure: logged, the next one tried
                    log.error("notification not handled", topic=topic, error=str(error))
        finally:
            client.loop_stop()
            client.disconnect()

    async def handle(self, topic: str, payload: bytes) -> bool:
        """Acquire the file one notification announces; whether it was stored."""
        poller, host, destination = self.poller, self.host, self.destination
        try:
            notification = parse_notification(payload)
        except InvalidNotification as error:
            await poller.publisher.publish(
                poller.topic,
                host.id,
                RetrievalFailed(
                    envelope=poller._envelope(f"{destination}/{topic}"),
                    host_id=host.id,
                    destination=destination,
                    path=topic,
                    error_class="InvalidNotification",
                    message=str(error),
                    retriable=False,
                    duration_ms=0,
                ),
            )
            return False
        target = target_of(notification.data_id)
        known = poller.state.get(destination, target)
        if (known is not None and known.status is Status.ACQUIRED) or (
            (destination, target) in poller.in_flight
        ):
            return False  # this data_id is already here (or on its way)
        options = parse_options(host.options)
        location = Location.parse(notification.href)
        base = Location(
            scheme=location.scheme,
            host=location.host,
            port=location.port,
            user=location.user,
            password=location.password,
        )
        candidate = Candidate(
            path=notification.href,
            name=location.path.rsplit("/", 1)[-1],
            size=notification.length or 0,
            mtime=notification.pubtime or datetime.now(UTC),
            target=target,
        )
        deadline = time.monotonic() + options.retrieval_maximum_duration_ms / 1000
        checksum = (
            (notification.method, notification.value)
            if notification.method and notification.value
            else None
        )
        ok, _ = await poller.retrieve(
            host.id,
            destination,
            candidate,
            options,
            DiscoveryReason.NEW,
            lambda t: _download(base, location.path, notification, deadline, t),
            data_id=notification.data_id,
            checksum=checksum,
            completeness=Completeness.NOTIFIED,  # announced once published: whole
        )
        return ok


async def _download(
    base: Location, path: str, notification: Notification, deadline: float, tally: Tally
) -> AsyncIterator[bytes]:
    """The canonical link's bytes, length and integrity checked; errors recorded in ``tally``."""
    try:
        conn = await connect(base)
    except Exception as error:
        tally.error = error
        raise
    try:
        stream = remote_body(conn, path, notification.length, deadline, tally)
        async for chunk in _verified(stream, notification, tally):
            yield chunk
    finally:
        await close_quietly(conn)
