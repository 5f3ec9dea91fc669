"""What the object-store suites (s3, az, gs) share: a killable relay, server processes, sources.

``KillableProxy`` stands between a client and a real server so a test can make the server
vanish (every connection reset, new ones refused) and come back with the same data, which an
in-memory emulator could not survive if it were really killed. ``server_process`` runs a
server subprocess for a session fixture (which yields a ``LocalServer``) and always stops it;
``generated`` and ``broken`` are sources made on the fly, so a memory measurement sees the
module's buffers, not the test's.

Rule kept: whatever a helper starts (process, listener, relay tasks) it stops before returning
or leaving its ``with`` block, even when the test fails.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from protocols.base import Location, from_bytes
from protocols.registry import connect
from tests.protocols.contract import MIB, SourceBrokeError, payload

Result = TypeVar("Result")


class KillableProxy:
    """A TCP relay to a server whose ``kill`` drops every connection and stops listening.

    From the client's side this is what a SIGKILLed server looks like (connections reset,
    new ones refused); ``restart`` listens again on the same port, and the server behind it
    still has its data.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while chunk := await source.read(256 * 1024):
                    sink.write(chunk)
                    await sink.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                if sink.can_write_eof() and not sink.is_closing():
                    try:
                        sink.write_eof()
                    except OSError:
                        sink.transport.abort()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def kill(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # RST, like a dead process's sockets
        self._writers.clear()
        # Let the relays see their sockets die and end before anyone closes the loop.
        if self._relays:
            await asyncio.wait(list(self._relays), timeout=2)

    async def restart(self) -> None:
        if self._server is None:
            await self.start()


@asynccontextmanager
async def relay(target_port: int) -> AsyncIterator[KillableProxy]:
    """A started ``KillableProxy`` to ``target_port``, killed on the way out."""
    proxy = KillableProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.kill()


def listening(port: int) -> Callable[[], bool]:
    """Readiness check: something accepts TCP connections on 127.0.0.1:``port``."""

    def ready() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    return ready


def answering(url: str) -> Callable[[], bool]:
    """Readiness check: an HTTP GET of ``url`` gets a successful answer."""

    def ready() -> bool:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - our own local server
        except (urllib.error.URLError, OSError):
            return False
        return True

    return ready


@dataclass(frozen=True)
class LocalServer:
    """A server a session fixture started on 127.0.0.1."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def server_process(
    argv: Sequence[str],
    log: Path,
    ready: Callable[[], bool],
    *,
    missing: str,
    seconds: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) until the block ends; fail the test if never ``ready``.

    ``missing`` says how to install the server when ``argv[0]`` does not exist.
    """
    if not Path(argv[0]).exists():
        pytest.fail(f"{argv[0]} is missing: {missing}")
    name = Path(argv[0]).name
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + seconds
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode} before it was ready")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} was not ready within {seconds}s (log: {log})")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def put_many(location: Location, directory: str, count: int, in_flight: int) -> None:
    """Put ``count`` one-byte files, ``in_flight`` requests at a time on one connection."""
    connection = await connect(location)
    try:
        limit = asyncio.Semaphore(in_flight)

        async def one(index: int) -> None:
            async with limit:
                await connection.put(f"{directory}/f{index:05d}", from_bytes(b"x"))

        await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        await connection.close()


async def generated(total: int, chunk: int = MIB) -> AsyncIterator[bytes]:
    """``total`` bytes made on the fly, so the source itself holds one chunk at a time."""
    block = payload(chunk)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


async def broken(total: int, chunk: int = MIB) -> AsyncIterator[bytes]:
    """``generated(total, chunk)``, then the producer dies (``SourceBrokeError``)."""
    async for piece in generated(total, chunk):
        yield piece
    raise SourceBrokeError("producer died")


async def traced_peak(work: Awaitable[Result]) -> tuple[Result, int]:
    """What ``work`` returns and the peak of memory traced while it ran."""
    tracemalloc.start()
    try:
        result = await work
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak
