"""Runs the Data Portal: ``python -m producers.portal.runner [--sftp-port N] ...``.

Its doors listen on ECPDS_PORTAL_ADDRESS (127.0.0.1 by default): SFTP/SCP on
ECPDS_PORTAL_SFTP_PORT (2222), FTP (explicit TLS) on ECPDS_PORTAL_FTP_PORT (2121) and implicit
FTPS on ECPDS_PORTAL_FTPS_PORT (2990), HTTPS on ECPDS_PORTAL_HTTPS_PORT (8443) and the S3 API
on ECPDS_PORTAL_S3_PORT (9443), all with the certificate of ECPDS_TLS_CERT/_KEY, else one
created on first run under ``<var>/secrets/portal/tls``.
Start order (each step waits for the previous one): topics exist
-> live configuration read to its end -> publisher -> ingest index read from
``ecpds.datafiles`` + ``ecpds.transfers`` to its end -> ``recover`` (close the portal's own
registrations a crash left open: uploads cut by the crash) -> read-model pool -> doors. Only
then are clients served. SIGINT, SIGTERM and SIGHUP stop it: the doors stop accepting and drop
their connections (uploads in flight are cut, never registered), then the events still in the
background are published, and the rest is closed in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bus.config.view import config_spec
from bus.consumer import stop_on_signals
from bus.events import Event
from bus.logging import configure, get_logger
from bus.publisher import Publisher
from bus.settings import Settings
from bus.signin import SignInGate
from bus.tls import ensure_self_signed
from bus.topics import CONFIG, DATAFILES, PORTAL, TRANSFERS, TopicSpec, apply_topics, catalogue
from bus.web import UVICORN_OPTIONS
from producers.ingest.core import requested_by_portal
from producers.ingest.service import IngestTopics
from producers.ingest.stack import start_ingest
from producers.portal.ftp import PROTOCOL as FTP
from producers.portal.ftp import FtpDoor, tls_context
from producers.portal.https import PROTOCOL as HTTPS
from producers.portal.https import HttpsDoor
from producers.portal.s3 import PROTOCOL as S3
from producers.portal.s3 import S3Door
from producers.portal.s3keys import S3Secrets, secrets_file
from producers.portal.service import Portal, PortalTopics
from producers.portal.sftp import PROTOCOL as SFTP
from producers.portal.sftp import SftpDoor, ensure_host_key
from projections.portal import DEFAULT_SCHEMA, PortalReads, pool
from store.named import NamedStores

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PortalOptions:
    """Where the portal reads and writes (defaults: the settings' topics, store, schema)."""

    config_topic: str = CONFIG
    ingest: IngestTopics = field(default_factory=IngestTopics)
    topics: PortalTopics = field(default_factory=PortalTopics)
    store_root: Path | None = None
    schema: str = DEFAULT_SCHEMA
    sftp_port: int | None = None  # None: the settings' port
    https_port: int | None = None  # None: the settings' port
    ftp_port: int | None = None  # None: the settings' port
    ftps_port: int | None = None  # None: the settings' port
    s3_port: int | None = None  # None: the settings' port
    publish_timeout: float = 10.0  # seconds an upload waits for the broker before failing


def _specs(settings: Settings, options: PortalOptions) -> list[TopicSpec]:
    declared = {s.name: s for s in catalogue(settings.topic_partitions)}
    specs = [config_spec(options.config_topic)]
    for name, default in (
        (options.ingest.datafiles, declared[DATAFILES]),
        (options.ingest.transfers, declared[TRANSFERS]),
        (options.topics.portal, declared[PORTAL]),
    ):
        found = declared.get(name)
        specs.append(
            found
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


@dataclass(frozen=True, slots=True)
class Running:
    """The started portal: its shared state and where its doors listen."""

    portal: Portal
    sftp_port: int
    https_port: int
    ftp_port: int = 0
    ftps_port: int = 0
    s3_port: int = 0


@contextlib.asynccontextmanager
async def running(
    settings: Settings, options: PortalOptions | None = None
) -> AsyncIterator[Running]:
    """The started portal; everything is stopped on exit."""
    options = options or PortalOptions()
    specs = _specs(settings, options)
    if options.ingest.transfers != options.topics.transfers:
        raise ValueError("the portal's transfers topic is the ingest service's")
    await apply_topics(settings.kafka_bootstrap, specs, replication=settings.kafka_replication)
    source = f"portal/{settings.instance}"
    async with contextlib.AsyncExitStack() as stack:
        store_root = options.store_root or settings.store_root
        started = await start_ingest(
            stack,
            settings,
            source=source,
            config_topic=options.config_topic,
            topics=options.ingest,
            store_root=store_root,
            specs=specs,
            publish_timeout=options.publish_timeout,
        )
        live, publisher, ingest = started.config, started.publisher, started.service
        recovery = await ingest.recover(owned=requested_by_portal)
        log.info("portal ingest ready", recovered_failed=len(recovery.failed))
        connections = pool(settings.pg_dsn, options.schema)
        await connections.open()
        stack.push_async_callback(connections.close)
        stores = NamedStores(store_root, config=live, key_file=settings.key_file)
        stack.push_async_callback(stores.close)

        async def publish(topic: str, key: str, event: Event) -> None:
            await publisher.publish(topic, key, event)

        portal = Portal(
            config=live,
            reads=PortalReads(connections),
            stores=stores,
            ingest=ingest,
            publish=publish,
            spool=settings.var_dir / "portal" / "spool",
            topics=options.topics,
            source=source,
            key_file=settings.key_file,
            max_upload=settings.max_upload,
        )
        stack.push_async_callback(portal.drain)
        stack.push_async_callback(portal.cut_uploads)  # runs once the doors are closed
        reporting = asyncio.create_task(portal.report_sessions(), name="portal-sessions")

        async def stop_reporting() -> None:
            reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporting
            if portal.sessions or portal.reported:  # runs once the doors are closed
                await portal.sessions_reported()

        stack.push_async_callback(stop_reporting)
        if cleared := portal.clear_spool():
            log.warning("dropped uploads in progress a previous run left spooled", files=cleared)
        gate = SignInGate(SFTP, _to(publisher, options.topics.portal))
        stack.push_async_callback(gate.close)
        door = SftpDoor(portal, gate)
        host_key = ensure_host_key(settings.var_dir / "secrets" / "portal" / "ssh_host_ed25519_key")
        wanted = settings.portal_sftp_port if options.sftp_port is None else options.sftp_port
        port = await door.start(settings.portal_address, wanted, host_key)
        stack.push_async_callback(door.close)
        log.info("portal SFTP/SCP listening", address=settings.portal_address, port=port)
        ftp_gate = SignInGate(FTP, _to(publisher, options.topics.portal))
        stack.push_async_callback(ftp_gate.close)
        certificate = _tls(settings)
        ftp = FtpDoor(
            portal,
            ftp_gate,
            tls_context(certificate["ssl_certfile"], certificate["ssl_keyfile"]),
            passive_ports=settings.portal_ftp_passive_ports,
            advertised=settings.portal_ftp_advertised_address,
            idle=settings.portal_ftp_idle,
        )
        ftp_ports = await ftp.start(
            settings.portal_address,
            settings.portal_ftp_port if options.ftp_port is None else options.ftp_port,
            settings.portal_ftps_port if options.ftps_port is None else options.ftps_port,
        )
        stack.push_async_callback(ftp.close)
        log.info("portal FTP listening", address=settings.portal_address, ports=ftp_ports)
        web_gate = SignInGate(HTTPS, _to(publisher, options.topics.portal))
        stack.push_async_callback(web_gate.close)
        tokens = settings.var_dir / "secrets" / "portal-tokens"
        web = HttpsDoor(portal, web_gate, tokens, settings.key_file)
        https_port = (
            settings.portal_https_port if options.https_port is None else options.https_port
        )
        await _serve_web(stack, web.app, settings, https_port, "HTTPS")
        log.info("portal HTTPS listening", address=settings.portal_address, port=https_port)
        s3_gate = SignInGate(S3, _to(publisher, options.topics.portal))
        stack.push_async_callback(s3_gate.close)
        secrets = S3Secrets(secrets_file(settings.var_dir), settings.key_file)
        s3 = S3Door(portal, s3_gate, secrets, settings.var_dir / "portal" / "multipart")
        if s3.multiparts.resumed:
            log.info("S3 multipart uploads resumed", uploads=s3.multiparts.resumed)
        s3_port = settings.portal_s3_port if options.s3_port is None else options.s3_port
        await _serve_web(stack, s3.app, settings, s3_port, "S3")
        log.info("portal S3 listening", address=settings.portal_address, port=s3_port)
        yield Running(portal, port, https_port, *ftp_ports, s3_port=s3_port)


WEB_WRITE_HIGH = 2 * 1024 * 1024  # an HTTPS or S3 answer's bytes buffered before it waits


class _DeepWrites(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a write buffer of ``WEB_WRITE_HIGH`` before a response
    waits for the client: the default (64 KiB) is under one store chunk (1 MiB), so each chunk
    waited for the buffer to drain to a few TLS records, and the client then found the pipe
    empty while the next was written (boto3's GET: about 0.33x of nginx before, 0.55x after,
    on an idle machine)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=WEB_WRITE_HIGH)


async def _serve_web(
    stack: contextlib.AsyncExitStack, app: Any, settings: Settings, port: int, name: str
) -> None:
    """Serve ``app`` over TLS on ``port`` until ``stack`` closes."""
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.portal_address,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
            http=_DeepWrites,
            **_tls(settings),
            **UVICORN_OPTIONS,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # its error (a port in use ...)
            raise RuntimeError(f"the portal's {name} server ended at start")
        await asyncio.sleep(0.05)

    async def stop_web() -> None:
        server.should_exit = True
        await serving

    stack.push_async_callback(stop_web)


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by the portal's own signal handlers (not its own)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _tls(settings: Settings) -> dict[str, Any]:
    """The portal's certificate and key: the configured pair (ECPDS_TLS_CERT/_KEY), else one
    generated on first run under ``<var>/secrets/portal/tls`` (always HTTPS)."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        cert, key = settings.tls_cert, settings.tls_key
        if settings.tls_self_signed:
            ensure_self_signed(cert, key)
    else:
        cert = settings.var_dir / "secrets" / "portal" / "tls" / "server.crt"
        key = settings.var_dir / "secrets" / "portal" / "tls" / "server.key"
        if ensure_self_signed(cert, key):
            log.warning("created the portal's TLS certificate", cert=str(cert))
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def _to(publisher: Publisher, topic: str) -> Callable[[str, Event], Awaitable[object]]:
    async def publish(key: str, event: Event) -> object:
        return await publisher.publish(topic, key, event)

    return publish


async def serve(settings: Settings, options: PortalOptions) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop.set)
    async with running(settings, options):
        await stop.wait()
        log.info("portal stopping")
    log.info("portal stopped")


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sftp-port", type=int, default=None)
    parser.add_argument("--https-port", type=int, default=None)
    parser.add_argument("--ftp-port", type=int, default=None)
    parser.add_argument("--ftps-port", type=int, default=None)
    parser.add_argument("--s3-port", type=int, default=None)
    parser.add_argument("--config-topic", default=CONFIG)
    parser.add_argument("--datafiles-topic", default=DATAFILES)
    parser.add_argument("--transfers-topic", default=TRANSFERS)
    parser.add_argument("--portal-topic", default=PORTAL)
    parser.add_argument("--store-root", type=Path, default=None)
    parser.add_argument("--schema", default=DEFAULT_SCHEMA)
    args = parser.parse_args(argv)
    configure(settings)
    options = PortalOptions(
        config_topic=args.config_topic,
        ingest=IngestTopics(args.datafiles_topic, args.transfers_topic),
        topics=PortalTopics(args.portal_topic, args.transfers_topic),
        store_root=args.store_root,
        schema=args.schema,
        sftp_port=args.sftp_port,
        https_port=args.https_port,
        ftp_port=args.ftp_port,
        ftps_port=args.ftps_port,
        s3_port=args.s3_port,
    )
    uvloop.run(serve(settings, options))


if __name__ == "__main__":
    main()
