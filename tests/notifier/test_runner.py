"""The notifier runner against the real Kafka and real MQTT brokers (mosquitto, amqtt)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from bus.config.source import FixedConfig
from bus.config.view import ConfigView
from bus.events import Event
from bus.events.config import MqttSettings
from bus.events.datafiles import DataFileExpired
from bus.events.deadletter import DeadLetterReason
from bus.events.notifications import (
    NotificationFailed,
    NotificationPublished,
    NotificationRefused,
)
from bus.events.products import Lateness, Measure, TransferLate
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.stage import Stage
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.notifier import core
from consumers.notifier.adapters import PahoBroker
from consumers.notifier.runner import Notifier, notifier_stage
from tests.bus.deadletters import dead_letters, publish_poison
from tests.bus.samples import sample
from tests.conftest import eventually, free_port
from tests.ingest.conftest import read_topic
from tests.notifier.conftest import Subscriber, mosquitto
from tests.notifier.factories import (
    DATA,
    PORTAL,
    destination,
    host,
    limit_errors,
    queued,
    succeeded,
    topic_errors,
    view,
    wis2_errors,
)

pytestmark = pytest.mark.kafka

CENTRE = "origin/a/wis2/int-ecpds-test/data/core"


def wis2(name: str) -> dict[str, str]:
    """WIS2 settings of destination ``name``: its own topic leaf, so tests can tell them apart."""
    return {"wis2.centreId": "int-ecpds-test", "wis2.topic": f"weather/test/{name}"}


def topic(name: str) -> str:
    return f"{CENTRE}/weather/test/{name}"


CONFIG = view(
    host(),
    destination("wis", MqttSettings(publish=True), wis2("wis")),
    destination(
        "static",
        MqttSettings(
            publish=True,
            topic="static//fixed",
            qos=2,
            retain=True,
            expiry_interval_ms=60_000,
            content_type="text/plain",
            payload="static payload",
        ),
    ),
    destination("quiet", None),
    destination("off", MqttSettings(publish=False, topic="off/")),
    # the broker's client refuses a wildcard: a static payload's topic is the operator's
    destination("bad", MqttSettings(publish=True, topic="bad/+/", payload="x"), {}),
    destination("nowis", MqttSettings(publish=True), {}),  # no WIS2 settings: refused
    destination("later", MqttSettings(publish=True, retain=True), wis2("later")),
    destination("old", MqttSettings(publish=True, qos=1), wis2("old")),
    destination("zero", MqttSettings(publish=True, qos=0), wis2("zero")),
    destination("del", MqttSettings(publish=True), {**wis2("del"), "wis2.deletion": "yes"}),
)


@dataclass(frozen=True)
class Topics:
    transfers: str
    notifications: str
    deadletter: str
    datafiles: str


async def make_topics(kafka: str, unique: str) -> Topics:
    topics = Topics(
        f"test.{unique}.transfers",
        f"test.{unique}.notifications",
        f"test.{unique}.deadletter",
        f"test.{unique}.datafiles",
    )
    await apply_topics(
        kafka,
        [
            # one partition: events of different destinations stay in the order published
            TopicSpec(
                topics.transfers, "destination", 1, "delete", DAY_MS, ("ecpds.transfers",), "t"
            ),
            TopicSpec(
                topics.notifications,
                "destination",
                1,
                "delete",
                DAY_MS,
                ("ecpds.notifications",),
                "t",
            ),
            TopicSpec(topics.deadletter, "origin", 1, "delete", DAY_MS, ("ecpds.deadletter",), "t"),
            TopicSpec(topics.datafiles, "id", 1, "delete", DAY_MS, ("ecpds.datafiles",), "t"),
        ],
    )
    return topics


@contextlib.asynccontextmanager
async def running(
    kafka: str,
    topics: Topics,
    port: int,
    unique: str,
    config: ConfigView = CONFIG,
    products: str | None = None,
) -> AsyncIterator[Stage[Notifier]]:
    """A notifier publishing to ``127.0.0.1:port`` while the block runs."""
    runner = notifier_stage(
        kafka,
        PahoBroker("127.0.0.1", port, client_id=f"notifier-{unique}", timeout=2.0),
        FixedConfig(config),
        portal=PORTAL,
        transfers_topic=topics.transfers,
        datafiles_topic=topics.datafiles,
        products_topic=products,
        notifications_topic=topics.notifications,
        deadletter_topic=topics.deadletter,
        group_id=f"notifier-{unique}",
        retry=RetryPolicy(initial=0.2, maximum=1.0),
        source="notifier/test",
    )
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


async def send(kafka: str, topic: str, events: Sequence[Event]) -> None:
    async with Publisher(kafka) as pub:
        for event in events:
            await pub.publish(topic, getattr(event, "destination"), event)  # noqa: B009


async def outcomes(kafka: str, topic: str) -> list[Event]:
    return [e for _, _, e in await read_topic(kafka, topic)]


@pytest.fixture(scope="module")
async def notifier(
    kafka: str, mosquitto_port: int
) -> AsyncIterator[tuple[Topics, Stage[Notifier]]]:
    """One notifier on mosquitto for the module's tests."""
    unique = f"mod{free_port()}"
    topics = await make_topics(kafka, unique)
    async with running(kafka, topics, mosquitto_port, unique) as runner:
        yield topics, runner


