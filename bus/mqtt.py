"""The MQTT broker ecpds talks to, and a health probe for it.

By default ``ecpds up`` runs the embedded amqtt broker in its own process, bound to
127.0.0.1; ``ECPDS_MQTT_BROKER=mosquitto`` starts Debian's mosquitto through
``infra/mqtt/mosquitto.sh`` instead, and ``external`` uses a broker someone else runs. Every
client (notifier, acquisition, tests) reaches whichever it is at ``mqtt_host:mqtt_port``.

Subscriber access: once ``python -m consumers.notifier.subscribers write`` has made the password
and ACL files (``access_directory``), the embedded broker enforces them at its next start
(``bus.mqtt_access``) and mosquitto reads them (``infra/mqtt/mosquitto.sh``).

The embedded broker speaks MQTT 3.1.1 only and logs every MQTT 5 CONNECT as an invalid
protocol, so clients speak 3.1.1 to it (``speaks_mqtt5``); the probe and the WIS2 subscriber
speak 3.1.1 to every broker (they need nothing of MQTT 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.client as paho
from amqtt.broker import Broker
from amqtt.contexts import BrokerConfig, ListenerConfig
from amqtt.errors import BrokerError
from paho.mqtt.enums import CallbackAPIVersion

from bus.errors import InfrastructureError
from bus.settings import MqttBroker, Settings


def access_directory(settings: Settings) -> Path:
    """Where the subscriber password and ACL files are kept (for either broker)."""
    return settings.var_dir / "mosquitto"


def access_of(settings: Settings) -> Path | None:
    """The subscriber files' folder when they exist (subscriber access is on), else None."""
    where = access_directory(settings)
    return where if (where / "acl").exists() else None


def speaks_mqtt5(broker: MqttBroker) -> bool:
    """Whether a client may open with MQTT 5 to ``broker`` (not to the embedded 3.1.1 one)."""
    return broker != "embedded"


def broker_config(host: str, port: int, access: Path | None = None) -> BrokerConfig:
    """Embedded broker: one TCP listener on ``host:port``; anonymous clients may do anything,
    unless ``access`` names the folder of the subscriber files (``bus.mqtt_access``)."""
    plugins: dict[str, object] = {
        "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
    }
    if access is not None:
        where = {"directory": str(access)}
        plugins = {"bus.mqtt_access.FileAuth": where, "bus.mqtt_access.FileTopics": where}
    return BrokerConfig(
        listeners={"default": ListenerConfig(bind=f"{host}:{port}")}, plugins=plugins
    )


@contextlib.asynccontextmanager
async def embedded_broker(
    host: str, port: int, access: Path | None = None
) -> AsyncIterator[Broker]:
    """Run the amqtt broker for the duration of the block (``access``: see ``broker_config``)."""
    broker = Broker(broker_config(host, port, access))
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
