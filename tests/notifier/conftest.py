"""Real MQTT brokers for the notifier tests: Debian's mosquitto (MQTT 5) on free ports, and a
paho subscriber that collects what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.conftest import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@contextlib.contextmanager
def mosquitto(port: int, workdir: Path, extra: str = "") -> Iterator[subprocess.Popen[bytes]]:
    """mosquitto listening on 127.0.0.1:``port`` for the duration of the block (``extra``:
    more lines of its configuration)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}")
    log = (workdir / f"mosquitto-{port}.log").open("w")
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, f"mosquitto exited: see {log.name}"
            assert time.monotonic() < deadline, "mosquitto did not listen in time"
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture(scope="module")
def mosquitto_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A mosquitto broker (MQTT 5) on a free port for the module."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (infra/apt-packages.txt)")
    port = free_port()
    with mosquitto(port, tmp_path_factory.mktemp("mosquitto")):
        yield port


@dataclass(frozen=True)
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    expiry_interval: int | None
    content_type: str | None


class Subscriber:
    """A paho MQTT 5 subscriber collecting every message of its subscriptions."""

    def __init__(
        self,
        port: int,
        protocol: MQTTProtocolVersion = paho.MQTTv5,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.messages: queue.Queue[Received] = queue.Queue()
        self.granted: list[bool] = []  # per subscription: accepted by the broker
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sub-{port}-{time.time_ns()}", protocol=protocol
        )
        if credentials is not None:
            self._client.username_pw_set(*credentials)
        self._client.on_message = self._on_message
        self._port = port

    def _on_message(self, _c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
        props = getattr(m, "properties", None)
        self.messages.put(
            Received(
                topic=m.topic,
                payload=bytes(m.payload),
                qos=m.qos,
                retain=bool(m.retain),
                expiry_interval=getattr(props, "MessageExpiryInterval", None),
                content_type=getattr(props, "ContentType", None),
            )
        )

    async def subscribe(self, topic: str, qos: int = 2) -> bool:
        """Subscribe (connecting first, once); True when the broker granted it."""
        subscribed = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_subscribe(_c: object, _u: object, _m: object, codes: list[Any], _p: object) -> None:
            self.granted.append(not any(c.is_failure for c in codes))
            loop.call_soon_threadsafe(subscribed.set)

        self._client.on_subscribe = on_subscribe
        if not self._client.is_connected():
            connected = asyncio.Event()
            self._client.on_connect = lambda *_: loop.call_soon_threadsafe(connected.set)
            self._client.connect("127.0.0.1", self._port, keepalive=10)
            self._client.loop_start()
            await asyncio.wait_for(connected.wait(), 10)
        self._client.subscribe(topic, qos=qos)
        await asyncio.wait_for(subscribed.wait(), 10)
        return self.granted[-1]

    async def next(self, timeout: float = 15) -> Received:
        return await asyncio.to_thread(self.messages.get, True, timeout)

    async def nothing(self, seconds: float) -> bool:
        """True when no message arrives within ``seconds``."""
        try:
            await asyncio.to_thread(self.messages.get, True, seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
