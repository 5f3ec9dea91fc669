"""The faults of the chaos suite, one at a time: what starts each, how long it lasts, what
ends it. Each ``end`` puts the world back as it was (the process running again, the server
back with its data, the proxy a clean relay, the store's space free), so the next case starts
from a healthy world.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.chaos.conftest import World
from tests.chaos.load import Load


@dataclass(frozen=True)
class Fault:
    """One fault: what starts it, how long it lasts, what ends it."""

    name: str
    begin: Callable[[World], Awaitable[None]]
    end: Callable[[World], Awaitable[None]]
    seconds: float
    needs: str = ""  # "proxy" or "tmpfs": skipped without it


async def inject(
    world: World,
    fault: Fault,
    runs: list[tuple[Load, str]],
    pre: float,
    post: float,
    give_up: float,
) -> tuple[float, float]:
    """Run each load under its prefix for ``pre`` + the fault's seconds + ``post``, with the
    fault begun ``pre`` seconds in and ended its seconds later (whatever happened), then wait
    for every put; when the fault began (epoch seconds) and ended (monotonic)."""
    seconds = pre + fault.seconds + post
    loading = [asyncio.create_task(load.run(prefix, seconds, give_up)) for load, prefix in runs]
    await asyncio.sleep(pre)
    began = time.time()
    try:
        await fault.begin(world)
        await asyncio.sleep(fault.seconds)
    finally:
        await fault.end(world)  # the next case starts from a healthy world, whatever happened
    ended = time.monotonic()
    await asyncio.gather(*loading)
    return began, ended


# -- the faults ----------------------------------------------------------------------------------


def kill(component: str) -> Fault:
    async def begin(world: World) -> None:
        world.stack.kill(component)

    async def end(world: World) -> None:
        await asyncio.to_thread(world.stack.start, component)

    return Fault(f"kill-{component}", begin, end, 2.0)


async def kill_kafka(world: World) -> None:
    await asyncio.to_thread(world.infra.kill_kafka)


async def start_kafka(world: World) -> None:
    await asyncio.to_thread(world.infra.start_kafka)


async def stop_pg(world: World) -> None:
    await asyncio.to_thread(world.infra.stop_pg)


async def start_pg(world: World) -> None:
    await asyncio.to_thread(world.infra.start_pg)


async def hosts_down(world: World) -> None:
    """Every destination server unreachable: sshd and the FTP server killed (connections
    reset), the S3 endpoint's proxy disabled (refused)."""
    await asyncio.to_thread(world.servers.sftp_down)
    await asyncio.to_thread(world.servers.ftp_down)
    if world.proxy is not None:
        world.proxy.enable("s3", False)


async def hosts_up(world: World) -> None:
    await asyncio.to_thread(world.servers.sftp_up)
    await asyncio.to_thread(world.servers.ftp_up)
    if world.proxy is not None:
        world.proxy.enable("s3", True)


async def credentials_changed(world: World) -> None:
    """The SFTP key and the FTP password rotated on the servers' side."""
    world.servers.sftp_refuse_key(True)
    await asyncio.to_thread(world.servers.ftp_password, "rotated-elsewhere")


async def credentials_back(world: World) -> None:
    world.servers.sftp_refuse_key(False)
    await asyncio.to_thread(world.servers.ftp_password, "secret")


FILLER = "filler.bin"


async def fill_store(world: World) -> None:
    """The store's filesystem filled to its last byte (by a file beside the store's data)."""
    # unbuffered: a buffered file's close would raise ENOSPC once more, out of the fault
    descriptor = os.open(world.store / FILLER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = bytes(size)
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, chunk)
    finally:
        os.close(descriptor)


async def free_store(world: World) -> None:
    (world.store / FILLER).unlink(missing_ok=True)


def toxic(name: str, kind: str, attributes: dict[str, int], toxicity: float = 1.0) -> Fault:
    """A Toxiproxy toxic on both directions of both proxies (SFTP and S3) for 8 s."""

    async def begin(world: World) -> None:
        assert world.proxy is not None
        for proxy in ("sftp", "s3"):
            for stream in ("upstream", "downstream"):
                world.proxy.add_toxic(proxy, kind, attributes, stream=stream, toxicity=toxicity)

    async def end(world: World) -> None:
        assert world.proxy is not None
        for proxy in ("sftp", "s3"):
            world.proxy.clear(proxy)

    return Fault(name, begin, end, 8.0, needs="proxy")


CUTTING: dict[int, asyncio.Task[None]] = {}


async def cut_connections(world: World) -> None:
    """Every 3 s, every connection through both proxies is cut (and refused for 0.5 s)."""
    proxy = world.proxy
    assert proxy is not None

    async def cycle() -> None:
        while True:
            await asyncio.sleep(2.5)
            for name in ("sftp", "s3"):
                proxy.enable(name, False)
            await asyncio.sleep(0.5)
            for name in ("sftp", "s3"):
                proxy.enable(name, True)

    CUTTING[id(world)] = asyncio.create_task(cycle())


async def stop_cutting(world: World) -> None:
    task = CUTTING.pop(id(world))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert world.proxy is not None
    for name in ("sftp", "s3"):
        world.proxy.clear(name)


FAULTS = [
    kill("scheduler"),
    kill("mover-a"),
    kill("projector"),
    kill("notifier"),
    kill("api"),
    Fault("kill-kafka", kill_kafka, start_kafka, 8.0),
    Fault("restart-postgres", stop_pg, start_pg, 5.0),
    Fault("hosts-down", hosts_down, hosts_up, 20.0),
    Fault("credentials-changed", credentials_changed, credentials_back, 12.0),
    Fault("store-full", fill_store, free_store, 8.0, needs="tmpfs"),
    toxic("net-latency", "latency", {"latency": 300, "jitter": 100}),
    toxic("net-bandwidth", "bandwidth", {"rate": 16}),  # KB/s each way
    # "loss": a third of the connections stall (nothing passes) and are closed after 3 s
    toxic("net-loss", "timeout", {"timeout": 3000}, toxicity=0.33),
    Fault("net-cut", cut_connections, stop_cutting, 10.0, needs="proxy"),
]
