"""Runs the ingest API: ``python -m producers.api.runner [--port N] ...``.

Listens on ECPDS_MONITOR_ADDRESS (127.0.0.1 by default), port ``ECPDS_MONITOR_PORT + 1`` (8081
by default) until the monitor serves these routes itself; over HTTPS when the monitor is (see
``bus.tls``). Requests are served only once the stack is ready (see
``producers.api.runtime``). SIGINT, SIGTERM and SIGHUP stop it gracefully: uvicorn stops
accepting, finishes the requests in flight (each ends stored-and-queued, refused or failed),
then the index follower, the publisher (flushed) and the store are closed.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

import uvicorn
import uvloop

from bus.consumer import stop_on_signals
from bus.logging import configure, get_logger
from bus.settings import Settings
from bus.tls import serving_options
from bus.topics import CONFIG, DATAFILES, TRANSFERS
from bus.web import UVICORN_OPTIONS
from producers.api.app import create_app
from producers.api.runtime import RuntimeOptions, running
from producers.ingest.service import IngestTopics
from projections.products import DEFAULT_SCHEMA

log = get_logger(__name__)


def api_port(settings: Settings) -> int:
    """The ingest API's port: the monitor's plus one."""
    return settings.monitor_port + 1


class _Server(uvicorn.Server):
    """uvicorn's server, told to stop by our own signal handlers.

    uvicorn re-raises a captured SIGTERM once it has stopped serving, which would kill the
    process before the ingest stack (index follower, publisher, store) is closed in order.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        self.should_exit = True


async def serve(settings: Settings, port: int, options: RuntimeOptions) -> None:
    async with running(settings, options) as state:
        config = uvicorn.Config(
            create_app(state),
            **serving_options(settings),
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=30,
            lifespan="off",
            **UVICORN_OPTIONS,  # no ``server`` banner
        )
        server = _Server(config)
        stop_on_signals(server.stop)
        log.info("ingest API listening", url=f"{settings.web_url(port)}/api/v1/datafiles")
        await server.serve()
    log.info("ingest API stopped")


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=api_port(settings))
    parser.add_argument("--config-topic", default=CONFIG)
    parser.add_argument("--datafiles-topic", default=DATAFILES)
    parser.add_argument("--transfers-topic", default=TRANSFERS)
    parser.add_argument("--store-root", type=Path, default=None)
    parser.add_argument("--tokens-file", type=Path, default=None)
    parser.add_argument("--schema", default=DEFAULT_SCHEMA, help="the read models' schema")
    args = parser.parse_args(argv)
    configure(settings)
    options = RuntimeOptions(
        config_topic=args.config_topic,
        topics=IngestTopics(args.datafiles_topic, args.transfers_topic),
        store_root=args.store_root,
        tokens_file=args.tokens_file,
        schema=args.schema,
    )
    uvloop.run(serve(settings, args.port, options))


if __name__ == "__main__":
    main()
