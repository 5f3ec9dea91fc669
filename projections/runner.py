"""``python -m projections.runner``: the projector component that ``ecpds up`` starts.

It applies the read-model migrations (safe when two start at once), then projects every ecpds
topic (``ecpds.orders.*`` by pattern, so a new transfer group's topic is picked up) into the
read-model schema until SIGTERM, SIGINT or SIGHUP, on which it finishes and commits the batch in
hand. Undecodable messages go to ``ecpds.deadletter``. See ``projections.projector`` for the
exactly-once rule.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvloop

from bus.consumer import stop_on_signals
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.settings import Settings
from projections.db import DEFAULT_SCHEMA
from projections.migrate import migrate
from projections.projector import DEFAULT_NAME, Projector, topic_pattern

log = get_logger(__name__)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="projections.runner", description=__doc__)
    parser.add_argument("--schema", default=DEFAULT_SCHEMA, help="read-model schema")
    parser.add_argument("--name", default=DEFAULT_NAME, help="projection and consumer group name")
    parser.add_argument("--pattern", default=None, help="topic regex (default: every ecpds topic)")
    return parser.parse_args(argv)


async def run(settings: Settings, schema: str, name: str, pattern: str) -> None:
    """Migrate, then project until a stop signal."""
    applied = await migrate(settings.pg_dsn, schema)
    log.info("read models migrated", schema=schema, applied=applied)
    publisher = Publisher(settings.kafka_bootstrap, client_id=f"{name}-deadletter")
    await publisher.start()
    projector = Projector(
        dsn=settings.pg_dsn,
        bootstrap=settings.kafka_bootstrap,
        schema=schema,
        name=name,
        pattern=pattern,
        publisher=publisher,
    )
    stop_on_signals(projector.stop)
    log.info("projecting", schema=schema, pattern=pattern)
    try:
        await projector.run()
    finally:
        await publisher.stop()
    log.info("projector stopped", events=projector.events, batches=projector.batches)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    settings = Settings.from_env()
    configure(settings)
    # uvloop: the projector's time goes to the loop (Kafka fetches, psycopg's waits)
    uvloop.run(run(settings, args.schema, args.name, args.pattern or topic_pattern()))


if __name__ == "__main__":
    main()
