"""The mailer runner: consume ``ecpds.transfers`` -> decide mails -> deliver -> commit.

Mails are sent over SMTP when ``ECPDS_SMTP_URL`` is set (``ECPDS_SMTP_USER``, password read
from ``ECPDS_SMTP_PASSWORD_FILE``, sender ``ECPDS_MAIL_FROM``). Without it (the embedded
default of ``make up``) every mail is written as an RFC 5322 ``.eml`` file under
``<ECPDS_VAR>/mail/outbox/`` (temporary file + rename), for an operator to read with any mail
reader or ``less``.

Offset rule (at-least-once): records are handled in order per partition and an offset is
committed only once every mail of the records before it was delivered (sent, or written to
the outbox) or ended for good. A retriable failure (server down, 4xx, login refused) is tried
again with a doubling backoff, as long as it takes, without moving on; stopping meanwhile
leaves the record uncommitted, so it is read again at the next start. A permanent failure
(5xx: recipient refused) is logged as an error with the server's reason and the record is
passed: one bad address never blocks the stream. A redelivered record may mail again; the
mail has the same ``Message-ID`` (and replaces its file in the outbox).

A new consumer group starts at the end of the topic (``start_at="latest"``): the history of
transfers is not mailed when the mailer is first deployed. Configuration comes from
``bus.config.view.LiveConfig``; a mail is decided with the configuration known when its event
is read. Nothing secret is logged: the SMTP password is never in a message or a log line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from bus import codec
from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import sleep_unless, stage_consumer, stop_on_signals
from bus.errors import ConfigurationError, DecodeError
from bus.events import Event
from bus.logging import configure, get_logger
from bus.settings import Settings
from bus.topics import TRANSFERS
from consumers.mailer import core
from consumers.mailer.delivery import OutboxTransport, SmtpServer, SmtpTransport, message
from consumers.mailer.ports import DeliveryError, Transport

log = get_logger(__name__)
Record: TypeAlias = ConsumerRecord[Any, Any]
GROUP = "ecpds-mailer"


class MailerRunner:
    """Mails transfer events to the addresses configured for them (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        config: ConfigSource,
        transport: Transport,
        *,
        sender: str = "ecpds@localhost",
        transfers_topic: str = TRANSFERS,
        group_id: str = GROUP,
        start_at: Literal["earliest", "latest"] = "latest",
        first_delay: float = 0.5,
        max_delay: float = 60.0,
    ) -> None:
        self.state = core.MailerState()
        self._config = config
        self._transport = transport
        self._sender = sender
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._stopping = asyncio.Event()
        self._consumer = stage_consumer(
            transfers_topic,
            bootstrap=bootstrap,
            group_id=group_id,
            auto_offset_reset=start_at,
            max_poll_interval_ms=3_600_000,  # an SMTP server down for a while must not evict us
        )
        self.sent = 0  # mails delivered
        self.skipped = 0  # mails refused for good
        self.retries = 0  # failed attempts that were tried again

    def stop(self) -> None:
        """Finish the delivery in hand (abandoning a pending retry, uncommitted), then return."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume and mail until ``stop`` is called."""
        await self._consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=200, max_records=100)
                for tp, records in batches.items():
                    if not await self._partition(tp, records):
                        return  # stopping mid-retry: the rest is read again at the next start
        finally:
            await self._consumer.stop()

    async def _partition(self, tp: TopicPartition, records: list[Record]) -> bool:
        """Mail the records in order; False when stopped before the end.

        Commits once per batch, and also before a record that has mails to deliver (a slow or
        failing delivery then holds back only itself and what follows it)."""
        done: int | None = None  # the offset after the last record that ended
        try:
            for record in records:
                event = _decode(record)
                mails = self._decide(event) if event is not None else ()
                if mails and done is not None:
                    await self._commit(tp, done)
                    done = None
                for mail in mails:
                    if not await self._deliver(mail):
                        return False
                done = record.offset + 1
            return True
        finally:
            if done is not None:
                await self._commit(tp, done)

    def _decide(self, event: Event) -> tuple[core.Mail, ...]:
        view = self._config.view
        mails = core.decide(self.state, view, event)
        core.evolve(self.state, view, event)
        return mails

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        with contextlib.suppress(KafkaError):  # uncommitted = mailed again, not lost
            await self._consumer.commit({tp: offset})

    async def _deliver(self, mail: core.Mail) -> bool:
        """Whether ``mail`` ended (delivered or refused for good); False only when stopping."""
        msg = message(mail, self._sender)
        delay = self._first_delay
        while True:
            try:
                await self._transport.deliver(msg)
            except DeliveryError as error:
                if not error.retriable:
                    self.skipped += 1
                    log.error(
                        "mail refused for good, skipped",
                        rule=mail.rule,
                        to=list(mail.to),
                        message_id=mail.message_id,
                        reason=error.reason,
                    )
                    return True
                self.retries += 1
                log.warning(
                    "mail not delivered, retrying",
                    transport=self._transport.name,
                    message_id=mail.message_id,
                    reason=error.reason,
                    retry_in=delay,
                )
                if await sleep_unless(self._stopping, delay):
                    return False
                delay = min(self._max_delay, delay * 2)
                continue
            self.sent += 1
            log.info(
                "mail delivered",
                rule=mail.rule,
                to=list(mail.to),
                subject=mail.subject,
                transport=self._transport.name,
            )
            return True


def _decode(record: Record) -> Event | None:
    header = codec.type_header(record.headers)
    try:
        return codec.decode_with_type(record.value, header)
    except DecodeError:
        return None  # not this stage's to judge: the topic's owners dead-letter it


def transport_for(settings: Settings) -> Transport:
    """SMTP when ``ECPDS_SMTP_URL`` is set, else the ``.eml`` outbox under ``var``."""
    if settings.smtp_url is None:
        return OutboxTransport(outbox(settings))
    password = None
    if settings.smtp_password_file is not None:
        try:
            password = settings.smtp_password_file.read_text().strip()
        except OSError as error:
            raise ConfigurationError(
                "ECPDS_SMTP_PASSWORD_FILE", f"cannot read it: {error.strerror}"
            ) from None
    return SmtpTransport(
        SmtpServer.from_url(settings.smtp_url), user=settings.smtp_user, password=password
    )


def outbox(settings: Settings) -> Path:
    """Where mails are written when no SMTP server is configured."""
    return settings.var_dir / "mail" / "outbox"


async def serve(settings: Settings) -> None:
    """Run the mailer with the live configuration until SIGTERM/SIGINT."""
    transport = transport_for(settings)
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        runner = MailerRunner(settings.kafka_bootstrap, live, transport, sender=settings.mail_from)
        stop_on_signals(runner.stop)
        log.info("mailer running", transport=transport.name, sender=settings.mail_from)
        await runner.run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ecpds-mailer", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    settings = Settings.from_env()
    configure(settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
