"""The MQTT broker ecpds talks to, and a health probe for it.

By default ``ecpds up`` runs the embedded amqtt broker in its own process, bound to
127.0.0.1; ``ECPDS_MQTT_BROKER=mosquitto`` starts Debian's mosquitto through
``infra/mqtt/mosquitto.sh`` instead, and ``external`` uses a broker someone else runs. Every
client (notifier, acquisition, tests) reaches whichever it is at ``mqtt_host:mqtt_port``.

The embedded broker speaks MQTT 3.1.1 only and logs every MQTT 5 CONNECT as an invalid
protocol, so clients speak 3.1.1 to it (``speaks_mqtt5``); the probe and the WIS2 subscriber
speak 3.1.1 to every broker (they need nothing of MQTT 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import paho.mqtt.client as paho
from amqtt.broker import Broker
from amqtt.contexts import BrokerConfig, ListenerConfig
from amqtt.errors import BrokerError
from paho.mqtt.enums import CallbackAPIVersion

from bus.errors import InfrastructureError
from bus.settings import MqttBroker


def speaks_mqtt5(broker: MqttBroker) -> bool:
    """Whether a client may open with MQTT 5 to ``broker`` (not to the embedded 3.1.1 one)."""
    return broker != "embedded"


def broker_config(host: str, port: int) -> BrokerConfig:
    """Embedded broker: one TCP listener on ``host:port``, anonymous clients allowed."""
    return BrokerConfig(
        listeners={"default": ListenerConfig(bind=f"{host}:{port}")},
        plugins={"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    )


@contextlib.asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[Broker]:
    """Run the amqtt broker for the duration of the block."""
    broker = Broker(broker_config(host, port))
    try:
        await broker.start()
    except BrokerError as error:
        raise InfrastructureError(
            f"the embedded MQTT broker cannot listen on {host}:{port} ({error}): "
            "stop what uses the port or set ECPDS_MQTT_PORT"
        ) from error
    try:
        yield broker
    finally:
        await broker.shutdown()


def probe(host: str, port: int, timeout: float = 5.0) -> bool:
    """True when an MQTT CONNECT to the broker is accepted (blocking; run in a thread)."""
    accepted = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="ecpds-probe", protocol=paho.MQTTv311
    )

    def on_connect(
        c: paho.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if not getattr(reason, "is_failure", False):
            accepted.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    try:
        return accepted.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


async def aprobe(host: str, port: int, timeout: float = 5.0) -> bool:
    return await asyncio.to_thread(probe, host, port, timeout)
