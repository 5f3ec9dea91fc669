"""Publishing events to Kafka.

One idempotent producer per process (``acks=all``, ``enable_idempotence``), keyed so that all
events of one key keep their order on one partition. ``publish`` returns only once the broker
has acknowledged the write: a caller that goes on to commit its input offset after ``publish``
has returned never loses the event. ``stop`` flushes whatever is still buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber, UnknownProducerId

from bus import codec
from bus.errors import PermanentError, TransientError
from bus.kafka_access import kafka_options
from bus.topics import TopicSpec, spec_for

try:  # Kafka's key hash compiled (native/avro); aiokafka's pure-Python one costs ~7 us a key
    from ecpds_avro import murmur2
except ImportError:  # pragma: no cover - without the compiled module
    from aiokafka.partitioner import murmur2  # type: ignore[no-redef]

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


class Published(NamedTuple):
    """Where a published event landed (a tuple: one is made per event of a bulk publish)."""

    topic: str
    partition: int
    offset: int


class Publisher:
    """Sends encoded events; checks each one is allowed on its topic first."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "ecpds",
        linger_ms: int = 2,
        specs: Sequence[TopicSpec] | None = None,
    ) -> None:
        self._specs = specs
        self._allowed: set[tuple[str, type]] = set()  # (topic, event class) already checked
        self._options = {
            "bootstrap_servers": bootstrap,
            **kafka_options(),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "max_batch_size": 1024 * 1024,
            "max_request_size": 10 * 1024 * 1024,
            "request_timeout_ms": 30_000,
        }
        self._producer = AIOKafkaProducer(**self._options)
        self._started = False

    async def _renew(self, error: KafkaError) -> TransientError:
        """Replace a producer whose idempotence state the broker no longer accepts.

        After a broker restart an idempotent producer can be refused for good
        (out-of-order sequence, unknown producer id). A fresh producer gets a new id; the
        caller's retry may then write an event twice, which every consumer tolerates.
        """
        if isinstance(error, (OutOfOrderSequenceNumber, UnknownProducerId)):
            old, self._producer = self._producer, AIOKafkaProducer(**self._options)
            with contextlib.suppress(Exception):
                await old.stop()
            self._started = False
            await self.start()
        return TransientError(f"publishing failed: {error}")

    async def start(self) -> None:
        if not self._started:
            try:
                await self._producer.start()
            except KafkaError as error:
                raise TransientError(f"cannot reach Kafka: {error}") from error
            self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._producer.flush()
            await self._producer.stop()
            self._started = False

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check(self, topic: str, event: Any) -> None:
        kind = (topic, type(event))
        if kind in self._allowed:
            return  # checked once per topic and event class
        spec = spec_for(topic, self._specs)
        name = codec.event_type(event)
        if spec is not None and not spec.allows(name):
            raise PermanentError(f"{name} is not allowed on topic {topic}")
        self._allowed.add(kind)

    async def publish(self, topic: str, key: str, event: Any) -> Published:
        """Send one event and wait for the broker's acknowledgement."""
        self._check(topic, event)
        try:
            meta = await self._producer.send_and_wait(
                topic, codec.encode(event), key=key.encode(), headers=codec.headers(event)
            )
        except KafkaError as error:
            raise await self._renew(error) from error
        return Published(meta.topic, meta.partition, meta.offset)

    async def publish_few(self, items: Sequence[tuple[str, str, Any]]) -> Sequence[Published]:
        """Send a few events and wait for all: each joins the batch its partition is filling
        (in the order given), so events that concurrent callers send meanwhile share a request
        with them (``publish_many`` makes batches of its own, for many events)."""
        futures = []
        try:
            for topic, key, event in items:
                self._check(topic, event)
                futures.append(
                    await self._producer.send(
                        topic, codec.encode(event), key=key.encode(), headers=codec.headers(event)
                    )
                )
            metas = [await future for future in futures]
        except KafkaError as error:
            raise await self._renew(error) from error
        return [Published(m.topic, m.partition, m.offset) for m in metas]

    async def publish_many(self, items: Iterable[tuple[str, str, Any]]) -> Sequence[Published]:
        """Send several events at once; all are acknowledged when this returns.

        Events are grouped into one batch per partition (partition chosen by the same murmur2
        key hash Kafka's own clients use, so keys land where any producer would put them):
        this skips the per-message bookkeeping of ``send`` and is several times faster.
        """
        groups: dict[tuple[str, int], list[Message]] = {}
        counts: dict[str, int] = {}
        order: list[tuple[str, int, int]] = []
        for topic, key, event in items:
            self._check(topic, event)
            if topic not in counts:
                counts[topic] = len(await self._producer.partitions_for(topic))
            raw_key = key.encode()
            partition = (murmur2(raw_key) & 0x7FFFFFFF) % counts[topic]  # Kafka's default
            group = groups.setdefault((topic, partition), [])
            order.append((topic, partition, len(group)))
            group.append((raw_key, codec.encode(event), codec.headers(event)))
        offsets: dict[tuple[str, int], list[int]] = {}
        try:
            for (topic, partition), messages in groups.items():
                offsets[(topic, partition)] = await self._send_group(topic, partition, messages)
        except KafkaError as error:
            raise await self._renew(error) from error
        return [Published(t, p, offsets[(t, p)][i]) for t, p, i in order]

    async def _send_group(
        self,
        topic: str,
        partition: int,
        messages: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
    ) -> list[int]:
        """Send messages to one partition in as few batches as fit; their offsets, in order."""
        sent: list[tuple[asyncio.Future[Any], int]] = []
        batch, count = self._producer.create_batch(), 0
        for key, value, headers in messages:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                sent.append(
                    (await self._producer.send_batch(batch, topic, partition=partition), count)
                )
                batch, count = self._producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    raise PermanentError(f"a {len(value)}-byte event does not fit in one batch")
            count += 1
        sent.append((await self._producer.send_batch(batch, topic, partition=partition), count))
        offsets: list[int] = []
        for future, size in sent:
            meta = await future
            offsets.extend(range(meta.offset, meta.offset + size))
        return offsets

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Published:
        """Send bytes as they are (dead letters carry the original message)."""
        try:
            meta = await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        except KafkaError as error:
            raise await self._renew(error) from error
        return Published(meta.topic, meta.partition, meta.offset)
