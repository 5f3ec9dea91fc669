"""The embedded MQTT broker with a real paho client: connect, subscribe, publish, receive."""

from __future__ import annotations

import asyncio
import queue

import paho.mqtt.client as paho

from bus.mqtt import aprobe


def client(port: int, name: str) -> paho.Client:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name)
    c.connect("127.0.0.1", port, keepalive=10)
    return c


async def test_probe_sees_the_embedded_broker(mqtt_port: int) -> None:
    """The health probe gets a CONNACK from the embedded broker, and none from a closed port."""
    assert await aprobe("127.0.0.1", mqtt_port)
    assert not await aprobe("127.0.0.1", 1, timeout=1.0)


async def test_paho_publish_reaches_a_paho_subscriber(mqtt_port: int) -> None:
    """A message published by one paho client arrives at another subscribed with a wildcard."""
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscribed = asyncio.Event()
    loop = asyncio.get_running_loop()

    sub = client(mqtt_port, "sub")
    sub.on_message = lambda c, u, m: received.put((m.topic, m.payload))
    sub.on_subscribe = lambda c, u, mid, codes, props: loop.call_soon_threadsafe(subscribed.set)
    sub.loop_start()
    sub.subscribe("origin/a/wis2/+/data/#", qos=1)
    await asyncio.wait_for(subscribed.wait(), 10)

    pub = client(mqtt_port, "pub")
    pub.loop_start()
    info = pub.publish("origin/a/wis2/fr-meteo/data/core/synop", b'{"id": "1"}', qos=1)
    await asyncio.to_thread(info.wait_for_publish, 10)
    topic, payload = await asyncio.to_thread(received.get, True, 10)
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    assert topic == "origin/a/wis2/fr-meteo/data/core/synop"
    assert payload == b'{"id": "1"}'
