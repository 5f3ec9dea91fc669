"""Everything the ingest API needs, wired and started in order, stopped in reverse.

Start order (each step waits for the previous one): topics exist -> live configuration read to
its end -> publisher -> ingest index read from ``ecpds.datafiles`` + ``ecpds.transfers`` to
their end -> ``recover`` (close registrations a crash left open) -> token file (created with
one admin token on first start; the token is logged once). Only then are requests served, so
a duplicate is refused even right after a restart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bus.config.view import config_spec
from bus.events import Event
from bus.logging import get_logger
from bus.settings import Settings
from bus.signin import SignInGate
from bus.tokens import tokens_path as bus_tokens_path
from bus.topics import CONFIG, PORTAL, TopicSpec, apply_topics, catalogue
from producers.api.auth import Authenticator, TokenBook
from producers.api.ingest import ApiState
from producers.api.openecpds import ConfigWriter
from producers.ingest.core import left_open_by
from producers.ingest.service import IngestTopics
from producers.ingest.stack import start_ingest
from projections.products import ProductReads, pool

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Where the ingest API reads and writes (defaults: the settings' topics, store, files)."""

    config_topic: str = CONFIG
    topics: IngestTopics = field(default_factory=IngestTopics)
    store_root: Path | None = None
    tokens_file: Path | None = None
    durable: bool = True
    portal_topic: str = PORTAL  # where sign-in failures and bans are published
    publish_timeout: float = 1.0  # seconds a put waits for the broker before answering 503
    schema: str | None = None  # the read models' schema (monitoring summary); None: not read


def tokens_path(settings: Settings) -> Path:
    """The default token file: ``var/secrets/api-tokens``."""
    return bus_tokens_path(settings.var_dir / "secrets")


def _specs(settings: Settings, options: RuntimeOptions) -> list[TopicSpec]:
    declared = {s.name: s for s in catalogue(settings.topic_partitions)}
    specs = [config_spec(options.config_topic)]
    for name, default in (
        (options.topics.datafiles, declared["ecpds.datafiles"]),
        (options.topics.transfers, declared["ecpds.transfers"]),
        (options.portal_topic, declared[PORTAL]),
    ):
        specs.append(
            declared.get(name)
            or TopicSpec(
                name,
                default.key,
                default.partitions,
                default.cleanup,
                default.retention_ms,
                default.namespaces,
                default.description,
            )
        )
    return specs


@contextlib.asynccontextmanager
async def running(
    settings: Settings, options: RuntimeOptions | None = None
) -> AsyncIterator[ApiState]:
    """The started ingest stack as an ``ApiState``; everything is stopped on exit."""
    options = options or RuntimeOptions()
    await apply_topics(
        settings.kafka_bootstrap, _specs(settings, options), replication=settings.kafka_replication
    )
    source = f"ingest/{settings.instance}"
    async with contextlib.AsyncExitStack() as stack:
        ingest = await start_ingest(
            stack,
            settings,
            source=source,
            config_topic=options.config_topic,
            topics=options.topics,
            store_root=options.store_root,
            durable=options.durable,
            publish_timeout=options.publish_timeout,
        )
        live, publisher, service = ingest.config, ingest.publisher, ingest.service
        # its own registrations a crash left open (see ``left_open_by``)
        recovery = await service.recover(
            owned=lambda r: left_open_by(r, source, settings.instance_named)
        )
        log.info(
            "ingest index ready",
            files=len(ingest.index.files),
            transfers=len(ingest.index.transfers),
            recovered_failed=len(recovery.failed),
            recovered_queued=len(recovery.requeued),
        )
        book, created = TokenBook.open(options.tokens_file or tokens_path(settings))
        if created is not None:
            # the clear token goes to an operator-only file (like the operator key), never to a log
            token_file = book.path.parent / "admin.token"
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(created + "\n")
            log.warning(
                "created the API token file with an admin token",
                tokens=str(book.path),
                admin_token_file=str(token_file),
            )

        async def publish(key: str, event: Event) -> None:
            await publisher.publish(options.portal_topic, key, event)

        gate = SignInGate("api", publish)
        stack.push_async_callback(gate.close)
        writer = ConfigWriter(live, publisher, options.config_topic, source, settings.key_file)
        products = None
        if options.schema is not None:
            # opened without waiting: a database down answers the summary 503, nothing else
            connections = pool(settings.pg_dsn, options.schema, size=2)
            await connections.open(wait=False)
            stack.push_async_callback(connections.close)
            products = ProductReads(connections)
        yield ApiState(
            service=service,
            config=live,
            auth=Authenticator(book, gate, settings.key_file),
            max_upload=settings.max_upload,
            config_writer=writer,
            products=products,
        )
