"""``ecpds up``: start the infrastructure and every component under one supervisor.

Order on the way up: Kafka and PostgreSQL (infra scripts, idempotent), the MQTT broker
(embedded amqtt in this process, or mosquitto), health checks, topics, then the components as
child processes with their logs under ``var/log``. A component that dies is restarted with a
backoff, and so is a service this run started (Kafka, PostgreSQL, mosquitto): each is watched
by its pid file, and its death and its return are one line each on the operator's output.

Rules kept here: SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) stop everything
this run started, at any point of the way up: the components first (they flush and commit),
then the MQTT broker, PostgreSQL and Kafka (workers always stop before the broker). Nothing
the supervisor prints can abort that: the operator's output may be a pipe whose reader died
first (``ecpds up | tee up.log``, then Ctrl-C) or a terminal that is gone, so a failed write
sends the rest of the output to /dev/null and the shutdown goes on. The infra scripts run in
their own session, so a second Ctrl-C or the terminal's hang-up cannot kill a stop midway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from bus import health
from bus.errors import EcpdsError, InfrastructureError
from bus.logging import get_logger
from bus.mqtt import access_of, embedded_broker
from bus.settings import ROOT, Settings
from bus.tls import ensure_self_signed
from bus.topics import DEFAULT_TRANSFER_GROUP, apply_topics, catalogue, orders_topic

log = get_logger("ecpds.up")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
T = TypeVar("T")


def say(text: str) -> None:
    """Print ``text`` for the operator; if the output is gone (a pipe whose reader died, a
    closed terminal), the rest of it goes to /dev/null and nothing is raised."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        _silence(sys.stdout)