async def test_wis2_message_arrives_with_its_properties_and_is_recorded(
    kafka: str, mosquitto_port: int, notifier: tuple[Topics, Stage[Notifier]]
) -> None:
    """A delivered file becomes one valid WIS2 message on its topic and a NotificationPublished."""
    topics, _ = notifier
    sub = Subscriber(mosquitto_port)
    await sub.subscribe(topic("wis"))
    try:
        await send(kafka, topics.transfers, [queued("w1", "wis"), succeeded("w1", "wis")])
        got = await sub.next()
    finally:
        sub.close()
    message = json.loads(got.payload)
    assert wis2_errors(message) == []
    assert limit_errors(got.payload) == []
    assert topic_errors(got.topic) == []
    assert got.topic == topic("wis")
    assert (got.qos, got.retain, got.content_type) == (1, False, "application/geo+json")
    assert got.expiry_interval is not None
    assert 3500 < got.expiry_interval <= 3600
    assert message["id"] == core.message_id("w1", 1)
    assert message["properties"]["data_id"] == "int-ecpds-test/wis/2026/grib/file.grib2"
    assert message["links"][0]["href"] == f"{PORTAL}/wis/2026/grib/file.grib2"

    async def recorded() -> bool:
        return any(
            isinstance(e, NotificationPublished) and e.transfer_id == "w1"
            for e in await outcomes(kafka, topics.notifications)
        )

    await eventually(recorded, 15)
    [record] = [
        e
        for e in await outcomes(kafka, topics.notifications)
        if isinstance(e, NotificationPublished) and e.transfer_id == "w1"
    ]
    assert record.destination == "wis"
    assert record.data_file_id == "df-w1"
    assert record.topic == got.topic
    assert (record.qos, record.retain) == (1, False)
    assert record.payload_size == len(got.payload)
    assert record.broker == f"127.0.0.1:{mosquitto_port}"
    assert record.message_id == message["id"]
    assert record.data_id == "int-ecpds-test/wis/2026/grib/file.grib2"


async def test_republish_is_an_update_and_expiry_a_deletion_of_the_same_data_id(
    kafka: str, mosquitto_port: int, notifier: tuple[Topics, Stage[Notifier]]
) -> None:
    """A second transfer of the same target links ``update`` under the same ``data_id``; the
    file's expiry (``DataFileExpired``) then links ``deletion``; each message is valid and has
    its own id."""
    topics, _ = notifier
    sub = Subscriber(mosquitto_port)
    await sub.subscribe(topic("del"))
    try:
        await send(kafka, topics.transfers, [queued("d1", "del"), succeeded("d1", "del")])
        first = json.loads((await sub.next()).payload)
        await send(kafka, topics.transfers, [queued("d2", "del"), succeeded("d2", "del")])
        second = json.loads((await sub.next()).payload)
        expired = sample(DataFileExpired, data_file_id="df-d2")
        async with Publisher(kafka) as pub:
            await pub.publish(topics.datafiles, "df-d2", expired)
        third = json.loads((await sub.next()).payload)
    finally:
        sub.close()
    messages = (first, second, third)
    assert [m["links"][0]["rel"] for m in messages] == ["canonical", "update", "deletion"]
    assert len({m["properties"]["data_id"] for m in messages}) == 1
    assert len({m["id"] for m in messages}) == 3
    for message in messages:
        assert wis2_errors(message) == []
        assert limit_errors(core.encode(message)) == []


