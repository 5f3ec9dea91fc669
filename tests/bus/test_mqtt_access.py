"""Subscriber access on the embedded amqtt broker (``bus.mqtt_access``), from the files
mosquitto reads: sign-in against ``passwd``, reads and writes as ``acl`` grants, files reread
when they change. Real broker, stock paho clients."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bus.mqtt import embedded_broker
from bus.mqtt_access import matches, verify
from consumers.notifier.subscribers import hashed
from tests.conftest import free_port

MINE, OTHER = "origin/a/wis2/c/data/core/weather/mine", "origin/a/wis2/c/data/core/weather/other"


@pytest.mark.parametrize(
    ("topic", "pattern", "covered"),
    [
        (MINE, MINE, True),
        (MINE, "origin/a/wis2/#", True),
        (MINE, "origin/+/wis2/c/data/core/weather/mine", True),
        (OTHER, MINE, False),
        ("origin/a/wis2/#", MINE, False),  # a wider subscription than granted
        ("origin/a/+/c/data/core/weather/mine", MINE, False),
        ("origin/a", "origin/a/#", True),
    ],
)
def test_filters_cover_topics_and_narrower_filters_only(
    topic: str, pattern: str, covered: bool
) -> None:
    """A grant covers a topic or a subscription no wider than itself."""
    assert matches(topic, pattern) is covered


def test_mosquitto_hashes_are_verified() -> None:
    """The ``$7$`` hashes the notifier writes for mosquitto check here too."""
    stored = hashed("s3cret", b"saltsaltsalt")
    assert verify("s3cret", stored)
    assert not verify("wrong", stored)
    assert not verify("s3cret", "$6$rounds$whatever")


def _files(where: Path, *, alice_reads: list[str]) -> None:
    (where / "passwd").write_text(
        f"alice:{hashed('alice-pw', b'a' * 12)}\nnotifier:{hashed('n-pw', b'n' * 12)}\n"
    )
    acl = ["user notifier", "topic write #", "", "user alice"]
    acl += [f"topic read {t}" for t in alice_reads]
    (where / "acl").write_text("\n".join(acl) + "\n")
    stamp = time.time() + 1  # a new modification time even within the clock's granularity
    for name in ("passwd", "acl"):
        os.utime(where / name, (stamp, stamp))


class Client:
    """A paho client that records its CONNACK, SUBACKs and messages."""

    def __init__(self, port: int, login: str | None = None, password: str | None = None) -> None:
        self.connected, self.refused = threading.Event(), threading.Event()
        self.granted: list[int] = []
        self.subacked = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        if login is not None:
            self.client.username_pw_set(login, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, c: object, u: object, f: object, reason: object, p: object) -> None:
        (self.refused if getattr(reason, "is_failure", False) else self.connected).set()

    def _on_subscribe(self, c: object, u: object, mid: int, codes: list[object], p: object) -> None:
        self.granted = [getattr(code, "value", code) for code in codes]  # type: ignore[misc]
        self.subacked.set()

    def _on_message(self, c: object, u: object, message: paho.MQTTMessage) -> None:
        self.messages.append((message.topic, message.payload))
        self.got.set()

    def subscribe(self, topic: str) -> bool:
        """Whether the broker granted the subscription."""
        self.subacked.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subacked.wait(10)
        return all(code < 128 for code in self.granted)  # type: ignore[operator]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[int]:
    _files(tmp_path, alice_reads=[MINE])
    port = free_port()
    async with embedded_broker("127.0.0.1", port, tmp_path):
        yield port


async def test_users_read_only_their_topics_and_sign_in_with_their_password(
    broker: int, tmp_path: Path
) -> None:
    """alice signs in, reads her topic and is refused another; a wrong password is refused; an
    anonymous client connects (probes do) but may read nothing; a change of the ACL file takes
    effect without a restart."""
    # the clients block: they run in a thread while the broker serves on this loop
    await asyncio.to_thread(_scenario, broker, tmp_path)


def _scenario(broker: int, tmp_path: Path) -> None:
    alice = Client(broker, "alice", "alice-pw")
    notifier = Client(broker, "notifier", "n-pw")
    anonymous = Client(broker)
    wrong = Client(broker, "alice", "guess")
    try:
        assert alice.connected.wait(10)
        assert notifier.connected.wait(10)
        assert anonymous.connected.wait(10)
        assert wrong.refused.wait(10)
        assert alice.subscribe(MINE)
        assert not alice.subscribe(OTHER)
        assert not alice.subscribe("origin/a/wis2/#")
        assert not anonymous.subscribe(MINE)
        notifier.client.publish(MINE, b"for alice", qos=1).wait_for_publish(10)
        assert alice.got.wait(10)
        assert alice.messages == [(MINE, b"for alice")]

        _files(tmp_path, alice_reads=[MINE, OTHER])
        assert alice.subscribe(OTHER)
    finally:
        for client in (alice, notifier, anonymous, wrong):
            client.close()
