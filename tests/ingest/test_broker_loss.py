"""The ingest API while its Kafka broker is away, against a real broker of its own (the suite's
shared one is never stopped): a put answers 503 with ``Retry-After`` within about the publish
timeout instead of hanging, and once the broker is back the same put succeeds once, and a
repeat of it is answered with the same registration, never a second file."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bus.events.datafiles import DataFileRegistered, DataFileStored
from bus.publisher import Publisher
from bus.settings import Settings
from producers.api.app import create_app
from producers.api.ingest import RETRY_AFTER_S
from producers.api.runtime import running
from store.local import LocalStore
from tests.broker import kafka_script, private_broker
from tests.config import factories as f
from tests.ingest.conftest import TOKEN, Names, define, read_topic

pytestmark = [pytest.mark.slow, pytest.mark.services]
TIMEOUT = 1.0  # the publish timeout of the stack under test
PAYLOAD = os.urandom(64 * 1024)


@pytest.fixture
def private(settings: Settings, unique: str) -> Iterator[Settings]:
    """Settings of a Kafka broker of this test's own."""
    with private_broker(settings, unique, 40) as mine:
        yield mine


@pytest.fixture
async def client(private: Settings, names: Names) -> AsyncIterator[httpx.AsyncClient]:
    options = dataclasses.replace(names.options(), publish_timeout=TIMEOUT)
    async with running(private, options) as state, Publisher(private.kafka_bootstrap) as pub:
        await define(state, pub, names.config, f.destination("site-a"))
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://ingest.test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as c:
            try:
                yield c
            finally:  # a test that failed with the broker stopped: the stack stops only with it
                kafka_script(private, "start")


async def _put(client: httpx.AsyncClient, target: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post(
        "/api/v1/datafiles",
        params={"destination": "site-a", "target": target},
        content=PAYLOAD,
        timeout=60,
    )
    return response, time.monotonic() - started


async def test_a_put_without_broker_is_answered_503_and_its_retry_registers_once(
    client: httpx.AsyncClient, private: Settings, names: Names
) -> None:
    """With the broker stopped a put is answered 503 with Retry-After within the publish
    timeout (plus a margin); with the broker back the same put is retried until it is
    registered (201), and putting it again answers 200 with the same data file id: one
    stored registration and one object for the name."""
    warm, _ = await _put(client, "warm.bin")  # the producer knows the topic's partitions
    assert warm.status_code == 201, warm.text
    kafka_script(private, "stop")
    lost, took = await _put(client, "lost.bin")
    assert lost.status_code == 503, lost.text
    assert took < TIMEOUT + 1.0, f"answered after {took:.1f} s"
    assert lost.headers["retry-after"] == str(RETRY_AFTER_S)
    assert lost.json()["status"] == "error"
    kafka_script(private, "start")
    deadline = time.monotonic() + 90
    while (answer := (await _put(client, "lost.bin"))[0]).status_code == 503:
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(RETRY_AFTER_S)
    assert answer.status_code == 201, answer.text
    dfid = answer.json()["data_file_id"]
    again, _ = await _put(client, "lost.bin")
    assert (again.status_code, again.json()["data_file_id"]) == (200, dfid), again.text
    assert again.json()["transfers"] == answer.json()["transfers"]

    events = [e for _, _, e in await read_topic(private.kafka_bootstrap, names.topics.datafiles)]
    ids = {
        e.data_file_id
        for e in events
        if isinstance(e, DataFileRegistered) and e.target == "lost.bin"
    }
    stored = [
        e.data_file_id for e in events if isinstance(e, DataFileStored) and e.data_file_id in ids
    ]
    assert stored == [dfid]
    store = LocalStore(names.store, durable=False)
    try:
        assert sorted(m.id for m in await store.list() if m.id in ids) == [dfid]
    finally:
        await store.close()
