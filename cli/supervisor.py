"""``ecpds up``: start the infrastructure and every component under one supervisor.

Order on the way up: Kafka and PostgreSQL (infra scripts, idempotent), the MQTT broker
(embedded amqtt in this process, or mosquitto), health checks, topics, then the components as
child processes with their logs under ``var/log``. A component that dies is restarted with a
backoff. Ctrl-C or SIGTERM stops the components first (they flush and commit), then the
broker and the databases: workers always stop before the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bus import health
from bus.errors import InfrastructureError
from bus.logging import get_logger
from bus.mqtt import embedded_broker
from bus.settings import ROOT, Settings
from bus.topics import DEFAULT_TRANSFER_GROUP, apply_topics, catalogue, orders_topic

log = get_logger("ecpds.up")


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
        ("acquisition", "producers.acquisition.runner"),
        ("api", "producers.api.runner"),
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
        async with embedded_broker(settings.mqtt_host, settings.mqtt_port):
            yield
    elif settings.mqtt_broker == "mosquitto":
        print(infra_script(settings, "mqtt/mosquitto.sh", "start"))
        try:
            yield
        finally:
            print(infra_script(settings, "mqtt/mosquitto.sh", "stop"))
    else:
        yield


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
                code = await self.process.wait()
            if stopping.is_set():
                return
            self.restarts += 1
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
    """Bring everything up and supervise it until SIGINT/SIGTERM."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    print(infra_script(settings, "kafka/kafka.sh", "start"))
    print(infra_script(settings, "pg/pg.sh", "start"))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        async with mqtt_broker(settings):
            await wait_healthy(settings)
            specs = [
                *catalogue(settings.topic_partitions),
                orders_topic(DEFAULT_TRANSFER_GROUP, settings.topic_partitions),
            ]
            await apply_topics(settings.kafka_bootstrap, specs)
            for check in await health.check_all(settings):
                print(
                    f"{check.service:9} {'healthy' if check.healthy else 'DOWN':8} {check.detail}"
                )
            chosen = [c for c in components() if not selected or c.name in selected]
            children = [Child(c, settings.log_dir) for c in chosen]
            tasks = [asyncio.create_task(child.run(stopping)) for child in children]
            names = ", ".join(c.name for c in chosen) or "none yet"
            print(f"ecpds is up: components {names}; logs in {settings.log_dir}")
            names_up = {c.name for c in chosen}
            if "monitor" in names_up:
                print(
                    f"monitor: http://127.0.0.1:{settings.monitor_port}/  (user admin, password in "
                    f"{settings.var_dir}/secrets/admin.password)"
                )
            if "api" in names_up:
                api = f"http://127.0.0.1:{settings.monitor_port + 1}"
                print(f"ingest API: {api}/api/v1/openapi.json")
                token = settings.var_dir / "secrets" / "admin.token"
                print(f"API admin token (for this machine's operator only): {token}")
            print("Ctrl-C stops everything")
            await stopping.wait()
            print("ecpds: stopping components ...")
            await asyncio.gather(*(child.stop() for child in children))
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if not keep_infra:
            print(infra_script(settings, "pg/pg.sh", "stop"))
            print(infra_script(settings, "kafka/kafka.sh", "stop"))
