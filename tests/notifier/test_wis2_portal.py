"""WIS2 end to end: files put with the event flag through the ingest API, delivered by a real
mover, announced by the notifier on mosquitto, fetched by ``curl`` from the real Data Portal.

The rules pinned (issue 16, "Tests"): a paho subscriber receives, for each file put with the
event flag, a message passing the bundled schema, the size and inline limits, exactly one
link and the topic hierarchy, whose link downloads bytes matching ``integrity``; a republish
is an ``update`` of the same ``data_id``; the janitor's expiry gives a ``deletion``; a
destination whose message would break a rule sends nothing and records why.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus.config.view import LiveConfig
from bus.events.notifications import NotificationPublished, NotificationRefused
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.janitor.runner import JanitorRunner
from consumers.notifier.adapters import PahoBroker
from consumers.notifier.runner import notifier_stage
from projections.migrate import migrate
from store.local import LocalStore
from tests.conftest import free_port
from tests.e2e.conftest import Tail, create_topics
from tests.notifier.conftest import MOSQUITTO, Received, Subscriber, mosquitto
from tests.notifier.factories import ets_failures, limit_errors, topic_errors, wis2_errors
from tests.portal.conftest import PortalStack
from tests.projections.support import drop

pytestmark = pytest.mark.kafka
TOPIC = "origin/a/wis2/int-ecpds-test/data/core/weather/test/portal"

CONFIG = """
transfer_groups:
  - name: {group}
hosts:
  - id: out-{tag}
    nickname: outbox
    type: dissemination
    protocol: file
    address: localhost{outbox}
    directory: $date/
destinations:
  - name: wis-{tag}
    type: dissemination
    transfer_group: {group}
    mqtt: {{publish: true}}
    properties:
      wis2.centreId: int-ecpds-test
      wis2.topic: weather/test/portal
      wis2.deletion: "yes"
  - name: nowis-{tag}
    type: dissemination
    transfer_group: {group}
    mqtt: {{publish: true}}
associations:
  - {{destination: wis-{tag}, host: out-{tag}, priority: 0}}
  - {{destination: nowis-{tag}, host: out-{tag}, priority: 0}}
users:
  - login: reader-{tag}
    password: reader-secret
    destinations: [wis-{tag}]
    operations: [dir, get, size]
