"""The started ingest service, wired the one way every producer that registers files needs it.

The API, the Data Portal and acquisition all register data files through ``IngestService``;
each needs the same five parts started in the same order: the live configuration (ready before
anything is decided), a publisher, the local object store, the ingest index rebuilt from the
log (``LogFollower``, ready before the first registration), and the service over them. This is
their one home: ``start_ingest`` pushes each part's stop onto the caller's exit stack, so the
parts stop in reverse order when the caller's stack unwinds, after whatever the caller started
on top of them.

A caller that folds more than the index (acquisition keeps its own state from the same
records) passes ``also`` and its extra topics; the service's own events are then read back
and folded like any other, since ``also`` must see them too. Otherwise the follower skips the
events the service applied itself (``LogFollower.applied``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bus.config.view import LiveConfig
from bus.events import Event
from bus.publisher import Publisher
from bus.settings import Settings
from bus.topics import TopicSpec
from producers.ingest.follower import LogFollower
from producers.ingest.index import IngestIndex
from producers.ingest.service import IngestService, IngestTopics
from store.local import LocalStore


@dataclass(frozen=True)
class Ingest:
    """The started parts; ``service`` is the one callers register through."""

    config: LiveConfig
    publisher: Publisher
    store: LocalStore
    index: IngestIndex
    service: IngestService


async def start_ingest(
    stack: contextlib.AsyncExitStack[bool | None],
    settings: Settings,
    *,
    source: str,
    config_topic: str,
    topics: IngestTopics,
    store_root: Path | None = None,
    durable: bool = True,
    max_puts: int = 16,
    specs: Sequence[TopicSpec] | None = None,
    publish_timeout: float | None = None,
    also: Callable[[Event], None] | None = None,
    also_topics: Sequence[str] = (),
) -> Ingest:
    """Start the ingest parts in order, each ready before the next; their stops go on ``stack``.

    ``specs`` lets the publisher check events against the topics' allowed types; ``also``
    folds every event of ``also_topics`` and the ingest topics after the index does."""
    live = LiveConfig(settings.kafka_bootstrap, config_topic, create_topic=False)
    await live.start()
    stack.push_async_callback(live.stop)
    await live.ready()
    publisher = Publisher(settings.kafka_bootstrap, client_id=source, linger_ms=0, specs=specs)
    await publisher.start()
    stack.push_async_callback(publisher.stop)
    store = LocalStore(store_root or settings.store_root, durable=durable, max_puts=max_puts)
    stack.push_async_callback(store.close)
    index = IngestIndex()
    apply: Callable[[Event], None] = index.apply
    if also is not None:
        fold = also

        def apply(event: Event) -> None:
            index.apply(event)
            fold(event)

    follower = LogFollower(
        settings.kafka_bootstrap, (*also_topics, topics.datafiles, topics.transfers), apply
    )
    await follower.start()
    stack.push_async_callback(follower.stop)
    await follower.ready()
    service = IngestService(
        publisher=publisher,
        store=store,
        config=live,
        index=index,
        topics=topics,
        source=source,
        applied=follower.applied if also is None else None,
        publish_timeout=publish_timeout,
    )
    stack.push_async_callback(service.close)
    return Ingest(live, publisher, store, index, service)
