"""Notification-driven acquisition: WIS2 notifications from a real MQTT broker (embedded amqtt)
announce files on a real HTTP server; each data_id is acquired once, with its length and
integrity checked; a checksum that does not match is refused and reported."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bus.events.acquisition import FileDiscovered, RetrievalFailed, RetrievalSucceeded
from bus.events.config import Association
from bus.events.datafiles import DataFileStored
from bus.events.transfers import TransferQueued
from producers.acquisition.wis2 import (
    InvalidNotification,
    digest_matches,
    parse_notification,
    target_of,
)
from tests.acquisition.conftest import Env
from tests.acquisition.test_runner import GROUP, destination, host, kinds, write
from tests.protocols.test_http import HttpServer


def notification(data_id: str, href: str, data: bytes, *, digest: bytes | None = None) -> bytes:
    value = base64.b64encode(digest or hashlib.sha512(data).digest()).decode()
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "conformsTo": ["http://wis.wmo.int/spec/wnm/1/conf/core"],
            "type": "Feature",
            "geometry": None,
            "properties": {
                "data_id": data_id,
                "pubtime": "2026-11-27T12:00:00Z",
                "integrity": {"method": "sha512", "value": value},
            },
            "links": [
                {"rel": "canonical", "href": href, "type": "application/bufr", "length": len(data)}
            ],
        }
    ).encode()


def test_parse_notification_and_integrity_values() -> None:
    """The canonical link, length and integrity are read; base64 and hex values both check."""
    n = parse_notification(notification("wis2/c/data/core/x.bufr", "http://h/x.bufr", b"abc"))
    assert (n.data_id, n.href, n.length, n.method) == (
        "wis2/c/data/core/x.bufr",
        "http://h/x.bufr",
        3,
        "sha512",
    )
    digest = hashlib.sha512(b"abc").digest()
    assert n.value is not None
    assert digest_matches(n.value, digest)
    assert digest_matches(digest.hex(), digest)
    assert not digest_matches(n.value, hashlib.sha512(b"abd").digest())
    assert target_of("urn:x:/../a//b") == "urn/x/a/b"
    with pytest.raises(InvalidNotification):
        parse_notification(b'{"properties": {"data_id": "a"}, "links": []}')


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path_factory.mktemp("acq-wis2") / "root")
    server.start()
    yield server
    server.kill()


def _publisher(port: int) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"wis2-pub-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


async def test_mqtt_notifications_acquired_once_and_bad_checksum_refused(
    env: Env, http: HttpServer, mqtt_port: int
) -> None:
    """A notified file is stored once however often it is announced; a wrong sha512 is refused
    (failed, not retriable, nothing stored) and reported."""
    good, bad = b"G" * 4096, b"B" * 2048
    write(http.root / "wis" / "good.bufr", good)
    write(http.root / "wis" / "bad.bufr", bad)
    base = f"http://127.0.0.1:{http.port}/public/wis"
    await env.define(
        GROUP,
        destination("acq-wis2"),
        host(
            "wis2-gb", "http", f"127.0.0.1:{mqtt_port}", "cache/a/wis2/+/data/core/#",
            options={"http.mqttMode": "yes"},
        ),
        Association(destination="acq-wis2", host="wis2-gb"),
    )  # fmt: skip
    topic = "cache/a/wis2/xx-centre/data/core/weather/synop"
    good_msg = notification("xx-centre/data/core/good.bufr", f"{base}/good.bufr", good)
    bad_msg = notification(
        "xx-centre/data/core/bad.bufr",
        f"{base}/bad.bufr",
        bad,
        digest=hashlib.sha512(b"x").digest(),
    )
    client = _publisher(mqtt_port)
    try:
        async with env.runner():
            # announced until acquired (the subscription may not be in place at first):
            # every repeat after the first acquisition must be skipped as a duplicate
            for _ in range(60):
                client.publish(topic, good_msg, qos=1)
                events = await env.acquisition("wis2-gb")
                if kinds(events, RetrievalSucceeded):
                    break
                await asyncio.sleep(0.5)
            client.publish(topic, bad_msg, qos=1)
            client.publish(topic, good_msg, qos=1)
            await env.until(
                env.names.acquisition,
                lambda es: any(
                    isinstance(e, RetrievalFailed) and e.host_id == "wis2-gb" for e in es
                ),
            )
    finally:
        client.loop_stop()
        client.disconnect()
    events = await env.acquisition("wis2-gb")
    found = kinds(events, FileDiscovered)
    good_found = [e for e in found if e.data_id == "xx-centre/data/core/good.bufr"]
    assert len(good_found) == 1
    assert good_found[0].checksum_method == "sha512"
    failed = kinds(events, RetrievalFailed)
    assert [(e.error_class, e.retriable) for e in failed] == [("IntegrityMismatch", False)]
    stored = kinds(await env.events(env.names.topics.datafiles), DataFileStored)
    assert failed[0].data_file_id not in {e.data_file_id for e in stored}
    queued = [
        e
        for e in kinds(await env.events(env.names.topics.transfers), TransferQueued)
        if e.destination == "acq-wis2"
    ]
    assert [(e.target, e.size) for e in queued] == [("xx-centre/data/core/good.bufr", len(good))]