"""


@dataclass
class World:
    stack: PortalStack
    port: int  # mosquitto's
    notifications: Tail


@pytest.fixture(scope="module")
async def world(
    kafka: str, postgres: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    """API, scheduler, a mover, the portal and a projector as processes; the notifier and the
    janitor in this process (on the module's topics); mosquitto on a free port."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (infra/apt-packages.txt)")
    tag = uuid.uuid4().hex[:8]
    stack = PortalStack(kafka, tmp_path_factory.mktemp(f"wis2-{tag}"), tag, settings=settings)
    (stack.root / "secrets").mkdir(mode=0o700)
    (stack.root / "outbox").mkdir()
    await migrate(postgres, stack.schema)
    await create_topics(stack)
    await apply_topics(
        kafka,
        [
            TopicSpec(stack.topic(n), "key", 1, "delete", DAY_MS, (), "wis2 test")
            for n in ("transfers", "datafiles", "notifications", "deadletter")
        ],
    )
    stack.tail = Tail(kafka, [stack.topic("transfers"), stack.topic("datafiles")])
    notifications = Tail(kafka, [stack.topic("notifications")])
    port = free_port()
    tasks: list[asyncio.Task[None]] = []
    stops: list[Any] = []
    with mosquitto(port, stack.root / "mosquitto"):
        try:
            await stack.apply(
                CONFIG.format(tag=tag, group=stack.group, outbox=stack.root / "outbox")
            )
            await asyncio.to_thread(stack.start_api)
            stack.start_scheduler()
            stack.start_mover()
            await asyncio.to_thread(stack.start_portal)
            stack.start_projector()
            await stack.tail.start()
            await notifications.start()
            async with contextlib.AsyncExitStack() as running:
                live = await running.enter_async_context(LiveConfig(kafka, stack.topic("config")))
                notifier = notifier_stage(
                    kafka,
                    PahoBroker("127.0.0.1", port, client_id=f"notifier-{tag}", timeout=2.0),
                    live,
                    portal=f"https://127.0.0.1:{stack.https_port}",
                    transfers_topic=stack.topic("transfers"),
                    datafiles_topic=stack.topic("datafiles"),
                    notifications_topic=stack.topic("notifications"),
                    deadletter_topic=stack.topic("deadletter"),
                    group_id=f"notifier-{tag}",
                    retry=RetryPolicy(initial=0.2, maximum=1.0),
                    source="notifier/test",
                )
                janitor = JanitorRunner(
                    kafka,
                    LocalStore(stack.store),
                    live,
                    datafiles_topic=stack.topic("datafiles"),
                    transfers_topic=stack.topic("transfers"),
                    interval=1.0,
                    source="janitor/test",
                )
                tasks += [asyncio.create_task(notifier.run()), asyncio.create_task(janitor.run())]
                stops += [notifier.stop, janitor.stop]
                yield World(stack, port, notifications)
                for stop in stops:
                    stop()
                await asyncio.wait_for(asyncio.gather(*tasks), 30)
        finally:
            others = list(stack.processes)
            await asyncio.gather(*(asyncio.to_thread(stack.stop, n) for n in others))
            await stack.tail.stop()
            await notifications.stop()
            await drop(postgres, stack.schema)


async def put(stack: PortalStack, destination: str, target: str, data: bytes, **extra: str) -> str:
    """POST one file with the event flag; its data file id."""
    params = {"destination": destination, "target": target, "event": "yes", **extra}
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=60) as client:
        while True:
            response = await client.post(
                f"{stack.url}/api/v1/datafiles",
                params=params,
                content=data,
                headers={"Authorization": f"Bearer {stack.token}"},
            )
            if response.status_code != 404 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # the API has not read the configuration yet
    assert response.status_code == 201, response.text
    return str(response.json()["data_file_id"])


def checked(got: Received) -> dict[str, Any]:
    """The message, after every rule a WIS2 Global Broker applies."""
    assert got.topic == TOPIC
    assert topic_errors(got.topic) == []
    message: dict[str, Any] = json.loads(got.payload)
    assert wis2_errors(message) == []
    assert limit_errors(got.payload) == []
    return message


async def download(stack: PortalStack, href: str, login: str, integrity: str) -> bytes:
    """``curl`` the link as the data user (the link itself carries no credentials), as a
    subscriber does: again until the bytes match ``integrity``, for a bounded time, since the
    portal's read models may lag the delivery by a moment (not found yet, or for an update the
    previous instance still served)."""
    cert = stack.root / "secrets" / "portal" / "tls" / "server.crt"
    argv = ["curl", "-sS", "-f", "--cacert", str(cert), "-u", f"{login}:reader-secret", href]
    deadline = time.monotonic() + 30
    while True:
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, check=False)
        if done.returncode == 0 and sha512(done.stdout) == integrity:
            return done.stdout
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert done.returncode == 0, done.stderr.decode() + stack.log("portal")
    return done.stdout  # the bytes that never matched: the caller's assertion shows them


def sha512(data: bytes) -> str:
    return base64.b64encode(hashlib.sha512(data).digest()).decode()


