"""The notifier: ``ecpds.transfers`` (and ``ecpds.datafiles``, for deletions; ``ecpds.products``
for lateness) -> decide -> publish over MQTT -> record the outcome on ``ecpds.notifications``;
a stage of the kit (``bus.stage``: its docstring has the commit rule).

A record ends when it is not a notification case (not a success, a destination that does not
publish, an expired transfer: logged), or when its outcome event is acknowledged by Kafka:
``NotificationPublished`` after the MQTT broker's acknowledgement, ``NotificationFailed`` when
the broker refuses the message for good, ``NotificationRefused`` when the message would break a
WIS2 rule (it is never sent). A retriable failure
(broker unreachable, disconnected, busy) is retried by the kit with a doubling backoff for as
long as it takes, the notification decided again at each attempt (the configuration may change,
the transfer expire): nothing is dropped while the broker is down. A crash, or a lost outcome
event, redelivers and may publish a message twice; it keeps its WIS2 ``id`` (derived from the
transfer id and attempt) so subscribers can deduplicate.

Records are independent, so up to ``concurrency`` are handled at once (each message waits for
its PUBACK; one at a time the broker's round trip and the outcome's Kafka acknowledgement
capped the notifier near 100 messages/s): messages of one destination may reach the broker
slightly out of offset order, which WIS2 does not promise either (``pubtime`` orders them).

A success event carries neither target, size, checksums nor expiry: they are remembered from
the transfer's ``TransferQueued`` (earlier on the same partition, or in the same batch: the
stage's ``fold`` sees it before any record is handled; the last ``remembered`` transfers,
oldest forgotten first). When it is not known (queued before the oldest record the topic
keeps, or forgotten), the message is still published with what is known (``core.decide``).

The WIS2 messages published are remembered too (the last ``remembered``): a later transfer of
the same ``data_id`` is an ``update``, and a ``DataFileExpired`` or first ``DataFileDeleted``
of an announced file is announced as a ``deletion`` where the destination asks. The same
attempt decided again (a redelivery) keeps the relation it had, hence its id.

The memory survives a restart: before it consumes, the notifier reads the transfers topic, the
last ``RECALL`` (2 days) of it to its end (``Recall``, a service of the stage), and remembers
each transfer queued and each file announced, publishing nothing. Records after the committed
offset are read there and again by the stage; an attempt seen twice keeps its relation, so this
changes nothing. Each instance recalls every partition; what other instances announce after it
started is known to it only by the file instance (its own partitions are all it reads live).
"""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from bus.config.source import ConfigSource
from bus.config.view import LiveConfig
from bus.consumer import is_retriable
from bus.events import Event
from bus.events.datafiles import DataFileDeleted, DataFileExpired
from bus.events.products import TransferLate
from bus.events.transfers import TransferQueued, TransferSucceeded
from bus.feeds import partitions_of, replay
from bus.logging import get_logger
from bus.publisher import Publisher
from bus.retry import RetryPolicy
from bus.settings import Settings
from bus.stage import Publish, Received, Stage, main, until_signalled
from bus.topics import DATAFILES, DEADLETTER, NOTIFICATIONS, PRODUCTS, TRANSFERS, TopicSpec
from consumers.notifier import core, subscribers
from consumers.notifier.adapters import PahoBroker
from consumers.notifier.ports import Broker