async def test_static_payload_keeps_qos_retain_and_expiry(
    kafka: str, mosquitto_port: int, notifier: tuple[Topics, Stage[Notifier]]
) -> None:
    """The configured payload is published retained at qos 2; a later subscriber still gets it."""
    topics, _ = notifier
    await send(kafka, topics.transfers, [queued("s1", "static"), succeeded("s1", "static")])

    async def recorded() -> bool:
        return any(
            isinstance(e, NotificationPublished) and e.transfer_id == "s1"
            for e in await outcomes(kafka, topics.notifications)
        )

    await eventually(recorded, 15)
    sub = Subscriber(mosquitto_port)  # subscribes after the publish: only retain delivers it
    await sub.subscribe("static/fixed")
    try:
        got = await sub.next()
    finally:
        sub.close()
    assert (got.topic, got.payload) == ("static/fixed", b"static payload")
    assert got.retain
    assert got.qos == 2
    assert got.content_type == "text/plain"
    assert got.expiry_interval is not None
    assert 55 <= got.expiry_interval <= 60


async def test_skipped_and_refused_transfers(
    kafka: str, mosquitto_port: int, notifier: tuple[Topics, Stage[Notifier]]
) -> None:
    """Expired, quiet and publish-false transfers send nothing; a topic the broker's client
    refuses is recorded as NotificationFailed; a destination without WIS2 settings sends
    nothing and records NotificationRefused with why; the transfer after them is still
    notified (at qos 0)."""
    topics, _ = notifier
    past = datetime.now(UTC) - timedelta(seconds=5)
    sub = Subscriber(mosquitto_port)
    await sub.subscribe("#", qos=1)
    try:
        await send(
            kafka,
            topics.transfers,
            [
                queued("x1", "wis", expiry=past),
                succeeded("x1", "wis"),
                queued("q1", "quiet"),
                succeeded("q1", "quiet"),
                queued("o1", "off"),
                succeeded("o1", "off"),
                queued("b1", "bad"),
                succeeded("b1", "bad"),
                queued("r1", "nowis"),
                succeeded("r1", "nowis"),
                queued("n1", "zero", target="next.bin"),
                succeeded("n1", "zero"),
            ],
        )
        seen = [await sub.next()]
        while seen[-1].topic != topic("zero"):
            if not seen[-1].retain:  # retained messages of earlier tests are not this test's
                raise AssertionError(f"unexpected message on {seen[-1].topic}")
            seen.append(await sub.next())
        assert seen[-1].qos == 0
        assert await sub.nothing(0.5)
    finally:
        sub.close()

    async def recorded() -> bool:
        return any(
            isinstance(e, NotificationPublished) and e.transfer_id == "n1"
            for e in await outcomes(kafka, topics.notifications)
        )

    await eventually(recorded, 15)
    events = await outcomes(kafka, topics.notifications)
    ids = {getattr(e, "transfer_id") for e in events}  # noqa: B009
    assert not ids & {"x1", "q1", "o1"}
    [refused] = [e for e in events if isinstance(e, NotificationFailed)]
    assert refused.transfer_id == "b1"
    assert not refused.retriable
    assert refused.error_class == "PermanentError"
    [wis2_refused] = [e for e in events if isinstance(e, NotificationRefused)]
    assert wis2_refused.transfer_id == "r1"
    assert "no WIS2 settings" in wis2_refused.reason
    assert not [e for e in events if isinstance(e, NotificationPublished) and e.transfer_id == "r1"]


