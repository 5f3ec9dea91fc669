"""The mailer: ``ecpds.transfers`` and ``ecpds.products`` -> decide mails -> deliver; a stage
of the kit (``bus.stage``: its docstring has the commit rule).

Mails are sent over SMTP when ``ECPDS_SMTP_URL`` is set (``ECPDS_SMTP_USER``, password read
from ``ECPDS_SMTP_PASSWORD_FILE``, sender ``ECPDS_MAIL_FROM``). Without it (the embedded
default of ``make up``) every mail is written as an RFC 5322 ``.eml`` file under
``<ECPDS_VAR>/mail/outbox/`` (temporary file + rename), for an operator to read with any mail
reader or ``less``.

A record ends once every mail it calls for was delivered (sent, or written to the outbox) or
refused for good. A retriable failure (server down, 4xx, login refused) is retried by the kit
with a doubling backoff, as long as it takes, without moving on; the mails of a record are
decided once (the notify-once memory must not see an event twice) and a retry delivers only
those not delivered yet. A permanent failure (5xx: recipient refused) becomes a ``MailFailed``
event on ``ecpds.notifications`` with the server's reason, as a refused notification becomes a
``NotificationFailed``: one bad address never blocks the stream, and the refusal is in the log.
A redelivered record may mail again; the mail has the same ``Message-ID`` (and replaces its file
in the outbox).

A new consumer group starts at the end of the topic (``start_at="latest"``): the history of
transfers is not mailed when the mailer is first deployed. Configuration comes from
``bus.config.view.LiveConfig``; a mail is decided with the configuration known when its event
is read. Nothing secret is logged: the SMTP password is never in a message or a log line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.errors import ConfigurationError
from bus.logging import get_logger
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.stage import Publish, Received, Stage, main, until_signalled
from bus.topics import DEADLETTER, NOTIFICATIONS, PRODUCTS, TRANSFERS
from consumers.mailer import core
from consumers.mailer.delivery import OutboxTransport, SmtpServer, SmtpTransport, message
from consumers.mailer.ports import DeliveryError, Transport

log = get_logger(__name__)
GROUP = "ecpds-mailer"


@dataclass
class _Pending:
    """The mails of a record not delivered yet, and the refusals met so far."""

    mails: list[core.Mail]
    refusals: list[Publish] = field(default_factory=list)


class Mailer:
    """The mailer's handler: the mails of each transfer event (see the module docstring)."""

    def __init__(
        self,
        config: ConfigSource,
        transport: Transport,
        *,
        sender: str,
        notifications_topic: str,
        source: str,
    ) -> None:
        self.state = core.MailerState()
        self._config = config
        self._transport = transport
        self._sender = sender
        self._notifications = notifications_topic
        self._source = source
        self._pending: dict[tuple[str, int, int], _Pending] = {}  # records being retried
        self.sent = 0  # mails delivered
        self.refused = 0  # mails refused for good

    async def handle(self, received: Received) -> Sequence[Publish]:
        event = received.event
        at = (received.topic, received.partition, received.offset)
        pending = self._pending.pop(at, None)
        if pending is None:
            view = self._config.view
            pending = _Pending(list(core.decide(self.state, view, event)))
            core.evolve(self.state, view, event)
        while pending.mails:
            mail = pending.mails[0]
            try:
                await self._transport.deliver(message(mail, self._sender))
            except DeliveryError as error:
                if error.retriable:
                    self._pending[at] = pending  # the kit retries; delivered mails stay sent
                    raise
                self.refused += 1
                log.error(
                    "mail refused for good",
                    rule=mail.rule,
                    to=list(mail.to),
                    message_id=mail.message_id,
                    reason=error.reason,
                )
                now = datetime.now(UTC)
                failed = core.refused(
                    mail, event, type(error).__name__, error.reason, now, self._source
                )
                pending.refusals.append(Publish(self._notifications, failed.destination, failed))
            else:
                self.sent += 1
                log.info(
                    "mail delivered",
                    rule=mail.rule,
                    to=list(mail.to),
                    subject=mail.subject,
                    transport=self._transport.name,
                )
            pending.mails.pop(0)
        return pending.refusals


def mailer_stage(
    bootstrap: str,
    config: ConfigSource,
    transport: Transport,
    *,
    sender: str = "ecpds@localhost",
    transfers_topic: str = TRANSFERS,
    notifications_topic: str = NOTIFICATIONS,
    deadletter_topic: str = DEADLETTER,
    products_topic: str | None = None,  # lateness events (``serve`` reads ecpds.products)
    group_id: str = GROUP,
    start_at: Literal["earliest", "latest"] = "latest",
    retry: RetryPolicy | None = None,
    source: str = "mailer",
) -> Stage[Mailer]:
    """The mailer on ``transfers_topic``, delivering through ``transport``."""
    mailer = Mailer(
        config, transport, sender=sender, notifications_topic=notifications_topic, source=source
    )
    return Stage(
        mailer,
        bootstrap=bootstrap,
        topics=[transfers_topic, *([products_topic] if products_topic else [])],
        group_id=group_id,
        source=source,
        start_at=start_at,
        retry=retry or RetryPolicy(initial=0.5, maximum=60.0),
        max_poll_interval_ms=3_600_000,  # an SMTP server down for a while must not evict us
        deadletter_topic=deadletter_topic,
    )


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


async def serve(settings: Settings, _: argparse.Namespace) -> None:
    """Run the mailer with the live configuration until a signal."""
    transport = transport_for(settings)
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        stage = mailer_stage(
            settings.kafka_bootstrap,
            live,
            transport,
            sender=settings.mail_from,
            source=f"mailer/{settings.instance}",
            products_topic=PRODUCTS,
        )
        log.info("mailer running", transport=transport.name, sender=settings.mail_from)
        await until_signalled(stage)


if __name__ == "__main__":
    main("ecpds-mailer", __doc__.splitlines()[0], serve)
