"""The projector against the real Kafka broker and PostgreSQL: every event type, no secrets,
exactly-once under redelivery and crashes, and status counts that follow status changes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bus import codec
from bus.events import envelope
from bus.events.deadletter import DeadLettered
from bus.events.movers import MoverHeartbeat
from bus.publisher import Publisher
from bus.settings import ROOT
from bus.topics import DEADLETTER, apply_topics, catalogue, partition_counts
from projections.db import connect
from projections.migrate import migrate
from projections.projector import Projection, Projector
from tests.bus.samples import SAMPLES
from tests.projections import stream
from tests.projections.stream import CIPHERTEXT, PASSWORD_HASH, Item
from tests.projections.support import (
    create_topics,
    drop,
    positions,
    project,
    publish,
    snapshot,
    specs,
    wait_caught_up,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

FAMILY_OF = {ns: family for family, ns, _ in stream.FAMILIES}


def sample_items() -> list[Item]:
    return [
        Item(FAMILY_OF[name.rpartition(".")[0]], f"key-{i}", event)
        for i, (name, event) in enumerate(SAMPLES.items())
    ]


async def fetch_all(bootstrap: str, topics: Sequence[str]) -> list[ConsumerRecord[Any, Any]]:
    """Every record of the topics, read with a plain consumer (no group)."""
    counts = await partition_counts(bootstrap, topics)
    tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[Any, Any]] = []
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        deadline = asyncio.get_running_loop().time() + 60
        # test topics are never compacted (segments never roll here): every partition ends
        # with a record at its end offset - 1, so reading up to it is the whole condition
        while remaining:
            assert asyncio.get_running_loop().time() < deadline, f"not all read: {remaining}"
            batches = await consumer.getmany(timeout_ms=500)
            for tp, batch in batches.items():
                records.extend(batch)
                if batch and batch[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def query(dsn: str, schema: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = await connect(dsn, schema, autocommit=True)
    try:
        return await (await conn.execute(sql.encode(), params)).fetchall()
    finally:
        await conn.close()


async def test_every_event_type_is_projected(
    kafka: str, postgres: str, schema: str, unique: str
) -> None:
    """A sample of every event type, published on its topic, lands in the read models."""
    prefix = f"test.{unique}"
    topics = await create_topics(kafka, prefix)
    ends = await publish(kafka, prefix, sample_items())
    await project(postgres, kafka, schema, f"test-{unique}", topics, ends)

    counts = {
        table: rows[0][0]
        for table in (
            "config_changes",
            "operator_requests",
            "portal_access",
            "notifications",
            "dead_letters",
            "movers",
            "data_file_refusals",
            "acquisition_hosts",
            "acquisition_files",
            "data_users",
            "policies",
            "transfer_groups",
        )
        if (rows := await query(postgres, schema, f"SELECT count(*) FROM {table}"))  # noqa: S608
    }
    assert counts == {
        "config_changes": 21,  # 18 entity events and 3 host key events
        "operator_requests": 12,  # 11 requests and the scheduler's RequestDeclined
        "portal_access": 5,  # uploads, downloads, denials, sign-in failures and bans
        "notifications": 3,  # published, failed and refused (a WIS2 rule broken)
        "dead_letters": 1,
        "movers": 1,
        "data_file_refusals": 1,
        "acquisition_hosts": 1,
        "acquisition_files": 1,
        "data_users": 1,
        "policies": 1,
        "transfer_groups": 1,
    }
    timeline = [
        e
        for name, e in SAMPLES.items()
        if name.rpartition(".")[0]
        in ("ecpds.transfers", "ecpds.orders", "ecpds.notifications", "ecpds.movers")
        # a pre-staged copy joins the timeline of its file's transfer to the destination
        and (getattr(e, "transfer_id", None) is not None or name.endswith(".DataFileStaged"))
    ]
    history = await query(postgres, schema, "SELECT event_id::text FROM transfer_history")
    assert sorted(r[0] for r in history) == sorted(e.envelope.event_id for e in timeline)
    queued = SAMPLES["ecpds.transfers.TransferQueued"]
    rows = await query(
        postgres,
        schema,
        "SELECT status, destination, priority FROM transfers WHERE transfer_id = %s",
        queued.transfer_id,  # type: ignore[attr-defined]
    )
    assert rows == [("WAIT", "meteo-fr", 50)]
    user = await query(postgres, schema, "SELECT login, has_password FROM data_users")
    assert user == [("login-1", True)]
    host = await query(postgres, schema, "SELECT has_credentials FROM hosts WHERE defined")
    assert host == [(True,)]


async def test_no_secret_reaches_a_read_model(
    kafka: str, postgres: str, schema: str, unique: str
) -> None:
    """No row of any table holds a password hash, a ciphertext or a secret-looking option."""
    prefix = f"test.{unique}"
    topics = await create_topics(kafka, prefix)
    ends = await publish(kafka, prefix, sample_items() + stream.events(20))
    await project(postgres, kafka, schema, f"test-{unique}", topics, ends)
    text = "\n".join(row for rows in (await snapshot(postgres, schema)).values() for row in rows)
    sample_hash = SAMPLES["ecpds.config.DataUserDefined"].data_user.password_hash  # type: ignore[attr-defined]
    sample_cipher = SAMPLES["ecpds.config.HostDefined"].host.credentials.ciphertext  # type: ignore[attr-defined]
    assert "clear-text-password" in str(stream.events(1)[0].event)  # the stream does carry them
    for secret in (PASSWORD_HASH, sample_hash, "argon2", "clear-secret", "clear-text-password"):
        assert secret not in text
    for blob in (CIPHERTEXT, sample_cipher):
        assert blob.hex() not in text
        assert blob.decode("latin-1") not in text
    assert "<redacted>" in text  # the secret-looking options were seen, and redacted


async def test_redelivered_events_change_nothing(
    kafka: str, postgres: str, schema: str, unique: str
) -> None:
    """Applying the same records again, in other batches and by a new process, leaves the
    tables identical."""
    prefix = f"test.{unique}"
    topics = await create_topics(kafka, prefix)
    await publish(kafka, prefix, stream.events(300))
    records = await fetch_all(kafka, topics)
    conn = await connect(postgres, schema)
    try:
        projection = Projection(conn, name="redelivery")
        for i in range(0, len(records), 500):
            await projection.apply(records[i : i + 500])
        first = await snapshot(postgres, schema)
        for i in range(0, len(records), 333):
            result = await projection.apply(records[i : i + 333])
            assert result.events == 0
        again = Projection(conn, name="redelivery")  # a restarted process
        await again.assigned({TopicPartition(r.topic, r.partition) for r in records})
        await again.apply(records)
        assert await snapshot(postgres, schema) == first
    finally:
        await conn.close()
    assert sum(len(rows) for rows in first.values()) > 1000


async def test_status_counts_follow_every_status_change(
    kafka: str, postgres: str, schema: str, unique: str
) -> None:
    """Counts by destination and status equal a count of the transfers, every lifecycle ends
    DONE despite late outcomes of superseded attempts, and the timeline holds every event."""
    prefix = f"test.{unique}"
    topics = await create_topics(kafka, prefix)
    items = stream.events(400)
    ends = await publish(kafka, prefix, items)
    await project(postgres, kafka, schema, f"test-{unique}", topics, ends)
    counted = await query(
        postgres,
        schema,
        "SELECT destination, status, count FROM destination_status_counts WHERE count <> 0"
        " ORDER BY 1, 2",
    )
    actual = await query(
        postgres,
        schema,
        "SELECT destination, status, count(*) FROM transfers WHERE status IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert counted == actual
    assert await query(postgres, schema, "SELECT DISTINCT status FROM transfers") == [("DONE",)]
    overview = await query(
        postgres, schema, "SELECT sum(done), sum(queued) FROM destination_overview"
    )
    assert overview == [(400, 0)]
    timeline = sum(1 for i in items if i.family in ("transfers", "orders"))
    assert await query(postgres, schema, "SELECT count(*) FROM transfer_history") == [(timeline,)]


async def test_a_killed_projector_restarts_to_the_same_tables(
    kafka: str, postgres: str, schema: str, unique: str
) -> None:
    """A projector process killed (SIGKILL) mid-stream, then restarted, leaves the tables equal
    to a clean run's."""
    prefix = f"test.{unique}"
    name = f"test-{unique}"
    topics = await create_topics(kafka, prefix)
    ends = await publish(kafka, prefix, stream.events(2500))
    total = sum(v + 1 for v in ends.values())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "projections.runner",
        "--schema",
        schema,
        "--name",
        name,
        "--pattern",
        rf"^test\.{unique}\..*$",
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    done_at_kill = 0
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            done_at_kill = sum(v + 1 for v in (await positions(postgres, schema, name)).values())
            if done_at_kill > 0:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # into the stream, most likely inside a batch transaction
    finally:
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
    stopped_at = sum(v + 1 for v in (await positions(postgres, schema, name)).values())
    assert 0 < stopped_at < total, "the kill did not land mid-stream"

    # another consumer group, so nobody waits for the killed member's session to time out
    await project(postgres, kafka, schema, name, topics, ends, group_id=f"{name}-restarted")
    clean = f"{schema}_clean"
    await migrate(postgres, clean)
    try:
        await project(postgres, kafka, clean, name, topics, ends, group_id=f"{name}-clean")
        assert await snapshot(postgres, schema) == await snapshot(postgres, clean)
    finally:
        await drop(postgres, clean)