async def test_broker_down_at_first_loses_nothing(kafka: str, unique: str, tmp_path: Path) -> None:
    """With the broker down the notification waits; once it is up the message arrives."""
    topics = await make_topics(kafka, unique)
    port = free_port()
    async with running(kafka, topics, port, unique):
        await send(kafka, topics.transfers, [queued("l1", "later"), succeeded("l1", "later")])
        await asyncio.sleep(2.0)  # the notifier is retrying by now
        assert await outcomes(kafka, topics.notifications) == []
        with mosquitto(port, tmp_path):

            async def recorded() -> bool:
                return any(
                    isinstance(e, NotificationPublished)
                    for e in await outcomes(kafka, topics.notifications)
                )

            await eventually(recorded, 20)
            sub = Subscriber(port)  # retained: arrives however late the subscriber is
            await sub.subscribe(topic("later"))
            try:
                got = await sub.next()
            finally:
                sub.close()
    assert got.topic == topic("later")
    assert wis2_errors(json.loads(got.payload)) == []
    assert json.loads(got.payload)["links"][0]["length"] == len(DATA)


async def test_broker_down_mid_stream_then_up_loses_nothing(
    kafka: str, unique: str, tmp_path: Path
) -> None:
    """The broker dies after some messages and comes back on the same port: every file
    delivered meanwhile is announced once it is up (a repeat keeps its id), each message
    valid."""
    topics = await make_topics(kafka, unique)
    port = free_port()
    before, after = ["m1", "m2", "m3"], ["m4", "m5", "m6"]

    def delivered(names: list[str]) -> list[Event]:
        return [e for n in names for e in (queued(n, "zero", target=n), succeeded(n, "zero"))]

    def ids(names: list[str]) -> set[str]:
        return {core.message_id(n, 1) for n in names}

    async def announced(sub: Subscriber, expected: set[str]) -> list[str]:
        seen: list[str] = []
        while not expected <= set(seen):
            got = await sub.next(30)
            message = json.loads(got.payload)
            assert wis2_errors(message) == []
            seen.append(message["id"])
        return seen

    async with running(kafka, topics, port, unique):
        with mosquitto(port, tmp_path / "first"):
            sub = Subscriber(port)
            await sub.subscribe(topic("zero"), qos=1)
            try:
                await send(kafka, topics.transfers, delivered(before))
                first = await announced(sub, ids(before))
            finally:
                sub.close()
        await send(kafka, topics.transfers, delivered(after))
        await asyncio.sleep(2.0)  # the notifier is retrying by now
        with mosquitto(port, tmp_path / "second"):
            sub = Subscriber(port)  # subscribed before the notifier's reconnection (1 s at least)
            await sub.subscribe(topic("zero"), qos=1)
            try:
                second = await announced(sub, ids(after))
            finally:
                sub.close()
    assert set(first) | set(second) <= ids(before) | ids(after)
    assert set(second) >= ids(after)


async def test_mqtt_311_broker_still_gets_the_message(
    kafka: str, unique: str, mqtt_port: int
) -> None:
    """The embedded amqtt broker (MQTT 3.1.1 only) still receives the notification."""
    topics = await make_topics(kafka, unique)
    sub = Subscriber(mqtt_port, protocol=paho.MQTTv311)
    await sub.subscribe(topic("old"), qos=1)
    try:
        async with running(kafka, topics, mqtt_port, unique):
            await send(kafka, topics.transfers, [queued("v1", "old"), succeeded("v1", "old")])
            got = await sub.next(20)
    finally:
        sub.close()
    assert got.topic == topic("old")
    assert json.loads(got.payload)["id"] == core.message_id("v1", 1)


async def test_a_poison_record_is_dead_lettered_once_and_the_next_transfer_notified(
    kafka: str, mosquitto_port: int, unique: str
) -> None:
    """An undecodable record on the transfers topic becomes one dead letter of the notifier's
    group; the success after it is still notified."""
    topics = await make_topics(kafka, unique)
    async with Publisher(kafka) as publisher:
        poison = await publish_poison(publisher, topics.transfers, b"wis")
    async with running(kafka, topics, mosquitto_port, unique) as runner:
        await send(kafka, topics.transfers, [queued("p1", "wis"), succeeded("p1", "wis")])

        async def recorded() -> bool:
            return any(
                isinstance(e, NotificationPublished) and e.transfer_id == "p1"
                for e in await outcomes(kafka, topics.notifications)
            )

        await eventually(recorded, 20)
    letters = await dead_letters(kafka, topics.deadletter, topics.transfers, runner.group_id)
    assert [(d.origin_offset, d.reason) for d in letters] == [
        (poison.offset, DeadLetterReason.UNDECODABLE)
    ]
    assert runner.dead_lettered == 1


