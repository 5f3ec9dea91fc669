"""Faust application factory for ecpds stream processors (scheduler, projections, notifier).

The Avro single-object codec is registered as faust codec ``ecpds-avro`` so agents receive
the same frozen event dataclasses every other consumer gets. Settings are tuned for a quick
local start (DESIGN.md §8): no initial rebalance delay, short session and rebalance timeouts,
no web server, tables in memory with changelog recovery, table state under ``var/faust``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import faust
import uvloop
from faust.serializers import codecs
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from bus import codec
from bus.kafka_access import SASL_MECHANISM, kafka_options
from bus.settings import Settings

CODEC_NAME = "ecpds-avro"


class AvroEventCodec(codecs.Codec):
    """faust codec: frozen event dataclass <-> Avro single-object bytes."""

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj
        return codec.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return codec.decode(s)


_registered = False

# How long a broker may hold a fetch of the worker consumer. faust fixes it at 1,500 ms, and
# aiokafka sends one fetch per broker at a time, leaving out partitions whose records were not
# consumed yet: a record arriving on such a partition waits for the long poll on the others
# to end. For the scheduler that stalled the order loop up to 1.5 s (p99 1.48 s measured
# between an outcome and the next order); 50 ms bounds it, for ~20 empty fetches a second.
FETCH_MAX_WAIT_MS = 50
_patched = False


def _bound_fetch_wait() -> None:
    """Make faust's worker consumers use ``FETCH_MAX_WAIT_MS`` (once per process). faust has
    no setting for it: the aiokafka consumer it creates is adjusted before it starts (both
    packages are pinned; ``tests/bus/test_faust.py`` checks the value reaches the fetcher)."""
    global _patched
    if _patched:
        return
    create = AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
    _patched = True


def register_codec() -> None:
    """Make ``ecpds-avro`` known to faust (once per process)."""
    global _registered
    if not _registered:
        codecs.register(CODEC_NAME, AvroEventCodec())
        _registered = True


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a faust worker's ``main`` on uvloop, its consumer thread's loop too.

    faust's aiokafka consumer lives in a thread of its own, with a loop made by
    ``asyncio.new_event_loop``; ``uvloop.run`` alone would leave that loop plain asyncio, so the
    policy is set instead. Records cross from that thread to the main loop one wake-up each: on
    uvloop the scheduler's CPU per delivered file dropped ~15% in the end-to-end benchmark.
    """
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main)


def credentials(settings: Settings) -> faust.SASLCredentials | None:
    """faust's ``broker_credentials``: ``bus.kafka_access``'s options in faust's form (None
    over plaintext), so faust's consumers and producers reach the broker as every client does."""
    options = kafka_options(settings)
    if not options:
        return None
    return faust.SASLCredentials(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        mechanism=SASL_MECHANISM,
        ssl_context=options["ssl_context"],
    )


def make_app(app_id: str, settings: Settings, **overrides: Any) -> faust.App:
    """A faust app bound to the configured Kafka, with the Avro codec and quick-start settings."""
    register_codec()
    _bound_fetch_wait()
    datadir = settings.var_dir / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        # every broker of the list: a cluster whose first node is down still bootstraps
        "broker": [f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
        "value_serializer": CODEC_NAME,
        "key_serializer": "raw",
        "store": "memory://",
        "datadir": str(datadir),
        "tabledir": str(datadir / "tables"),
        "web_enabled": False,
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.kafka_replication,  # its own topics too
        # Takeover after a worker dies (SIGKILL, a lost machine) waits for the session timeout;
        # 6 s is the least a broker accepts by default (group.min.session.timeout.ms). A false
        # takeover needs 6 s without one heartbeat: they are sent by the consumer's own thread,
        # which the GIL lets run every 5 ms however busy the loop is, and the scheduler keeps
        # its long-lived entries out of the cyclic collector (gc.freeze), so only a process
        # starved of CPU that long (2 cores shared with the broker) misses them; the price of
        # one is a rebalance, which snapshots make cost seconds. After a clean stop (LeaveGroup)
        # the others learn of the rebalance at their next heartbeat: every 0.5 s.
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 0.5,
        "broker_rebalance_timeout": 20.0,
        "broker_commit_every": 100,
        "broker_commit_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        "stream_wait_empty": False,
        "producer_acks": -1,
        "autodiscover": False,
        "table_cleanup_interval": 60.0,
    }
    broker_credentials = credentials(settings)
    if broker_credentials is not None:  # TLS and SCRAM, as every other client of ours
        options["broker_credentials"] = broker_credentials
    options.update(overrides)
    return faust.App(app_id, **options)
