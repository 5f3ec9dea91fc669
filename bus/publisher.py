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
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber, UnknownProducerId

from bus import codec
from bus.errors import PermanentError, TransientError
from bus.topics import TopicSpec, spec_for


@dataclass(frozen=True)
class Published:
    """Where a published event landed."""

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
        self._options = {
            "bootstrap_servers": bootstrap,
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
        spec = spec_for(topic, self._specs)
        name = codec.event_type(event)
        if spec is not None and not spec.allows(name):
            raise PermanentError(f"{name} is not allowed on topic {topic}")

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

    async def publish_many(self, items: Iterable[tuple[str, str, Any]]) -> Sequence[Published]:
        """Send several events at once (batched by the producer); all acknowledged on return."""
        futures = []
        for topic, key, event in items:
            self._check(topic, event)
            futures.append(
                await self._producer.send(
                    topic, codec.encode(event), key=key.encode(), headers=codec.headers(event)
                )
            )
        try:
            metas = await asyncio.gather(*futures)
        except KafkaError as error:
            raise await self._renew(error) from error
        return [Published(m.topic, m.partition, m.offset) for m in metas]

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Published:
        """Send bytes as they are (dead letters carry the original message)."""
        try:
            meta = await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        except KafkaError as error:
            raise await self._renew(error) from error
        return Published(meta.topic, meta.partition, meta.offset)
