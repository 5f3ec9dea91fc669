"""Product timeliness end to end with real Kafka and PostgreSQL: `ecpds product completed` and
`POST /api/v1/products/started` -> ProductStatusChanged -> product_status; transfers of a
product's files -> product_transfers -> the monitor's grid, coloured and linking to them."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus.config.secrets import hash_password
from bus.events import Envelope, Event
from bus.events.base import TransferStatus
from bus.events.transfers import TransferQueued, TransferSucceeded
from bus.publisher import Publisher
from bus.tokens import token_digest
from bus.topics import PRODUCTS, apply_topics, catalogue, partition_counts
from projections.migrate import migrate
from tests.bus.samples import sample
from tests.cli.test_commands import ecpds
from tests.monitor.conftest import ReadModels, monitor_config, serve, sign_in
from tests.projections.support import create_topics, drop, project

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

TOKEN = "timeliness-test-token-0123456789"
HOUR = timedelta(hours=1)


def env(tid: str, at: datetime) -> Envelope:
    return Envelope(event_id=str(uuid.uuid4()), occurred_at=at, source="test", correlation_id=tid)


def cycle(
    destination: str, stream: str, base: datetime, arrive: timedelta, deliver: timedelta | None
) -> list[Event]:
    """A product file of cycle ``base`` queued for ``destination`` ``arrive`` after it and
    delivered ``deliver`` after it (None: not yet)."""
    tid = f"{stream}-{base:%Y%m%d}-{destination}"
    meta = {"stream": stream, "time": f"{base:%H}", "step": "24", "type": "fc"}
    events: list[Event] = [
        sample(
            TransferQueued,
            envelope=env(tid, base + arrive),
            transfer_id=tid,
            destination=destination,
            status=TransferStatus.WAIT,
            metadata={**meta, "date": f"{base:%Y%m%d}"},
        )
    ]
    if deliver is not None:
        events.append(
            sample(
                TransferSucceeded,
                envelope=env(tid, base + deliver),
                transfer_id=tid,
                destination=destination,
                attempt=1,
            )
        )
    return events


async def ends_of(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """The last offset of every non-empty partition of ``topics``."""
    counts = await partition_counts(bootstrap, topics)
    tps = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {f"{tp.topic}/{tp.partition}": n - 1 for tp, n in ends.items() if n > 0}


async def test_product_status_and_the_grid(
    kafka: str, postgres: str, unique: str, tmp_path: Path
) -> None:
    """Given six regular daily cycles at two destinations, when today's cycle is delivered on
    time at one and two hours late at the other, and the product is set completed (CLI) then
    started (REST), then the grid colours the cells on time and critical, each links to its
    transfers, and the product status reads started, set by the API's user."""
    schema, prefix, stream = f"tl_{unique}", f"test.tl{unique}", f"s{unique}"
    await migrate(postgres, schema)
    topics = await create_topics(kafka, prefix)
    await apply_topics(kafka, [s for s in catalogue() if s.name == PRODUCTS])
    topics = [t for t in topics if t.endswith(".transfers")] + [PRODUCTS]

    now = datetime.now(UTC)
    today = (now - 4 * HOUR).replace(minute=0, second=0, microsecond=0)
    good, bad = f"good-{unique}", f"bad-{unique}"
    events: list[tuple[str, str, Event]] = []
    for d in (good, bad):
        for day in range(6, 0, -1):
            base = today - timedelta(days=day)
            for e in cycle(d, stream, base, HOUR, 1.5 * HOUR):
                events.append((f"{prefix}.transfers", d, e))
    for e in cycle(good, stream, today, HOUR, 1.5 * HOUR):
        events.append((f"{prefix}.transfers", good, e))
    for e in cycle(bad, stream, today, HOUR, 3.5 * HOUR):
        events.append((f"{prefix}.transfers", bad, e))
    async with Publisher(kafka, client_id="test-timeliness") as publisher:
        await publisher.publish_many(events)

    args = ("--stream", stream, "--time", f"{today:%H}", "--step", "24", "--type", "fc")
    done = await asyncio.to_thread(ecpds, "product", "completed", *args, "--at", "20261207060000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{stream}/{today:%H}/24/fc: completed at 2026-12-07 06:00:00Z" in done.stdout
    refused = await asyncio.to_thread(
        ecpds, "product", "started", "--stream", "a/b", *args[2:]
    )  # fmt: skip
    assert refused.returncode == 2
    assert "stream" in refused.stdout

    models = ReadModels(postgres, kafka, schema, prefix, tuple(topics), f"tl-{unique}")
    await project(postgres, kafka, schema, models.projection, topics, await ends_of(kafka, topics))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "web-users").write_text(f"op1:operator:{hash_password('op-pass')}\n")
    (secrets / "api-tokens").write_text(f"script:{token_digest(TOKEN)}\n")
    config = replace(monitor_config(models, secrets))
    try:
        async with (
            serve(config) as url,
            httpx.AsyncClient(base_url=url, timeout=20) as client,
        ):
            started = await client.post(
                "/api/v1/products/started",
                json={"stream": stream, "time": f"{today:%H}", "step": "24", "type": "fc"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert started.status_code == 202, started.text
            assert started.json()["product"] == f"{stream}/{today:%H}/24/fc"
            missing = await client.post(
                "/api/v1/products/started",
                json={"stream": stream, "time": f"{today:%H}", "step": "24"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert missing.status_code == 400
            assert missing.json()["field"] == "type"
            await project(
                postgres, kafka, schema, models.projection, topics, await ends_of(kafka, topics)
            )

            assert (await sign_in(client, "op1", "op-pass")).status_code == 303
            page = await client.get("/timeliness", params={"product": stream})
            assert page.status_code == 200
            html = page.text
            product = f"{stream}/{today:%H}/24/fc"
            assert product in html
            cells = dict(
                re.findall(
                    r'data-lateness="([A-Z_]+)"[^>]*><a href="/timeliness/cell\?destination='
                    r"([a-z0-9-]+)&amp;",
                    html,
                )
            )
            assert {v: k for k, v in cells.items()} == {good: "ON_TIME", bad: "CRITICAL"}
            status_row = re.search(rf'data-product="{re.escape(product)}">(.*?)</tr>', html)
            assert status_row is not None
            assert "<td>started</td>" in status_row[1]
            assert "<td>token:script</td>" in status_row[1]  # the API caller

            behind = await client.get(
                "/timeliness/cell", params={"destination": bad, "product": product}
            )
            assert behind.status_code == 200
            links = re.findall(r'href="/transfers/([^"]+)"', behind.text)
            assert len(links) == 7
            assert f"{stream}-{today:%Y%m%d}-{bad}" in links

            # OpenECPDS's ts filter: the time step of the transfer's product
            async def search(q: str) -> set[str]:
                found = await client.get("/api/v1/transfers", params={"q": q})
                assert found.status_code == 200, found.text
                return {t["transfer_id"] for t in found.json()["transfers"]}

            stepped = await search(f"ts>=24 ts<=24 destination={bad}")
            assert len(stepped) == 7
            assert f"{stream}-{today:%Y%m%d}-{bad}" in stepped
            assert await search(f"ts>24 destination={bad}") == set()
    finally:
        await drop(postgres, schema)
