"""The mailer runner against the real Kafka, a real SMTP server (aiosmtpd) and a real outbox
folder: configuration applied as ``ecpds config apply`` does, events published on the test's
own transfers topic."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus.config.apply import events_for, plan, resolve
from bus.config.secrets import OperatorKey
from bus.config.view import LiveConfig
from bus.config.yamlio import load
from bus.events import Event
from bus.events.deadletter import DeadLetterReason
from bus.events.notifications import MailFailed
from bus.events.transfers import TransferFailed, TransferQueued, TransferSucceeded
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.stage import Stage
from bus.topics import DAY_MS, TopicSpec, apply_topics
from consumers.mailer.delivery import OutboxTransport, SmtpServer, SmtpTransport
from consumers.mailer.ports import Transport
from consumers.mailer.runner import Mailer, mailer_stage, transport_for
from tests.bus.deadletters import dead_letters, publish_poison
from tests.bus.samples import sample
from tests.conftest import eventually
from tests.ingest.conftest import read_topic
from tests.mailer.conftest import MailServer, envelope

pytestmark = pytest.mark.kafka

CONFIG = """
hosts:
  - id: ftp-1
    nickname: primary ftp
    type: dissemination
    protocol: ftp
    address: 127.0.0.1:2121
    login: bob
    password: hunter2-secret
    options:
      mail.to: admin@host.org
      mail.onSuccess: yes
      mail.onError: yes
      mail.notifyOnce: yes
destinations:
  - name: meteo-fr
    type: dissemination
    transfer_group: default
    properties:
      mail.to: ops@meteo.fr, desk@meteo.fr
      mail.onEnd: yes
      mail.onError: yes
  - name: bad-site
    type: dissemination
    transfer_group: default
    properties:
      mail.to: nobody@refused.test
      mail.onError: yes
"""


@dataclass(frozen=True)
class Names:
    """One test's transfers, notifications and dead-letter topics and consumer group."""

    transfers: str
    group: str
    notifications: str
    deadletter: str


@pytest.fixture(scope="module")
async def config_topic(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """This module's configuration topic, holding ``CONFIG`` as ``ecpds config apply`` puts it."""
    topic = f"test.mailer.{uuid.uuid4().hex[:10]}.config"
    key = OperatorKey.load(tmp_path_factory.mktemp("key") / "ecpds.key")
    async with LiveConfig(kafka, topic) as live:
        changes = plan(live.view, resolve(load(CONFIG), live.view, key))
        items = [(topic, k, e) for k, e in events_for(changes, source="mailer-test")]
        async with Publisher(kafka, client_id="mailer-test") as publisher:
            await live.reached(await publisher.publish_many(items))
    return topic


@pytest.fixture
async def config(kafka: str, config_topic: str) -> AsyncIterator[LiveConfig]:
    async with LiveConfig(kafka, config_topic) as live:
        yield live


@pytest.fixture
async def names(kafka: str, unique: str) -> Names:
    """A transfers topic (2 partitions), its outcome topics and a consumer group of the test's
    own."""
    prefix = f"test.mailer.{unique}"
    names = Names(f"{prefix}.transfers", prefix, f"{prefix}.notifications", f"{prefix}.deadletter")
    await apply_topics(
        kafka,
        [
            TopicSpec(
                names.transfers, "destination", 2, "delete", DAY_MS, ("ecpds.transfers",), ""
            ),
            TopicSpec(
                names.notifications,
                "destination",
                1,
                "delete",
                DAY_MS,
                ("ecpds.notifications",),
                "",
            ),
            TopicSpec(names.deadletter, "origin", 1, "delete", DAY_MS, ("ecpds.deadletter",), ""),
        ],
    )
    return names


@contextlib.asynccontextmanager
async def running(
    kafka: str, names: Names, config: LiveConfig, transport: Transport
) -> AsyncIterator[Stage[Mailer]]:
    runner = mailer_stage(
        kafka,
        config,
        transport,
        sender="ecpds@test.local",
        transfers_topic=names.transfers,
        notifications_topic=names.notifications,
        deadletter_topic=names.deadletter,
        group_id=names.group,
        start_at="earliest",
        retry=RetryPolicy(initial=0.1, maximum=0.5),
    )
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)