async def dead_letters_from(bootstrap: str, topic: str) -> list[DeadLettered]:
    """The dead letters whose origin is ``topic``."""
    records = await fetch_all(bootstrap, [DEADLETTER])
    letters = [codec.decode(r.value) for r in records]
    return [d for d in letters if isinstance(d, DeadLettered) and d.origin_topic == topic]


async def test_undecodable_and_unprojectable_messages_are_dead_lettered(
    kafka: str, postgres: str, schema: str, unique: str
) -> None:
    """A message that does not decode and an event whose row PostgreSQL refuses both go to
    ecpds.deadletter with their reason; the events around them are still projected."""
    await apply_topics(kafka, [s for s in catalogue() if s.name == DEADLETTER])
    prefix = f"test.{unique}"
    topics = await create_topics(kafka, prefix)
    movers = f"{prefix}.movers"

    def beat(mover: str, hostname: str) -> MoverHeartbeat:
        return MoverHeartbeat(
            envelope=envelope("test", mover),
            mover_id=mover,
            transfer_group="europe",
            capacity=4,
            running=1,
            started_at=stream.START,
            hostname=hostname,
        )

    async with Publisher(kafka, client_id="test-poison") as pub:
        await pub.publish(movers, "a", beat("mover-a", "a.example"))
        await pub.publish_raw(movers, b"b", b"not avro at all", [])
        await pub.publish(movers, "c", beat("mover-c", "nul\x00byte"))  # text refuses NUL
        last = await pub.publish(movers, "d", beat("mover-d", "d.example"))
    async with Publisher(kafka, client_id="test-deadletters") as dead:
        projector = Projector(
            dsn=postgres,
            bootstrap=kafka,
            schema=schema,
            name=f"test-{unique}",
            topics=topics,
            publisher=dead,
        )
        task = asyncio.create_task(projector.run())
        try:
            await wait_caught_up(
                postgres, schema, f"test-{unique}", {f"{movers}/{last.partition}": last.offset}
            )
        finally:
            projector.stop()
            await asyncio.wait_for(task, 30)
    rows = await query(postgres, schema, "SELECT mover_id FROM movers ORDER BY 1")
    assert rows == [("mover-a",), ("mover-d",)]
    letters = await dead_letters_from(kafka, movers)
    assert sorted(d.reason.value for d in letters) == ["PERMANENT_FAILURE", "UNDECODABLE"]
    assert all(d.consumer_group == f"test-{unique}" for d in letters)