log = get_logger(__name__)
REMEMBERED: Final = 100_000
# how far back a restart reads the transfers topic (``Recall``): replaying costs ~15 us an
# event, so a week of a busy site's log would hold the first notification back for minutes
RECALL: Final = timedelta(days=2)
CONCURRENCY: Final = 32  # messages in flight to the broker at once (each awaits its PUBACK)
K = TypeVar("K")
V = TypeVar("V")


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
        portal: str,
        remembered: int = REMEMBERED,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._broker = broker
        self._portal = portal
        self._config = config
        self._notifications = notifications_topic
        self._source = source
        self._remembered = remembered
        self._clock = clock
        self._queued: OrderedDict[str, core.Queued] = OrderedDict()  # transfer id -> details
        # data id -> ("<transfer id>/<attempt>" that announced it, whether as an update);
        # data file id -> its messages
        self._data_ids: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._announced: OrderedDict[str, list[core.Notification]] = OrderedDict()

    @property
    def remembered_transfers(self) -> int:
        """How many queued transfers are remembered."""
        return len(self._queued)

    def fold(self, event: Event) -> None:
        """Remember a ``TransferQueued`` before any record of its batch is handled (records
        are handled concurrently: its success may be in the same batch)."""
        if isinstance(event, TransferQueued):
            _remember(self._queued, event.transfer_id, core.Queued.of(event), self._remembered)

    def recall(self, event: Event) -> None:
        """Remember what ``event``, read from the history before this start (``Recall``),
        queued or announced; nothing is published."""
        if isinstance(event, TransferQueued):
            self.fold(event)
        elif isinstance(event, TransferSucceeded):
            decision = self._decide(event, event.envelope.occurred_at)
            if isinstance(decision, core.Notification):
                self._announce(decision, event)

    def _decide(
        self, event: TransferSucceeded, now: datetime
    ) -> core.Notification | core.Skip | core.Refused:
        queued = self._queued.get(event.transfer_id)
        earlier = None
        if queued is not None:
            earlier = self._data_ids.get(f"{event.destination}/{queued.target}")
        if earlier is None:
            republished = False
        elif earlier[0] == f"{event.transfer_id}/{event.attempt}":
            republished = earlier[1]  # this very attempt again: the same message, the same id
        else:
            republished = True
        return core.decide(
            event, queued, self._config.view, now, portal=self._portal, republished=republished
        )

    def _announce(self, decision: core.Notification, event: TransferSucceeded) -> None:
        """Remember ``decision`` (its data id, and the file's announcements for a deletion)."""
        queued = self._queued.get(event.transfer_id)
        if not decision.relation or queued is None:
            return
        attempt = f"{event.transfer_id}/{event.attempt}"
        key = f"{event.destination}/{queued.target}"
        _remember(self._data_ids, key, (attempt, decision.relation == "update"), self._remembered)
        notes = self._announced.pop(decision.data_file_id, [])
        notes = [n for n in notes if n.destination != decision.destination] + [decision]
        _remember(self._announced, decision.data_file_id, notes, self._remembered)

    async def handle(self, received: Received) -> Sequence[Publish]:
        event = received.event
        if isinstance(event, DataFileExpired | DataFileDeleted):
            return await self._deleted(event, event.data_file_id)
        if isinstance(event, TransferLate):
            late = core.lateness(event, self._config.view)
            return () if isinstance(late, core.Skip) else await self._publish(late, event)
        if not isinstance(event, TransferSucceeded):
            return ()
        queued = self._queued.get(event.transfer_id)
        decision = self._decide(event, self._clock())
        if isinstance(decision, core.Skip):
            log.debug("no notification", transfer_id=event.transfer_id, why=decision.reason)
            return ()
        if queued is None and received.attempt == 1:
            log.warning(
                "transfer not queued in memory: notifying with what the success says",
                transfer_id=event.transfer_id,
                destination=event.destination,
            )
        if isinstance(decision, core.Refused):
            return (self._refused(decision, event),)
        outcome = await self._publish(decision, event)
        self._announce(decision, event)
        return outcome

    async def _deleted(self, event: Event, data_file_id: str) -> Sequence[Publish]:
        """The deletions of the file's announcements (once: the first expiry or deletion)."""
        outcomes: list[Publish] = []
        for note in self._announced.pop(data_file_id, []):
            decision = core.deletion(note, self._config.view, self._clock())
            if isinstance(decision, core.Skip):
                continue
            if isinstance(decision, core.Refused):
                outcomes.append(self._refused(decision, event))
                continue
            outcomes.extend(await self._publish(decision, event))
        return outcomes

    def _refused(self, refused: core.Refused, event: Event) -> Publish:
        record = core.refusal(refused, event.envelope, self._clock(), self._source)
        log.warning(
            "notification refused: not sent",
            transfer_id=record.transfer_id,
            destination=record.destination,
            why=record.reason,
        )
        return Publish(self._notifications, record.destination, record)

    async def _publish(self, note: core.Notification, event: Event) -> Sequence[Publish]:
        try:
            await self._broker.publish(note)
        except Exception as error:  # retriable: the kit retries; otherwise a failure event
            if is_retriable(error):
                raise
            failed = core.failed(note, error, False, event.envelope, self._clock(), self._source)
            log.error("notification failed for good", topic=failed.topic, error=failed.message)
            return (Publish(self._notifications, failed.destination, failed),)
        done = core.published(
            note, self._broker.address, event.envelope, self._clock(), self._source
        )
        log.info(
            "notification published",
            transfer_id=done.transfer_id,
            topic=done.topic,
            message_id=done.message_id,
            relation=note.relation,
        )
        return (Publish(self._notifications, done.destination, done),)


