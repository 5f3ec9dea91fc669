"""``python -m projections.monitor.runner``: the monitor web server that ``ecpds up`` starts.

It serves the monitor on ECPDS_MONITOR_ADDRESS:ECPDS_MONITOR_PORT (127.0.0.1:8080 by default)
with uvicorn until SIGTERM or SIGINT, over HTTPS when a certificate is configured (ECPDS_TLS_CERT
and _KEY, or ECPDS_TLS=self-signed; see ``bus.tls``), and then its session cookie is ``Secure``;
without uvicorn's ``server`` banner (``bus.web.UVICORN_OPTIONS``).
On first start it creates the web-users file with an ``admin`` user whose password is written
to ``var/secrets/admin.password`` only: the log names the file, never the password.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections.abc import Sequence

import uvicorn

from bus.logging import configure, get_logger
from bus.settings import Settings
from bus.tls import serving_options
from bus.web import UVICORN_OPTIONS
from projections.db import DEFAULT_SCHEMA
from projections.migrate import migrate
from projections.monitor.app import MonitorConfig, create_app
from projections.monitor.auth import ADMIN_PASSWORD, WebUsers

log = get_logger(__name__)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="projections.monitor.runner", description=__doc__)
    parser.add_argument("--schema", default=DEFAULT_SCHEMA, help="read-model schema")
    parser.add_argument("--port", type=int, default=None, help="default: ECPDS_MONITOR_PORT")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    settings = Settings.from_env()
    configure(settings)
    config = MonitorConfig.from_settings(settings, args.schema)
    # served over TLS, the session cookie is never sent in clear
    config = dataclasses.replace(config, https_only=settings.tls_cert is not None)
    first = not (config.secrets_dir / "web-users").exists()
    WebUsers.open(config.secrets_dir)
    if first:
        log.info("monitor admin created", password_file=str(config.secrets_dir / ADMIN_PASSWORD))
    # the read models may not exist yet when the monitor starts before the projector:
    # migrations are idempotent and serialised by an advisory lock, so apply them here too
    asyncio.run(migrate(settings.pg_dsn, args.schema))
    port = args.port or settings.monitor_port
    options = serving_options(settings)
    log.info("monitor listening", url=f"{settings.web_url(port)}/")
    uvicorn.run(
        create_app(config),
        **options,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=3,  # live event streams never end by themselves
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