async def test_poison_on_every_topic_is_dead_lettered_once_and_projection_goes_on(
    kafka: str, postgres: str, schema: str, unique: str
) -> None:
    """Undecodable bytes on every topic the projector reads, and an event of a type not allowed
    on the transfers topic, are each dead-lettered once for the projection's group with reason
    and origin; the good event sent after each is projected, and a restarted projector does not
    dead-letter them again."""
    await apply_topics(kafka, [s for s in catalogue() if s.name == DEADLETTER])
    prefix = f"test.{unique}"
    topics = await create_topics(kafka, prefix)
    name = f"test-{unique}"
    first_of = {
        ns: next(e for n, e in SAMPLES.items() if n.startswith(f"{ns}.")) for ns in FAMILY_OF
    }
    stray = SAMPLES["ecpds.movers.MoverHeartbeat"]
    expected: list[tuple[str, str, int, int]] = []
    ends: dict[str, int] = {}
    async with Publisher(kafka, client_id="test-poison") as pub:
        for family, ns, _ in stream.FAMILIES:
            topic = f"{prefix}.{family}"
            # one key: one partition, so each poison is met before the good event after it
            sent = await pub.publish_raw(topic, b"k", b"not avro at all", [])
            expected.append(("UNDECODABLE", topic, sent.partition, sent.offset))
            if family == "transfers":
                sent = await pub.publish_raw(topic, b"k", codec.encode(stray), codec.headers(stray))
                expected.append(("TYPE_NOT_ALLOWED", topic, sent.partition, sent.offset))
            good = await pub.publish(topic, "k", first_of[ns])
            ends[f"{topic}/{good.partition}"] = good.offset

    async def run_until_caught_up(group_id: str) -> None:
        async with Publisher(kafka, client_id="test-deadletters") as dead:
            projector = Projector(
                dsn=postgres, bootstrap=kafka, schema=schema, name=name, topics=topics,
                publisher=dead, specs=specs(prefix), group_id=group_id,
            )  # fmt: skip
            task = asyncio.create_task(projector.run())
            try:
                await wait_caught_up(postgres, schema, name, ends)
            finally:
                projector.stop()
                await asyncio.wait_for(task, 30)

    async def letters() -> list[tuple[str, str, int, int]]:
        found = [
            d for d in await dead_letters_from_prefix(kafka, prefix) if d.consumer_group == name
        ]
        return sorted((d.reason.value, d.origin_topic, d.origin_partition, d.origin_offset)
                      for d in found)  # fmt: skip

    await run_until_caught_up(f"{name}-a")
    assert await letters() == sorted(expected)
    queued = first_of["ecpds.transfers"]
    rows = await query(
        postgres, schema, "SELECT transfer_id FROM transfers WHERE transfer_id = %s",
        queued.transfer_id,  # type: ignore[attr-defined]
    )  # fmt: skip
    assert len(rows) == 1
    beat = first_of["ecpds.movers"]
    mover = beat.mover_id  # type: ignore[attr-defined]
    assert await query(postgres, schema, "SELECT mover_id FROM movers") == [(mover,)]

    async with Publisher(kafka, client_id="test-poison") as pub:
        again = await pub.publish(f"{prefix}.movers", "k", beat)
    ends[f"{prefix}.movers/{again.partition}"] = again.offset
    await run_until_caught_up(f"{name}-b")
    assert await letters() == sorted(expected)


async def dead_letters_from_prefix(bootstrap: str, prefix: str) -> list[DeadLettered]:
    """The dead letters whose origin is a topic named ``<prefix>.*``."""
    records = await fetch_all(bootstrap, [DEADLETTER])
    letters = [codec.decode(r.value) for r in records]
    return [
        d
        for d in letters
        if isinstance(d, DeadLettered) and d.origin_topic.startswith(f"{prefix}.")
    ]