class Recall:
    """Before the notifier consumes, its memory is rebuilt from the transfers topic, from the
    first record of the last ``window`` to its end (module docstring): ``Notifier.recall`` of
    each event."""

    def __init__(
        self,
        notifier: Notifier,
        bootstrap: str,
        topic: str,
        specs: Sequence[TopicSpec] | None,
        window: timedelta = RECALL,
    ) -> None:
        self._notifier = notifier
        self._bootstrap = bootstrap
        self._topic = topic
        self._specs = specs
        self._window = window

    async def start(self) -> None:
        started = time.monotonic()
        partitions = await partitions_of(self._bootstrap, [self._topic])
        since = datetime.now(UTC) - self._window
        ends = await replay(
            self._bootstrap, partitions, self._notifier.recall, self._specs, since=since
        )
        log.info(
            "notifier memory recalled",
            read_up_to=sum(ends.values()),
            transfers=self._notifier.remembered_transfers,
            seconds=round(time.monotonic() - started, 2),
        )

    async def stop(self) -> None:
        return None


def _remember(table: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


def notifier_stage(
    bootstrap: str,
    broker: Broker,
    config: ConfigSource,
    *,
    publisher: Publisher | None = None,
    portal: str = "https://127.0.0.1:8443",
    transfers_topic: str = TRANSFERS,
    datafiles_topic: str = DATAFILES,
    products_topic: str | None = None,
    notifications_topic: str = NOTIFICATIONS,
    deadletter_topic: str = DEADLETTER,
    group_id: str = "ecpds-notifier",
    specs: Sequence[TopicSpec] | None = None,
    retry: RetryPolicy | None = None,
    source: str = "notifier",
    remembered: int = REMEMBERED,
    concurrency: int = CONCURRENCY,
    clock: Callable[[], datetime] = utc_now,
) -> Stage[Notifier]:
    """The notifier on ``transfers_topic`` (and ``datafiles_topic``, and ``products_topic`` for
    lateness when given), publishing through ``broker``."""
    notifier = Notifier(
        broker,
        config,
        notifications_topic=notifications_topic,
        source=source,
        portal=portal,
        remembered=remembered,
        clock=clock,
    )
    return Stage(
        notifier,
        bootstrap=bootstrap,
        topics=[transfers_topic, datafiles_topic, *([products_topic] if products_topic else [])],
        group_id=group_id,
        source=source,
        publisher=publisher,
        services=[Recall(notifier, bootstrap, transfers_topic, specs), broker],
        fold=notifier.fold,
        concurrency=concurrency,
        specs=specs,
        retry=retry,
        deadletter_topic=deadletter_topic,
    )


def portal_base(settings: Settings) -> str:
    """The Data Portal's HTTPS base URL, the default download base of WIS2 links."""
    return f"https://{settings.portal_address}:{settings.portal_https_port}"


async def serve(settings: Settings, _: argparse.Namespace) -> None:
    """Run the notifier with the live configuration until a signal."""
    async with LiveConfig(settings.kafka_bootstrap, create_topic=False) as live:
        credentials = None
        acl = subscribers.directory(settings) / "acl"
        if settings.mqtt_broker in ("mosquitto", "embedded") and acl.exists():
            # subscriber auth is on (subscribers.write made the files): keep them in step with
            # the configuration, and sign in as the notifier's own client
            key = subscribers.broker_key(settings)
            follower = subscribers.Follower(
                acl.parent, key, anonymous_read=subscribers.anonymous_in(acl.read_text())
            )
            follower(await live.ready(), ())
            live.add_listener(follower)
            credentials = (subscribers.NOTIFIER, subscribers.derive(key, subscribers.NOTIFIER))
        broker = PahoBroker.for_settings(
            settings, client_id=f"ecpds-notifier-{settings.instance}", credentials=credentials
        )
        stage = notifier_stage(
            settings.kafka_bootstrap,
            broker,
            live,
            portal=portal_base(settings),
            products_topic=PRODUCTS,
            source=f"notifier/{settings.instance}",
        )
        log.info("notifier running", broker=broker.address)
        await until_signalled(stage)


if __name__ == "__main__":
    main("ecpds-notifier", __doc__.splitlines()[0], serve)