async def test_a_restarted_notifier_recalls_what_was_queued_and_announced(
    kafka: str, mosquitto_port: int
) -> None:
    """After a restart, a transfer queued before it without the event flag stays silent, a
    republished file is an ``update`` carrying the queued sha512, and its expiry a ``deletion``:
    the memory is rebuilt from the transfers topic before the notifier consumes."""
    unique = f"recall{free_port()}"
    topics = await make_topics(kafka, unique)
    sub = Subscriber(mosquitto_port)
    await sub.subscribe(topic("del"))
    try:
        async with running(kafka, topics, mosquitto_port, unique):
            await send(kafka, topics.transfers, [queued("r1", "del"), succeeded("r1", "del")])
            first = json.loads((await sub.next()).payload)
            quiet = queued("q1", "del", target="2026/other.grib2", notify=False)
            await send(kafka, topics.transfers, [quiet, queued("r2", "del")])

            async def handled() -> bool:
                names = [type(e).__name__ for e in await outcomes(kafka, topics.notifications)]
                return names == ["NotificationPublished"]

            await eventually(handled)
        async with running(kafka, topics, mosquitto_port, unique):
            await send(kafka, topics.transfers, [succeeded("q1", "del"), succeeded("r2", "del")])
            second = json.loads((await sub.next()).payload)
            async with Publisher(kafka) as pub:
                await pub.publish(
                    topics.datafiles, "df-r2", sample(DataFileExpired, data_file_id="df-r2")
                )
            third = json.loads((await sub.next()).payload)
            assert await sub.nothing(1.0)
    finally:
        sub.close()
    assert [m["links"][0]["rel"] for m in (first, second, third)] == [
        "canonical",
        "update",
        "deletion",
    ]
    assert second["properties"]["data_id"] == first["properties"]["data_id"]
    assert second["properties"]["integrity"] == first["properties"]["integrity"]
    assert "2026/other.grib2" not in json.dumps([first, second, third])


async def test_lateness_reaches_the_broker_and_is_recorded(kafka: str, mosquitto_port: int) -> None:
    """A TransferLate on the products topic for a destination with ``mqtt.onLate`` arrives on
    ``ecpds/late/<destination>`` as JSON and is recorded as published; one for a destination
    without it sends nothing."""
    unique = f"late{free_port()}"
    topics = await make_topics(kafka, unique)
    products = f"test.{unique}.products"
    await apply_topics(
        kafka, [TopicSpec(products, "key", 1, "delete", DAY_MS, ("ecpds.products",), "t")]
    )
    config = view(
        host(),
        destination("loud", MqttSettings(publish=True), {**wis2("loud"), "mqtt.onLate": "yes"}),
        destination("mute", MqttSettings(publish=True), wis2("mute")),
    )

    def late(name: str) -> TransferLate:
        return sample(
            TransferLate,
            destination=name,
            transfer_id=f"t-{name}",
            measure=Measure.ARRIVAL,
            lateness=Lateness.LATE,
            late_by_ms=600_000,
        )

    sub = Subscriber(mosquitto_port)
    await sub.subscribe("ecpds/late/#")
    try:
        async with running(kafka, topics, mosquitto_port, unique, config, products):
            async with Publisher(kafka) as pub:
                await pub.publish(products, "mute", late("mute"))
                await pub.publish(products, "loud", late("loud"))
            received = await sub.next()
            assert await sub.nothing(1.0)

            async def recorded() -> bool:
                return len(await outcomes(kafka, topics.notifications)) == 1

            await eventually(recorded)
    finally:
        sub.close()
    assert received.topic == "ecpds/late/loud"
    message = json.loads(received.payload)
    assert (message["destination"], message["lateness"], message["late_by_s"]) == (
        "loud",
        "late",
        600,
    )
    [published] = await outcomes(kafka, topics.notifications)
    assert isinstance(published, NotificationPublished)
    assert published.message_id == message["id"]
