"""The notifier's MQTT client against the embedded amqtt broker, which speaks 3.1.1 only.

amqtt answers an MQTT 5 CONNECT with "unacceptable protocol version" and logs it as an
``Invalid protocol``; under ``ecpds up`` that line came every ~10 s (paho retrying MQTT 5 while
nothing was published). These tests read amqtt's own log: the broker is the judge of what was
spoken to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from bus.mqtt import aprobe, speaks_mqtt5
from bus.settings import Settings
from consumers.notifier.adapters import PahoBroker
from consumers.notifier.core import Notification


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def invalid_protocol(self) -> list[str]:
        return [m for m in self.messages if "Invalid protocol" in m]


@pytest.fixture
def broker_log() -> Iterator[_Records]:
    """What the embedded broker logs while the test runs."""
    records = _Records()
    logger = logging.getLogger("amqtt")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)


def _note(topic: str) -> Notification:
    return Notification(
        destination="d",
        transfer_id="t1",
        data_file_id="df1",
        topic=topic,
        payload=b"{}",
        qos=1,
        retain=False,
        expiry_interval_s=60,
        content_type="application/geo+json",
        message_id="m1",
        data_id="d/x",
    )


def test_only_the_embedded_broker_is_spoken_to_in_3_1_1() -> None:
    """mosquitto and an external broker may be opened with MQTT 5; the embedded one may not."""
    assert not speaks_mqtt5("embedded")
    assert speaks_mqtt5("mosquitto")
    assert speaks_mqtt5("external")


async def test_no_client_of_ecpds_opens_mqtt5_to_the_embedded_broker(
    mqtt_port: int, broker_log: _Records
) -> None:
    """The health probe and the notifier built from the settings connect and publish to the
    embedded broker without one MQTT 5 CONNECT."""
    settings = Settings(mqtt_broker="embedded", mqtt_port=mqtt_port)
    assert await aprobe(settings.mqtt_host, settings.mqtt_port)
    broker = PahoBroker.for_settings(settings, client_id="notifier-embedded")
    await broker.start()
    try:
        await broker.publish(_note("d/x"))
        assert broker.protocol == "3.1.1"
    finally:
        await broker.stop()
    assert broker_log.messages, "the broker's log is not captured: the test would prove nothing"
    assert broker_log.invalid_protocol() == []


async def test_a_broker_refusing_mqtt5_gets_3_1_1_at_once_without_waiting_for_a_publish(
    mqtt_port: int, broker_log: _Records
) -> None:
    """Opened with MQTT 5, the notifier switches to 3.1.1 on the first refusal and stays
    connected: one ``Invalid protocol`` line, not one per paho retry."""
    broker = PahoBroker("127.0.0.1", mqtt_port, client_id="notifier-v5-first", timeout=5.0)
    await broker.start()
    try:
        for _ in range(60):  # connected within 3 s; paho would retry MQTT 5 at 1, 3, 7 s
            if broker.protocol == "3.1.1" and broker.connected:
                break
            await asyncio.sleep(0.05)
        assert (broker.protocol, broker.connected) == ("3.1.1", True)
        await asyncio.sleep(1.5)  # past paho's first retry: nothing more is tried in MQTT 5
        assert len(broker_log.invalid_protocol()) == 1
        await broker.publish(_note("d/y"))
    finally:
        await broker.stop()