async def test_each_announced_file_downloads_from_its_link_and_a_republish_is_an_update(
    world: World, tmp_path: Path
) -> None:
    """Two files put with the event flag give two valid canonical messages whose links
    download, with curl from the portal, the bytes their integrity names; the first file put
    again (requeue) gives an update of the same data id, whose link downloads the new bytes.
    WMO's own validator (pywis-pubsub's ETS) passes all three."""
    stack, tag = world.stack, world.stack.tag
    sub = Subscriber(world.port)
    await sub.subscribe(TOPIC, qos=1)
    login = f"reader-{tag}"
    try:
        files = {"obs/one.txt": b"first observation\n", "two.bin": bytes(range(256)) * 40}
        for target, data in files.items():
            await put(stack, f"wis-{tag}", target, data)
        messages = [checked(await sub.next(60)) for _ in files]
        by_id = {m["properties"]["data_id"]: m for m in messages}
        assert set(by_id) == {f"int-ecpds-test/wis-{tag}/{t}" for t in files}
        for target, data in files.items():
            message = by_id[f"int-ecpds-test/wis-{tag}/{target}"]
            [link] = message["links"]
            assert link["rel"] == "canonical"
            assert link["length"] == len(data)
            assert "@" not in link["href"]
            assert link["href"] == f"https://127.0.0.1:{stack.https_port}/wis-{tag}/{target}"
            integrity = message["properties"]["integrity"]
            assert integrity == {"method": "sha512", "value": sha512(data)}
            assert await download(stack, link["href"], login, integrity["value"]) == data

        await put(stack, f"wis-{tag}", "obs/one.txt", b"corrected observation\n", requeue="yes")
        update = checked(await sub.next(60))
        newer = await download(
            stack, update["links"][0]["href"], login, update["properties"]["integrity"]["value"]
        )
    finally:
        sub.close()
    assert update["links"][0]["rel"] == "update"
    assert update["properties"]["data_id"] == f"int-ecpds-test/wis-{tag}/obs/one.txt"
    assert update["id"] not in {m["id"] for m in messages}
    assert newer == b"corrected observation\n"
    assert update["properties"]["integrity"]["value"] == sha512(newer)
    assert ets_failures([*messages, update], tmp_path) == []


async def test_expiry_is_announced_as_a_deletion(world: World, tmp_path: Path) -> None:
    """A file whose lifetime passes is expired by the janitor, and the notifier announces a
    valid deletion of the same data id and link (WMO's ETS passes it)."""
    stack, tag = world.stack, world.stack.tag
    sub = Subscriber(world.port)
    await sub.subscribe(TOPIC, qos=1)
    try:
        await put(stack, f"wis-{tag}", "brief.txt", b"short-lived\n", lifetime="15s")
        first = checked(await sub.next(60))
        gone = checked(await sub.next(90))
    finally:
        sub.close()
    assert first["links"][0]["rel"] == "canonical"
    assert gone["links"][0]["rel"] == "deletion"
    assert gone["properties"]["data_id"] == first["properties"]["data_id"]
    assert gone["links"][0]["href"] == first["links"][0]["href"]
    assert gone["id"] != first["id"]
    assert ets_failures([gone], tmp_path) == []


async def test_a_destination_breaking_a_rule_sends_nothing_and_records_why(world: World) -> None:
    """A destination without WIS2 settings publishes nothing on the broker; its file's
    NotificationRefused says why."""
    stack, tag = world.stack, world.stack.tag
    sub = Subscriber(world.port)
    await sub.subscribe("#", qos=1)
    try:
        data_file_id = await put(stack, f"nowis-{tag}", "plain.txt", b"not for WIS2\n")

        def refused(events: list[Any]) -> bool:
            return any(
                isinstance(e, NotificationRefused) and e.data_file_id == data_file_id
                for e in events
            )

        await world.notifications.until(refused, 90)
        assert await sub.nothing(1.0)
    finally:
        sub.close()
    [record] = [e for e in world.notifications.events if isinstance(e, NotificationRefused)]
    assert record.destination == f"nowis-{tag}"
    assert "no WIS2 settings" in record.reason
    published = [e for e in world.notifications.events if isinstance(e, NotificationPublished)]
    assert all(e.destination == f"wis-{tag}" for e in published)