def _silence(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so neither a later write nor the
    flush at exit fails again on it."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


@dataclass(frozen=True)
class Component:
    """A long-running ecpds process: its name and the module it runs."""

    name: str
    argv: tuple[str, ...]


def components() -> list[Component]:
    """The components ``ecpds up`` runs (each stage adds its own here)."""
    python = sys.executable
    found: list[Component] = []
    candidates = [
        ("projector", "projections.runner"),
        ("monitor", "projections.monitor.runner"),
        ("scheduler", "consumers.scheduler.runner"),
        ("mover", "consumers.movers.runner"),
        ("janitor", "consumers.janitor.runner"),
        ("backup", "consumers.backup.runner"),
        ("replicator", "consumers.replicator.runner"),
        ("notifier", "consumers.notifier.runner"),
        ("mailer", "consumers.mailer.runner"),
        ("timeliness", "consumers.timeliness.runner"),
        ("acquisition", "producers.acquisition.runner"),
        ("api", "producers.api.runner"),
        ("portal", "producers.portal.runner"),
    ]
    for name, module in candidates:
        if (ROOT / (module.replace(".", "/") + ".py")).exists():
            found.append(Component(name, (python, "-m", module)))
    return found


def infra_script(settings: Settings, script: str, action: str) -> str:
    """Run an infra script with these settings; a failure raises with its message."""
    env = {**os.environ, **settings.infra_env()}
    result = subprocess.run(
        ["bash", str(ROOT / "infra" / script), action],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        start_new_session=True,  # out of reach of the terminal's Ctrl-C and hang-up
    )
    if result.returncode != 0:
        raise InfrastructureError((result.stderr or result.stdout).strip())
    return result.stdout.strip()


async def wait_healthy(settings: Settings, seconds: float = 60.0) -> None:
    """Wait until Kafka answers metadata requests and PostgreSQL accepts connections."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        checks = await asyncio.gather(health.kafka(settings), health.postgres(settings))
        if all(c.healthy for c in checks):
            return
        if loop.time() > deadline:
            bad = "; ".join(f"{c.service}: {c.detail}" for c in checks if not c.healthy)
            raise InfrastructureError(f"services did not become healthy in {seconds:.0f} s: {bad}")
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def mqtt_broker(settings: Settings) -> AsyncIterator[None]:
    if settings.mqtt_broker == "embedded":
        async with embedded_broker(settings.mqtt_host, settings.mqtt_port, access_of(settings)):
            yield
    elif settings.mqtt_broker == "mosquitto":
        say(infra_script(settings, "mqtt/mosquitto.sh", "start"))
        try:
            yield
        finally:
            say(infra_script(settings, "mqtt/mosquitto.sh", "stop"))
    else:
        yield


@dataclass(frozen=True)
class Service:
    """A local service ``ecpds up`` starts with an infra script: its name, script and the
    file holding the pid of its server process (first line)."""

    name: str
    script: str
    pid_file: Path


def services(settings: Settings) -> list[Service]:
    """The services this run starts and watches (the embedded MQTT broker lives in this
    process: it cannot die without the supervisor)."""
    var = settings.var_dir
    found = [
        Service("kafka", "kafka/kafka.sh", var / "kafka" / "kafka.pid"),
        Service("postgres", "pg/pg.sh", var / "pg" / "data" / "postmaster.pid"),
    ]
    if settings.mqtt_broker == "mosquitto":
        found.append(Service("mosquitto", "mqtt/mosquitto.sh", var / "mosquitto" / "mosquitto.pid"))
    return found


def _server_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process runs (a zombie does not: a server killed by a
    signal stays one until init reaps it), else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return None if state == "Z" else pid


class Watch:
    """Restarts one service when its server process is gone, with a capped doubling backoff
    (reset once it has stayed up for ``STABLE`` seconds); says "died" and "back" once each."""

    CHECK = 1.0  # seconds between two looks at the pid file
    FIRST_DELAY = 1.0
    MAX_DELAY = 60.0
    STABLE = 120.0

    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.restarts = 0

    async def _script(self, action: str) -> str:
        # in a thread: the script blocks until the server answers (Kafka: up to a minute)
        return await asyncio.to_thread(infra_script, self.settings, self.service.script, action)

    async def _down(self) -> bool:
        if _server_pid(self.service.pid_file) is not None:
            return False
        try:  # the script may know better (a pid file rewritten, a server adopted)
            await self._script("status")
        except InfrastructureError:
            return True
        return False

    async def run(self, stopping: asyncio.Event) -> None:
        """Watch until ``stopping``; a restart under way is finished, never abandoned (the stop
        that follows must not race a start)."""
        loop = asyncio.get_running_loop()
        name, delay, up_since = self.service.name, self.FIRST_DELAY, loop.time()
        while not await _stopped_within(stopping, self.CHECK):
            if not await self._down():
                continue
            died = loop.time()
            if died - up_since >= self.STABLE:
                delay = self.FIRST_DELAY
            say(f"{name}: died (its server process is gone); restarting in {delay:.0f} s")
            while True:
                if await _stopped_within(stopping, delay):
                    return
                delay = min(delay * 2, self.MAX_DELAY)
                try:
                    await self._script("start")
                except InfrastructureError as error:
                    reason = str(error).splitlines()[0] if str(error) else "no message"
                    say(f"{name}: restart failed ({reason}); next try in {delay:.0f} s")
                    continue
                break
            self.restarts += 1
            up_since = loop.time()
            say(f"{name}: back after {up_since - died:.1f} s (restart {self.restarts})")


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; whether a stop came meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


class Child:
    """One supervised component process, restarted with a backoff when it dies."""

    def __init__(self, component: Component, log_dir: Path) -> None:
        self.component = component
        self.log_path = log_dir / f"{component.name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0

    async def run(self, stopping: asyncio.Event) -> None:
        delay = 1.0
        while not stopping.is_set():
            with self.log_path.open("ab") as out:
                self.process = await asyncio.create_subprocess_exec(
                    *self.component.argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
                )
                if stopping.is_set():  # the stop came while it was starting: stop() missed it
                    await self.stop()
                    return
                code = await self.process.wait()
            if stopping.is_set():
                return
            self.restarts += 1
            with contextlib.suppress(OSError, ValueError):  # stderr may be gone, see say()
                log.warning(
                    "component exited, restarting",
                    component=self.component.name,
                    code=code,
                    delay=delay,
                    log=str(self.log_path),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, 30.0)

    async def stop(self, grace: float = 15.0) -> None:
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def up(
    settings: Settings, selected: Sequence[str] | None = None, keep_infra: bool = False
) -> None:
    """Bring everything up and supervise it until SIGINT, SIGTERM or SIGHUP; then stop all of
    it (Kafka and PostgreSQL too, unless ``keep_infra``)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping.set)
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        await _serve(settings, selected, stopping)
    finally:
        if not keep_infra:
            _stop_infra(settings)


class _Stopped(Exception):
    """A stop signal came while the services were still coming up."""


