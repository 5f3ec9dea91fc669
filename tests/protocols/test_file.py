"""The ``file`` module on a local directory: the whole contract, then symlinks and durability."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from protocols.base import Location, PermissionDenied, from_bytes, read_all
from protocols.registry import connect
from tests.protocols.contract import MIB, TransferContract, chunks, payload


class TestFileContract(TransferContract):
    """The file module keeps the whole transfer contract."""

    supports_mtime = True

    @pytest.fixture
    def location(self, ram_dir: Callable[[str], Path]) -> Location:
        return Location(scheme="file", path=str(ram_dir("file")))

    async def populate(self, location: Location, directory: str, count: int) -> None:
        target = Path(location.path) / directory
        target.mkdir()
        for index in range(count):
            (target / f"f{index:05d}").write_bytes(b"x")


async def test_symlinks_are_flagged_and_not_followed(tmp_path: Path) -> None:
    """Listed symlinks carry is_symlink, report their target's size, and are not descended."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "data.bin").write_bytes(b"12345")
    (tmp_path / "link.bin").symlink_to(tmp_path / "real" / "data.bin")
    (tmp_path / "linkdir").symlink_to(tmp_path / "real")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    connection = await connect(Location(scheme="file", path=str(tmp_path)))
    entries = {e.name: e for e in await connection.list(".", recursive=True)}
    assert entries["link.bin"].is_symlink
    assert entries["link.bin"].size == 5
    assert entries["linkdir"].is_symlink
    assert entries["linkdir"].is_dir
    assert "linkdir/data.bin" not in entries
    assert entries["dangling"].is_symlink
    assert not entries["real/data.bin"].is_symlink


async def test_put_streams_to_a_temporary_file_in_the_same_directory(tmp_path: Path) -> None:
    """During a put the bytes go to a hidden temporary file beside the final name."""
    connection = await connect(Location(scheme="file", path=str(tmp_path)))
    seen: list[list[str]] = []

    async def look(index: int) -> None:
        if index == 20:
            seen.append(sorted(os.listdir(tmp_path)))

    await connection.put("final.bin", chunks(payload(2 * MIB), hook=look))
    assert len(seen[0]) == 1
    assert seen[0][0].startswith(".final.bin.")
    assert os.listdir(tmp_path) == ["final.bin"]


async def test_a_named_temporary_is_anchored_like_the_final_name(tmp_path: Path) -> None:
    """On a host without a base path (the login directory), a relative temporary name given by
    the mover is written beside the final file, at ``/``, not under the process's directory."""
    connection = await connect(Location(scheme="file", path="."))
    relative = str(tmp_path / "out").lstrip("/")
    seen: list[list[str]] = []

    async def look(index: int) -> None:
        if index == 2:
            seen.append(sorted(os.listdir(tmp_path / "out")))

    await connection.put(
        f"{relative}/final.bin",
        chunks(payload(MIB), hook=look),
        temporary=f"{relative}/.final.bin.abc.1.tmp",
    )
    assert seen == [[".final.bin.abc.1.tmp"]]
    assert os.listdir(tmp_path / "out") == ["final.bin"]


async def test_event_loop_keeps_running_during_large_transfers(tmp_path: Path) -> None:
    """File I/O runs off the event loop: a ticker keeps ticking during a 32 MiB put and get."""
    connection = await connect(Location(scheme="file", path=str(tmp_path)))
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    data = bytes(32 * MIB)
    await connection.put("big.bin", from_bytes(data))
    assert await read_all(connection.get("big.bin")) == data
    stop.set()
    await task
    assert ticks > 32


async def test_put_into_read_only_directory_is_permission_denied(tmp_path: Path) -> None:
    """A put where the process may not write raises PermissionDenied, not retriable."""
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    connection = await connect(Location(scheme="file", path=str(locked)))
    with pytest.raises(PermissionDenied) as info:
        await connection.put("x.bin", from_bytes(b"x"))
    assert info.value.retriable is False


async def test_a_put_cancelled_while_opening_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A put cancelled while its worker thread opens the temporary file (a mover's abort can
    land there) removes that file once the thread has made it: nothing is left behind."""
    conn = await connect(Location(scheme="file", path=str(tmp_path)))
    for attempt in range(20):
        put = asyncio.ensure_future(conn.put(f"f{attempt}.bin", from_bytes(b"x"), mkdirs=False))
        await asyncio.sleep(0)  # the put is now waiting for its open in a worker thread
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
    await asyncio.sleep(0.2)  # any thread still opening has finished
    assert sorted(os.listdir(tmp_path)) == []
    await conn.close()
