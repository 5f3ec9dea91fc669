"""Subscriber auth on Debian's mosquitto: password and ACL files generated from the
configuration, reloaded on change; data users read only their destinations' WIS2 topics."""

from __future__ import annotations

import asyncio
import os
import pwd
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bus.config.view import ConfigView
from bus.events.config import MqttSettings
from bus.events.config_changes import DataUserDefined
from consumers.notifier import subscribers
from tests.bus.samples import sample
from tests.config import factories as f
from tests.conftest import free_port
from tests.notifier.conftest import MOSQUITTO, Subscriber, mosquitto
from tests.notifier.factories import destination, view

KEY = b"broker key of the test"
CENTRE = "origin/a/wis2/int-ecpds-test/data/core/weather/test"


def wis2(name: str) -> dict[str, str]:
    return {"wis2.centreId": "int-ecpds-test", "wis2.topic": f"weather/test/{name}"}


def config(*grants: tuple[str, tuple[str, ...]]) -> ConfigView:
    """Destinations a and b publishing WIS2, and data users granted the named destinations."""
    publish = MqttSettings(publish=True)
    base = view(destination("a", publish, wis2("a")), destination("b", publish, wis2("b")))
    return base.evolve(
        sample(DataUserDefined, data_user=f.user(login, destinations=granted))
        for login, granted in grants
    )


def password(login: str) -> tuple[str, str]:
    return (login, subscribers.derive(KEY, login))


def publish(port: int, topic: str, payload: bytes) -> None:
    """Publish as the notifier's own client (qos 1, acknowledged)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{free_port()}")
    client.username_pw_set(*password(subscribers.NOTIFIER))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def refused_login(port: int, credentials: tuple[str, str]) -> bool:
    """True when mosquitto refuses to sign ``credentials`` in."""
    answered = threading.Event()
    outcome: list[bool] = []

    def on_connect(_c: object, _u: object, _f: object, reason: paho.ReasonCode, _p: object) -> None:
        outcome.append(reason.is_failure)
        answered.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"login-{free_port()}")
    client.username_pw_set(*credentials)
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0]


def test_the_files_grant_each_user_its_destinations_topics_only() -> None:
    """A user's ACL reads its granted destinations' WIS2 topics; the password file holds
    mosquitto's $7$ hashes, never the password; anonymous reads only when asked."""
    made = subscribers.files(config(("alice", ("a",))), KEY, anonymous_read=False)
    assert f"user alice\ntopic read {CENTRE}/a\n" in made.acl
    assert f"{CENTRE}/b" not in made.acl
    assert "user ecpds-notifier\ntopic write #" in made.acl
    assert subscribers.derive(KEY, "alice") not in made.passwd
    assert [line.split(":")[1][:7] for line in made.passwd.splitlines()] == ["$7$101$"] * 2
    assert not subscribers.anonymous_in(made.acl)
    public = subscribers.files(config(), KEY, anonymous_read=True).acl
    assert subscribers.anonymous_in(public)


async def test_a_user_cannot_subscribe_outside_its_destinations_and_changes_reload(
    tmp_path: Path,
) -> None:
    """With the generated files, alice receives a's messages and none of b's (mosquitto 2.0
    grants the subscription but checks the ACL on each delivery); a wrong password is refused;
    once the configuration grants her b, the rewritten files are reloaded (SIGHUP) and b's
    messages reach her."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (infra/apt-packages.txt)")
    where = tmp_path / "mosquitto"
    assert subscribers.write(config(("alice", ("a",))), where, KEY, anonymous_read=False)
    assert not subscribers.write(config(("alice", ("a",))), where, KEY, anonymous_read=False)
    # as infra/mqtt/mosquitto.sh: the 0600 files are read as their owner
    owner = pwd.getpwuid(os.getuid()).pw_name
    extra = f"password_file {where / 'passwd'}\nacl_file {where / 'acl'}\nuser {owner}\n"
    port = free_port()
    with mosquitto(port, tmp_path, extra) as process:
        (where / "mosquitto.pid").write_text(f"{process.pid}\n")
        assert refused_login(port, ("alice", "wrong"))
        alice = Subscriber(port, credentials=password("alice"))
        try:
            assert await alice.subscribe(f"{CENTRE}/a", qos=1)
            await alice.subscribe(f"{CENTRE}/b", qos=1)
            await asyncio.to_thread(publish, port, f"{CENTRE}/b", b"for b only")
            await asyncio.to_thread(publish, port, f"{CENTRE}/a", b"for a")
            got = await alice.next()
            assert (got.topic, got.payload) == (f"{CENTRE}/a", b"for a")
            assert await alice.nothing(0.5)
        finally:
            alice.close()

        follower = subscribers.Follower(where, KEY, anonymous_read=False)
        follower(config(("alice", ("a", "b"))), ())
        await asyncio.sleep(0.5)  # mosquitto rereads its files on the SIGHUP
        again = Subscriber(port, credentials=password("alice"))
        try:
            assert await again.subscribe(f"{CENTRE}/b", qos=1)
            await asyncio.to_thread(publish, port, f"{CENTRE}/b", b"for b, now granted")
            assert (await again.next()).payload == b"for b, now granted"
        finally:
            again.close()