async def _serve(
    settings: Settings, selected: Sequence[str] | None, stopping: asyncio.Event
) -> None:
    with contextlib.suppress(_Stopped):
        await _start_and_supervise(settings, selected, stopping)


async def _start_and_supervise(
    settings: Settings, selected: Sequence[str] | None, stopping: asyncio.Event
) -> None:
    # the infra scripts block the loop; a signal meanwhile is handled once they return
    say(infra_script(settings, "kafka/kafka.sh", "start"))
    _raise_if_set(stopping)
    say(infra_script(settings, "pg/pg.sh", "start"))
    _raise_if_set(stopping)
    async with mqtt_broker(settings):
        await _unless_stopped(wait_healthy(settings), stopping)
        specs = [
            *catalogue(settings.topic_partitions),
            orders_topic(DEFAULT_TRANSFER_GROUP, settings.topic_partitions),
        ]
        await _unless_stopped(
            apply_topics(settings.kafka_bootstrap, specs, replication=settings.kafka_replication),
            stopping,
        )
        for check in await _unless_stopped(health.check_all(settings), stopping):
            say(f"{check.service:9} {'healthy' if check.healthy else 'DOWN':8} {check.detail}")
        if settings.tls_self_signed and settings.tls_cert and settings.tls_key:
            # before the children start, so the monitor and the API serve one pair
            ensure_self_signed(settings.tls_cert, settings.tls_key)
        chosen = [c for c in components() if not selected or c.name in selected]
        children = [Child(c, settings.log_dir) for c in chosen]
        tasks = [asyncio.create_task(child.run(stopping)) for child in children]
        watches = [
            asyncio.create_task(Watch(s, settings).run(stopping)) for s in services(settings)
        ]
        try:
            _greet(settings, chosen)
            await stopping.wait()
        finally:
            say("ecpds: stopping components ...")
            stopping.set()  # no restart from here on, whatever ended the wait
            await asyncio.gather(*(child.stop() for child in children))
            await asyncio.gather(*tasks, return_exceptions=True)
            # a restart under way ends first, so the infra stop that follows cannot race it
            await asyncio.gather(*watches, return_exceptions=True)


def _raise_if_set(stopping: asyncio.Event) -> None:
    if stopping.is_set():
        raise _Stopped


async def _unless_stopped(work: Awaitable[T], stopping: asyncio.Event) -> T:
    """``work``'s result; if a stop signal comes first, ``work`` is cancelled and ``_Stopped``
    raised."""
    task = asyncio.ensure_future(work)
    stop = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, EcpdsError):
        await task
    raise _Stopped


def _greet(settings: Settings, chosen: Sequence[Component]) -> None:
    names = ", ".join(c.name for c in chosen) or "none yet"
    say(f"ecpds is up: components {names}; logs in {settings.log_dir}")
    names_up = {c.name for c in chosen}
    if "monitor" in names_up:
        say(
            f"monitor: {settings.web_url(settings.monitor_port)}/  (user admin, password in "
            f"{settings.var_dir}/secrets/admin.password)"
        )
        if settings.tls_self_signed:
            say(f"TLS: self-signed certificate; trust it with curl --cacert {settings.tls_cert}")
    if "api" in names_up:
        api = settings.web_url(settings.monitor_port + 1)
        say(f"ingest API: {api}/api/v1/openapi.json")
        token = settings.var_dir / "secrets" / "admin.token"
        say(f"API admin token (for this machine's operator only): {token}")
    if "portal" in names_up:
        host = settings.portal_address
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        cert = settings.tls_cert or settings.var_dir / "secrets" / "portal" / "tls" / "server.crt"
        say(
            f"Data Portal: sftp -P {settings.portal_sftp_port} <data user>@{host}, "
            f"ftp://{host}:{settings.portal_ftp_port} (AUTH TLS), "
            f"https://{host}:{settings.portal_https_port}/ (curl --cacert {cert}), "
            f"S3 https://{host}:{settings.portal_s3_port}"
        )
    say("Ctrl-C stops everything")


def _stop_infra(settings: Settings) -> None:
    """Stop PostgreSQL, then Kafka: each is tried even if the other fails; a failure is
    raised once both were tried."""
    failed: list[str] = []
    for script in ("pg/pg.sh", "kafka/kafka.sh"):
        try:
            say(infra_script(settings, script, "stop"))
        except InfrastructureError as error:
            failed.append(f"{script} stop: {error}")
    if failed:
        raise InfrastructureError("; ".join(failed))
