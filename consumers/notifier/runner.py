"""The notifier: ``ecpds.transfers`` -> decide -> publish over MQTT -> record the outcome on
``ecpds.notifications``; a stage of the kit (``bus.stage``: its docstring has the commit rule).

A record of ``ecpds.transfers`` ends when it is not a notification case (not a success, a
destination that does not publish, an expired transfer: logged), or when its outcome event is
acknowledged by Kafka: ``NotificationPublished`` after the MQTT broker's acknowledgement,
``NotificationFailed`` when the broker refuses the message for good. A retriable failure
(broker unreachable, disconnected, busy) is retried by the kit with a doubling backoff for as
long as it takes, the notification decided again at each attempt (the configuration may change,
the transfer expire): nothing is dropped while the broker is down. A crash, or a lost outcome
event, redelivers and may publish a message twice; it keeps its WIS2 ``id`` (derived from the
transfer id and attempt) so subscribers can deduplicate.

A success event carries neither target, size, checksums nor expiry: they are remembered from
the transfer's ``TransferQueued`` (earlier on the same partition; the last ``remembered``
transfers, oldest forgotten first). When it is not known (a restart past it), the message is
still published with what is known (see ``core.decide``).
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import is_retriable
from bus.events.transfers import TransferQueued, TransferSucceeded
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.stage import Publish, Received, Stage, main, until_signalled
from bus.topics import DEADLETTER, NOTIFICATIONS, TRANSFERS, TopicSpec
from consumers.notifier import core
from consumers.notifier.adapters import PahoBroker
from consumers.notifier.ports import Broker

log = get_logger(__name__)
REMEMBERED: Final = 100_000


def utc_now() -> datetime:
    return datetime.now(UTC)


class Notifier:
    """The notifier's handler: one MQTT notification per delivered file."""

    def __init__(
        self,
        broker: Broker,
        config: ConfigSource,
        *,
        notifications_topic: str,
        source: str,
        remembered: int = REMEMBERED,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._broker = broker
        self._config = config
        self._notifications = notifications_topic
        self._source = source
        self._remembered = remembered
        self._clock = clock
        self._queued: OrderedDict[str, core.Queued] = OrderedDict()  # transfer id -> details

    async def handle(self, received: Received) -> Sequence[Publish]:
        event = received.event
        if isinstance(event, TransferQueued):
            self._queued[event.transfer_id] = core.Queued.of(event)
            self._queued.move_to_end(event.transfer_id)
            while len(self._queued) > self._remembered:
                self._queued.popitem(last=False)
            return ()
        if not isinstance(event, TransferSucceeded):
            return ()
        queued = self._queued.get(event.transfer_id)
        decision = core.decide(event, queued, self._config.view, self._clock())
        if isinstance(decision, core.Skip):
            log.debug("no notification", transfer_id=event.transfer_id, why=decision.reason)
            return ()
        if queued is None and received.attempt == 1:
            log.warning(
                "transfer not queued in memory: notifying with what the success says",
                transfer_id=event.transfer_id,
                destination=event.destination,
            )
        try:
            await self._broker.publish(decision)
        except Exception as error:  # retriable: the kit retries; otherwise a failure event
            if is_retriable(error):
                raise
            failed = core.failed(
                decision, error, False, event.envelope, self._clock(), self._source
            )
            log.error("notification failed for good", topic=failed.topic, error=failed.message)
            return (Publish(self._notifications, failed.destination, failed),)
        done = core.published(
            decision, self._broker.address, event.envelope, self._clock(), self._source
        )
        log.info(
            "notification published",
            transfer_id=done.transfer_id,
            topic=done.topic,
            message_id=done.message_id,
        )
        return (Publish(self._notifications, done.destination, done),)


def notifier_stage(
    bootstrap: str,
    broker: Broker,
    config: ConfigSource,
    *,
    publisher: Publisher | None = None,
    transfers_topic: str = TRANSFERS,
    notifications_topic: str = NOTIFICATIONS,
    deadletter_topic: str = DEADLETTER,
    group_id: str = "ecpds-notifier",
    specs: Sequence[TopicSpec] | None = None,
    retry: RetryPolicy | None = None,
    source: str = "notifier",
    remembered: int = REMEMBERED,
    clock: Callable[[], datetime] = utc_now,
) -> Stage[Notifier]:
    """The notifier on ``transfers_topic``, publishing through ``broker``."""
    notifier = Notifier(
        broker,
        config,
        notifications_topic=notifications_topic,
        source=source,
        remembered=remembered,
        clock=clock,
    )
    return Stage(
        notifier,
        bootstrap=bootstrap,
        topics=[transfers_topic],
        group_id=group_id,
        source=source,
        publisher=publisher,
        services=[broker],
        specs=specs,
        retry=retry,
        deadletter_topic=deadletter_topic,
    )


async def serve(settings: Settings, _: argparse.Namespace) -> None:
    """Run the notifier with the live configuration until a signal."""
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        broker = PahoBroker.for_settings(settings, client_id=f"ecpds-notifier-{settings.instance}")
        stage = notifier_stage(
            settings.kafka_bootstrap, broker, live, source=f"notifier/{settings.instance}"
        )
        log.info("notifier running", broker=broker.address)
        await until_signalled(stage)


if __name__ == "__main__":
    main("ecpds-notifier", __doc__.splitlines()[0], serve)
