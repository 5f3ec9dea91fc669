"""The monitor's JSON API, metrics and OpenAPI document; actions publish the right operator
request events on Kafka, and their result shows once projected."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import codec
from bus.events import requests as r
from bus.tokens import TokenFile, TokenRole
from bus.topics import partition_counts
from tests.monitor.conftest import TOKEN, Monitor, ReadModels, csrf_of

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def requests_on(models: ReadModels) -> tuple[list[Any], dict[str, int]]:
    """Every operator request event on the test transfers topic, and the last offset of each
    partition (read with a plain consumer seeked to each partition's start)."""
    topic = models.transfers_topic
    counts = await partition_counts(models.bootstrap, [topic])
    tps = [TopicPartition(topic, p) for p in range(counts[topic])]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=models.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        found: list[Any] = []
        deadline = asyncio.get_running_loop().time() + 30
        while remaining:
            assert asyncio.get_running_loop().time() < deadline, f"not read: {remaining}"
            for tp, batch in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                found.extend(e for rec in batch if type(e := codec.decode(rec.value)) in r.EVENTS)
                if batch and batch[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
        return found, {f"{tp.topic}/{tp.partition}": ends[tp] - 1 for tp in tps if ends[tp]}
    finally:
        await consumer.stop()


async def test_form_action_publishes_a_requeue_request(
    operator: httpx.AsyncClient, monitor: Monitor
) -> None:
    """An operator's requeue button publishes RequeueRequested for that transfer, keyed by its
    destination, and the transfer page shows it once the projection has it."""
    page = await operator.get("/transfers/transfer-5")
    answer = await operator.post(
        "/transfers/transfer-5/action", data={"verb": "requeue", "csrf": csrf_of(page.text)}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/transfers/transfer-5?requested=requeue"
    events, ends = await requests_on(monitor.models)
    mine = [
        e
        for e in events
        if isinstance(e, r.RequeueRequested)
        and e.transfer_id == "transfer-5"
        and e.requested_by == "operator1"
    ]
    assert len(mine) == 1, [type(e).__name__ for e in events]
    detail = (await operator.get("/api/v1/transfers/transfer-5")).json()
    assert mine[0].destination == detail["transfer"]["destination"]
    await monitor.models.catch_up(ends)
    after = await operator.get("/transfers/transfer-5")
    assert "<td>RequeueRequested</td>" in after.text
    assert "operator1" in after.text


async def test_forms_offer_immediate_extend_and_host_priority(
    operator: httpx.AsyncClient, monitor: Monitor
) -> None:
    """The pages carry an "immediate" box for hold/restart, a lifetime for extend and a
    priority for a host; the forms publish the matching requests, and a bad lifetime is a 400."""
    page = await operator.get("/transfers/transfer-6")
    assert 'name="immediate"' in page.text
    assert 'name="lifetime"' in page.text
    csrf = csrf_of(page.text)
    extend = await operator.post(
        "/transfers/transfer-6/action", data={"verb": "extend", "lifetime": "3d", "csrf": csrf}
    )
    assert extend.status_code == 303
    bad = await operator.post(
        "/transfers/transfer-6/action", data={"verb": "extend", "lifetime": "soon", "csrf": csrf}
    )
    assert bad.status_code == 400
    dest = await operator.get("/destinations/dest-3")
    assert 'value="host-priority"' in dest.text
    csrf = csrf_of(dest.text)
    hold = await operator.post(
        "/destinations/dest-3/action", data={"verb": "hold", "immediate": "on", "csrf": csrf}
    )
    assert hold.status_code == 303
    prio = await operator.post(
        "/destinations/dest-3/action",
        data={"verb": "host-priority", "host": "host-3", "priority": "4", "csrf": csrf},
    )
    assert prio.status_code == 303
    events, _ = await requests_on(monitor.models)
    ext = [e for e in events if isinstance(e, r.LifetimeExtensionRequested)]
    assert [e.transfer_id for e in ext if e.requested_by == "operator1"] == ["transfer-6"]
    assert any(
        isinstance(e, r.HoldRequested) and e.destination == "dest-3" and e.immediate for e in events
    )
    assert any(
        isinstance(e, r.HostPriorityChangeRequested)
        and (e.destination, e.host_id, e.priority) == ("dest-3", "host-3", 4)
        for e in events
    )


async def test_token_actions_publish_priority_and_host_requests(
    monitor: Monitor,
) -> None:
    """A script token changes a priority and switches a host off through the API (202), and the
    matching request events carry the token's name."""
    async with httpx.AsyncClient(base_url=monitor.url, headers=BEARER) as script:
        prio = await script.post("/api/v1/transfers/transfer-7/priority", json={"priority": 5})
        assert prio.status_code == 202, prio.text
        assert prio.json()["event_type"] == "PriorityChangeRequested"
        off = await script.post("/api/v1/destinations/dest-1/hosts/host-1/off", json={})
        assert off.status_code == 202
        hold = await script.post("/api/v1/destinations/dest-1/hold")
        assert hold.status_code == 202
        bad = await script.post("/api/v1/transfers/transfer-7/priority", json={"priority": 500})
        assert bad.status_code == 400
        unknown = await script.post("/api/v1/transfers/no-such/requeue")
        assert unknown.status_code == 404
        verb = await script.post("/api/v1/transfers/transfer-7/explode")
        assert verb.status_code == 400
    events, _ = await requests_on(monitor.models)
    ids = {prio.json()["event_id"], off.json()["event_id"], hold.json()["event_id"]}
    mine = {e.envelope.event_id: e for e in events if e.envelope.event_id in ids}
    assert len(mine) == 3
    p = mine[prio.json()["event_id"]]
    assert isinstance(p, r.PriorityChangeRequested)
    assert (p.transfer_id, p.priority, p.requested_by) == ("transfer-7", 5, "token:script")
    h = mine[off.json()["event_id"]]
    assert isinstance(h, r.HostDeactivationRequested)
    assert (h.destination, h.host_id) == ("dest-1", "host-1")
    assert isinstance(mine[hold.json()["event_id"]], r.HoldRequested)


async def test_token_actions_immediate_restart_extend_and_host_priority(
    monitor: Monitor,
) -> None:
    """The API carries what the CLI does: an immediate restart, a lifetime extension (now +
    lifetime) and a host priority change; a bad lifetime or a non-boolean immediate is a 400."""
    async with httpx.AsyncClient(base_url=monitor.url, headers=BEARER) as script:
        restart = await script.post("/api/v1/destinations/dest-2/restart", json={"immediate": True})
        assert restart.status_code == 202, restart.text
        extend = await script.post("/api/v1/transfers/transfer-7/extend", json={"lifetime": "2d"})
        assert extend.status_code == 202, extend.text
        prio = await script.post(
            "/api/v1/destinations/dest-2/hosts/host-2/priority", json={"priority": 3}
        )
        assert prio.status_code == 202, prio.text
        bad = await script.post("/api/v1/transfers/transfer-7/extend", json={"lifetime": "soon"})
        assert (bad.status_code, "lifetime" in bad.text) == (400, True)
        worse = await script.post("/api/v1/destinations/dest-2/hold", json={"immediate": "yes"})
        assert worse.status_code == 400
    events, _ = await requests_on(monitor.models)
    mine = {e.envelope.event_id: e for e in events}
    rs = mine[restart.json()["event_id"]]
    assert isinstance(rs, r.RestartRequested)
    assert (rs.destination, rs.transfer_id, rs.immediate) == ("dest-2", None, True)
    ex = mine[extend.json()["event_id"]]
    assert isinstance(ex, r.LifetimeExtensionRequested)
    left = ex.expiry_time - ex.envelope.occurred_at
    assert timedelta(days=2) - timedelta(seconds=5) < left <= timedelta(days=2)
    hp = mine[prio.json()["event_id"]]
    assert isinstance(hp, r.HostPriorityChangeRequested)
    assert (hp.destination, hp.host_id, hp.priority) == ("dest-2", "host-2", 3)


async def test_api_serves_what_the_pages_show(monitor: Monitor) -> None:
    """Destinations, a destination's queue in scheduling order, transfers, data files, hosts,
    movers, acquisition and charts come back as JSON for a token."""
    async with httpx.AsyncClient(base_url=monitor.url, headers=BEARER) as script:
        dests = (await script.get("/api/v1/destinations")).json()
        assert dests["status"] == "ok"
        assert len(dests["destinations"]) == 6
        one = (await script.get("/api/v1/destinations/dest-0")).json()
        queue = one["queue"]
        keys = [(q["priority"], q["queue_time"], q["transfer_id"]) for q in queue]
        assert keys == sorted(keys)
        assert one["hosts"][0]["host"] == "host-0"
        for path, key in (
            ("/api/v1/data-files", "data_files"),
            ("/api/v1/hosts", "hosts"),
            ("/api/v1/movers", "movers"),
            ("/api/v1/acquisition", "hosts"),
            ("/api/v1/charts", "minutes"),
            ("/api/v1/destinations/dest-0/minutes", "minutes"),
        ):
            body = (await script.get(path)).json()
            assert body["status"] == "ok", path
            assert body[key], path
        transfer = (await script.get("/api/v1/transfers/transfer-1")).json()
        assert transfer["timeline"][0]["event_type"] == "TransferQueued"
        assert (await script.get("/api/v1/transfers/nope")).status_code == 404


async def test_metrics_and_openapi(monitor: Monitor) -> None:
    """/metrics gives Prometheus text with queue depths and statuses; the OpenAPI document names
    every API path."""
    async with httpx.AsyncClient(base_url=monitor.url, headers=BEARER) as script:
        metrics = await script.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert 'ecpds_transfers_by_status{status="DONE"}' in text
        assert "ecpds_projection_offset{" in text
        assert "# TYPE ecpds_queue_depth gauge" in text
        doc = (await script.get("/api/v1/monitor/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        assert "/api/v1/transfers/{transfer_id}/{verb}" in doc["paths"]
        assert "/metrics" in doc["paths"]


async def test_a_viewer_token_reads_but_every_action_is_refused(monitor: Monitor) -> None:
    """A read-only (viewer) token reads the API but is answered 403 on every route that
    publishes, and nothing it sent reaches the log."""
    reader = TokenFile(monitor.secrets_dir / "api-tokens").create("reader", TokenRole.VIEWER)
    async with httpx.AsyncClient(
        base_url=monitor.url, headers={"Authorization": f"Bearer {reader}"}
    ) as script:
        assert (await script.get("/api/v1/destinations")).status_code == 200
        refused = [
            await script.post("/api/v1/transfers/transfer-7/priority", json={"priority": 5}),
            await script.post("/api/v1/transfers/transfer-7/requeue", json={}),
            await script.post("/api/v1/destinations/dest-1/hosts/host-1/off", json={}),
            await script.post("/api/v1/destinations/dest-1/hold", json={}),
        ]
    assert [answer.status_code for answer in refused] == [403] * 4
    events, _ = await requests_on(monitor.models)
    assert not [e for e in events if getattr(e, "requested_by", "") == "token:reader"]