async def publish(kafka: str, topic: str, *events: Event) -> None:
    async with Publisher(kafka, client_id="mailer-test") as publisher:
        for event in events:
            await publisher.publish(topic, event.destination, event)  # type: ignore[attr-defined]


def queued(tid: str, target: str, destination: str = "meteo-fr") -> TransferQueued:
    return sample(
        TransferQueued,
        envelope=envelope(tid),
        transfer_id=tid,
        destination=destination,
        target=target,
    )


def failed(tid: str, destination: str = "meteo-fr") -> TransferFailed:
    return sample(
        TransferFailed,
        envelope=envelope(tid),
        transfer_id=tid,
        destination=destination,
        host_id="ftp-1",
        error_class="ConnectionRefused",
        message="530 login incorrect",
        attempt=1,
    )


def succeeded(tid: str, destination: str = "meteo-fr") -> TransferSucceeded:
    return sample(
        TransferSucceeded,
        envelope=envelope(tid),
        transfer_id=tid,
        destination=destination,
        host_id="ftp-1",
        bytes_sent=4096,
        duration_ms=1500,
    )


async def committed(kafka: str, topic: str, group: str) -> int:
    """The total committed offset of ``group`` over the two partitions of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group)
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(2)]
    finally:
        await consumer.stop()
    return sum(o or 0 for o in offsets)


async def test_failure_and_success_mail_destination_and_host(
    kafka: str, names: Names, config: LiveConfig, smtp: MailServer
) -> None:
    """A failure then a success mail the destination's and the host's addresses with the right
    subjects and bodies; a recipient refused for good (550) becomes a MailFailed event with the
    server's reason, without blocking the stream; every offset is committed; no secret is in
    any mail."""
    transport = SmtpTransport(SmtpServer.from_url(smtp.url))
    async with running(kafka, names, config, transport) as runner:
        # first a failure on the other destination: its host mail starts the host's error run
        await publish(kafka, names.transfers, failed("t0", "bad-site"))

        async def first_ended() -> bool:
            return runner.handler.sent + runner.handler.refused >= 2

        await eventually(first_ended, 30)
        events = (queued("t1", "out/file.grib"), failed("t1"), succeeded("t1"))
        await publish(kafka, names.transfers, *events)

        async def all_ended() -> bool:
            return runner.handler.sent + runner.handler.refused >= 5

        await eventually(all_ended, 30)
    assert runner.handler.refused == 1  # nobody@refused.test
    assert runner.handler.sent == 4
    assert smtp.recorder.to("nobody@refused.test") == []
    [refusal] = [e for _, _, e in await read_topic(kafka, names.notifications)]
    assert isinstance(refusal, MailFailed)
    assert (refusal.destination, refusal.transfer_id) == ("bad-site", "t0")
    assert (refusal.rule, refusal.recipients) == ("destination.onError", ("nobody@refused.test",))
    assert refusal.error_class == "DeliveryError"
    assert "550" in refusal.message
    assert refusal.subject.startswith("[ecpds] bad-site:")

    ops = smtp.recorder.to("ops@meteo.fr")
    assert [m.subject for m in ops] == [
        "[ecpds] meteo-fr: transfer of out/file.grib FAILED (attempt 1)",
        "[ecpds] meteo-fr: transfer of out/file.grib DONE",
    ]
    assert all(m.recipients == ("ops@meteo.fr", "desk@meteo.fr") for m in ops)
    assert all(m.sender == "ecpds@test.local" for m in ops)
    assert "Error:" in ops[0].body
    assert "ConnectionRefused: 530 login incorrect" in ops[0].body
    for text in ("Transfer id: t1", "Target:      out/file.grib", "Bytes:       4096"):
        assert text in ops[1].body
    assert "1.500 s" in ops[1].body

    # notify-once: t0's error mail, none for t1's failure, then the success
    host_mails = smtp.recorder.to("admin@host.org")
    assert [m.subject for m in host_mails] == [
        "[ecpds] host ftp-1: transfer of id t0 to bad-site FAILED (attempt 1)",
        "[ecpds] host ftp-1: transfer of out/file.grib to meteo-fr DONE",
    ]
    assert all("ftp-1 (primary ftp)" in m.body for m in host_mails)
    for mail in smtp.recorder.mails:
        raw = mail.message.as_string()
        assert "hunter2" not in raw
        assert "bob" not in raw
    assert await committed(kafka, names.transfers, names.group) == 4


async def test_without_smtp_mails_are_written_to_the_outbox(
    kafka: str, names: Names, config: LiveConfig, tmp_path: Path
) -> None:
    """Without an SMTP URL mails are written as .eml files under <var>/mail/outbox, complete
    (no temporary file left) and readable as RFC 5322 messages."""
    settings = Settings.from_env({"ECPDS_VAR": str(tmp_path)})
    transport = transport_for(settings)
    assert isinstance(transport, OutboxTransport)
    assert transport.folder == tmp_path / "mail" / "outbox"
    async with running(kafka, names, config, transport) as runner:
        await publish(kafka, names.transfers, queued("t9", "out/fallback.grib"), succeeded("t9"))

        async def written() -> bool:
            return runner.handler.sent >= 2

        await eventually(written, 30)
    files = sorted(transport.folder.iterdir())
    assert [p.suffix for p in files] == [".eml", ".eml"]
    mails = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in files]
    subjects = sorted(str(m["Subject"]) for m in mails)
    assert subjects == [
        "[ecpds] host ftp-1: transfer of out/fallback.grib to meteo-fr DONE",
        "[ecpds] meteo-fr: transfer of out/fallback.grib DONE",
    ]
    assert {str(m["From"]) for m in mails} == {"ecpds@test.local"}
    assert all(m["Message-ID"] and m["Date"] for m in mails)


async def test_mail_waits_for_a_server_that_is_down(
    kafka: str, names: Names, config: LiveConfig
) -> None:
    """A mail for an SMTP server that is down at first is retried with backoff and delivered
    once the server is up, exactly once, and only then committed."""
    server = MailServer()  # its port is chosen but nothing listens yet
    transport = SmtpTransport(SmtpServer.from_url(server.url), timeout=2)
    try:
        async with running(kafka, names, config, transport) as runner:
            await publish(kafka, names.transfers, queued("t5", "out/late.grib"), succeeded("t5"))

            async def retrying() -> bool:
                return runner.retries >= 3

            await eventually(retrying, 30)
            assert runner.handler.sent == 0
            # the queueing (no mail) is committed, the success waiting for its mails is not
            assert await committed(kafka, names.transfers, names.group) == 1
            await asyncio.to_thread(server.start)

            async def delivered() -> bool:
                return runner.handler.sent >= 2

            await eventually(delivered, 30)
        subjects = sorted(m.subject for m in server.recorder.mails)
        assert subjects == [
            "[ecpds] host ftp-1: transfer of out/late.grib to meteo-fr DONE",
            "[ecpds] meteo-fr: transfer of out/late.grib DONE",
        ]
        assert await committed(kafka, names.transfers, names.group) == 2
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_poison_record_is_dead_lettered_once_and_the_next_event_mailed(
    kafka: str, names: Names, config: LiveConfig, tmp_path: Path
) -> None:
    """An undecodable record on the transfers topic becomes one dead letter of the mailer's
    group, and the success after it is still mailed."""
    transport = OutboxTransport(tmp_path / "outbox")
    async with Publisher(kafka, client_id="mailer-test") as publisher:
        poison = await publish_poison(publisher, names.transfers, b"meteo-fr")
    await publish(kafka, names.transfers, succeeded("t7"))
    async with running(kafka, names, config, transport) as runner:

        async def mailed() -> bool:
            return runner.handler.sent >= 2 and runner.dead_lettered >= 1

        await eventually(mailed, 30)
    letters = await dead_letters(kafka, names.deadletter, names.transfers, names.group)
    assert [(d.origin_offset, d.reason) for d in letters] == [
        (poison.offset, DeadLetterReason.UNDECODABLE)
    ]
    assert await committed(kafka, names.transfers, names.group) == 2
