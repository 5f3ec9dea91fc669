"""The notifier runner: consume ``ecpds.transfers`` -> decide -> publish over MQTT -> record
the outcome on ``ecpds.notifications`` -> commit.

Offset rule: an offset of ``ecpds.transfers`` is committed only once the record it covers has
ended durably: not a notification case (not a success, a destination that does not publish,
an expired transfer: logged), or its outcome event (``NotificationPublished`` after the
broker's acknowledgement, ``NotificationFailed`` when the broker refuses the message for good)
acknowledged by Kafka. Records of a partition are handled in order; a partition is committed
up to its first record that has not ended, which is read again after a pause. A retriable
failure (broker unreachable, disconnected, busy) is retried with a doubling backoff for as
long as it takes: nothing is dropped while the broker is down. A crash, or a lost outcome
event, therefore redelivers and may publish a message twice; it keeps its WIS2 ``id`` (derived
from the transfer id and attempt) so subscribers can deduplicate.

A success event carries neither target, size, checksums nor expiry: they are remembered from
the transfer's ``TransferQueued`` (earlier on the same partition; the last ``remembered``
transfers, oldest forgotten first). When it is not known (a restart past it), the message is
still published with what is known (see ``core.decide``).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from aiokafka import ConsumerRecord, TopicPartition

from bus import codec
from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import commit_ended, is_retriable, sleep_unless, stage_consumer, stop_on_signals
from bus.errors import DecodeError, EcpdsError
from bus.events import Event
from bus.events.notifications import NotificationFailed, NotificationPublished
from bus.events.transfers import TransferQueued, TransferSucceeded
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.settings import Settings
from bus.topics import NOTIFICATIONS, TRANSFERS, TopicSpec
from consumers.notifier import core
from consumers.notifier.adapters import PahoBroker
from consumers.notifier.ports import Broker

log = get_logger(__name__)
Record: TypeAlias = ConsumerRecord[Any, Any]
REMEMBERED: Final = 100_000


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (1-based) of a retriable failure: doubling, capped."""

    first: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.first * 2.0 ** (attempt - 1))


def utc_now() -> datetime:
    return datetime.now(UTC)


class NotifierRunner:
    """Publishes an MQTT notification for every delivered file (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        broker: Broker,
        config: ConfigSource,
        *,
        publisher: Publisher | None = None,
        transfers_topic: str = TRANSFERS,
        notifications_topic: str = NOTIFICATIONS,
        group_id: str = "ecpds-notifier",
        specs: Sequence[TopicSpec] | None = None,
        backoff: Backoff | None = None,
        source: str = "notifier",
        max_records: int = 100,
        remembered: int = REMEMBERED,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._broker = broker
        self._config = config
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(bootstrap, client_id=source, specs=specs)
        self._notifications = notifications_topic
        self._backoff = backoff or Backoff()
        self._source = source
        self._max_records = max_records
        self._remembered = remembered
        self._clock = clock
        self._stopping = asyncio.Event()
        self._queued: OrderedDict[str, core.Queued] = OrderedDict()  # transfer id -> details
        self._consumer = stage_consumer(
            transfers_topic,
            bootstrap=bootstrap,
            group_id=group_id,
        )
        self.published = 0
        self.failed = 0
        self.skipped = 0

    def stop(self) -> None:
        """Finish the record in hand (abandoning a pending retry, uncommitted), then return."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume and notify until ``stop`` is called."""
        await self._publisher.start()
        await self._broker.start()
        await self._consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(
                    timeout_ms=200, max_records=self._max_records
                )
                if batches and not await self._process(batches):
                    await sleep_unless(self._stopping, 0.5)
        finally:
            await self._consumer.stop()
            await self._broker.stop()
            if self._own_publisher:
                await self._publisher.stop()

    async def _process(self, batches: dict[TopicPartition, list[Record]]) -> bool:
        """Handle a batch in order per partition; commit what ended. True if all ended."""
        order: list[tuple[TopicPartition, Record]] = []
        ended: list[bool] = []
        for tp, records in batches.items():
            ok = True
            for record in records:
                ok = ok and await self._handle(record)  # nothing after a failure is handled
                order.append((tp, record))
                ended.append(ok)
        return await commit_ended(self._consumer, order, ended)

    async def _handle(self, record: Record) -> bool:
        """Whether the record has ended durably."""
        try:
            event = codec.decode_with_type(record.value, codec.type_header(record.headers))
        except DecodeError:
            return True  # not this stage's input; the topic's owners dead-letter it
        if isinstance(event, TransferQueued):
            self._remember(event)
            return True
        if isinstance(event, TransferSucceeded):
            return await self._notify(event)
        return True

    def _remember(self, event: TransferQueued) -> None:
        self._queued[event.transfer_id] = core.Queued.of(event)
        self._queued.move_to_end(event.transfer_id)
        while len(self._queued) > self._remembered:
            self._queued.popitem(last=False)

    async def _notify(self, done: TransferSucceeded) -> bool:
        queued = self._queued.get(done.transfer_id)
        attempt = 0
        while True:
            # decided again on every attempt: the configuration may change, the transfer expire
            decision = core.decide(done, queued, self._config.view, self._clock())
            if isinstance(decision, core.Skip):
                self.skipped += 1
                log.debug("no notification", transfer_id=done.transfer_id, why=decision.reason)
                return True
            if queued is None and attempt == 0:
                log.warning(
                    "transfer not queued in memory: notifying with what the success says",
                    transfer_id=done.transfer_id,
                    destination=done.destination,
                )
            outcome: Event
            try:
                await self._broker.publish(decision)
                outcome = core.published(
                    decision, self._broker.address, done.envelope, self._clock(), self._source
                )
            except Exception as error:  # every failure ends as a retry or a failed record
                retriable = is_retriable(error)
                log.warning(
                    "notification not published",
                    transfer_id=done.transfer_id,
                    topic=decision.topic,
                    attempt=attempt + 1,
                    retriable=retriable,
                    error_class=type(error).__name__,
                    error=str(error),
                )
                if retriable:
                    attempt += 1
                    if await sleep_unless(self._stopping, self._backoff.delay(attempt)):
                        return False  # stopping: uncommitted, so notified after the restart
                    continue
                outcome = core.failed(
                    decision, error, False, done.envelope, self._clock(), self._source
                )
            return await self._record(outcome)

    async def _record(self, outcome: Event) -> bool:
        assert isinstance(outcome, (NotificationPublished, NotificationFailed))
        try:
            await self._publisher.publish(self._notifications, outcome.destination, outcome)
        except EcpdsError as error:
            log.warning("notification outcome not recorded", error=str(error))
            return False
        if isinstance(outcome, NotificationPublished):
            self.published += 1
            log.info(
                "notification published",
                transfer_id=outcome.transfer_id,
                topic=outcome.topic,
                message_id=outcome.message_id,
            )
        else:
            self.failed += 1
            log.error("notification failed for good", topic=outcome.topic, error=outcome.message)
        return True


async def serve(settings: Settings) -> None:
    """Run the notifier with the live configuration until SIGTERM/SIGINT."""
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        broker = PahoBroker(
            settings.mqtt_host, settings.mqtt_port, client_id=f"ecpds-notifier-{settings.instance}"
        )
        runner = NotifierRunner(
            settings.kafka_bootstrap, broker, live, source=f"notifier/{settings.instance}"
        )
        stop_on_signals(runner.stop)
        log.info("notifier running", broker=broker.address)
        await runner.run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ecpds-notifier", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    settings = Settings.from_env()
    configure(settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
