"""The transfer-module contract suite: one set of behaviours every protocol module must show.

Subclass ``TransferContract`` in ``tests/protocols/test_<protocol>.py`` (name it ``Test...``)
and provide these fixtures:

- ``location`` (function scope, required): a ``protocols.base.Location`` on a real server whose
  ``path`` is an empty, writable directory (or prefix) unique to the test.
- ``bad_location`` (optional): the same server with a wrong password; the default returns
  ``None`` and the wrong-password case is skipped.
- ``kill_server`` (optional): a ``ServerControl`` whose ``kill()`` stops the server abruptly
  (SIGKILL or equivalent) and whose ``restart()`` brings it back on the same address with the
  same data; the default returns ``None`` and the server-gone cases are skipped.

Class attributes switch off what a protocol cannot do: ``supports_rename``,
``supports_resume``, ``supports_mkdir_dirs`` (empty directories exist), ``supports_mtime``,
``delete_missing_raises``, ``cleans_up_failed_put`` (no temporary file left after a failed
put). ``many_entries`` sets the size of the big-listing case (10,000 by default; lower it for a
slow server) and ``kill_file_size`` the file cut by the server's death. ``populate`` may be
overridden to create the many entries faster than by puts (for example straight onto the
server's disk).

The rule pinned above all: a put writes under a temporary name and renames at the end, so the
final name never shows a partial file: not while the put runs, not after it fails, not after
the server dies mid-transfer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

import pytest

from protocols.base import (
    AuthenticationFailed,
    Connection,
    Entry,
    Location,
    NotFound,
    TransferError,
    from_bytes,
    read_all,
)
from protocols.registry import connect

MIB = 1024 * 1024


class ServerControl(Protocol):
    """What a subclass's ``kill_server`` fixture returns."""

    async def kill(self) -> None:
        """Stop the server abruptly, dropping every open connection."""

    async def restart(self) -> None:
        """Start it again on the same address, serving the same data."""


class SourceBrokeError(Exception):
    """Raised by a test's source stream to simulate a failing producer."""


def payload(size: int, seed: int = 7) -> bytes:
    """Deterministic, incompressible test bytes."""
    return random.Random(seed).randbytes(size)


async def chunks(
    data: bytes, size: int = 64 * 1024, hook: Callable[[int], Awaitable[None]] | None = None
) -> AsyncIterator[bytes]:
    """Yield ``data`` in ``size`` pieces, awaiting ``hook(index)`` before each piece."""
    for index, start in enumerate(range(0, len(data), size)):
        if hook is not None:
            await hook(index)
        yield data[start : start + size]


def names(entries: list[Entry], *, files_only: bool = False) -> set[str]:
    return {e.name for e in entries if not (files_only and e.is_dir)}


class TransferContract:
    """Behaviours every transfer module shows; subclasses provide ``location`` and switches."""

    supports_rename: ClassVar[bool] = True
    supports_resume: ClassVar[bool] = True
    supports_mkdir_dirs: ClassVar[bool] = True  # an empty directory made by mkdir is listed
    supports_mtime: ClassVar[bool] = True
    delete_missing_raises: ClassVar[bool] = True
    cleans_up_failed_put: ClassVar[bool] = True  # no temp file left after a failed put
    many_entries: ClassVar[int] = 10_000
    kill_file_size: ClassVar[int] = 64 * MIB  # big enough not to fit in socket buffers

    # -- fixtures a subclass may override ----------------------------------------------------

    @pytest.fixture
    def bad_location(self) -> Location | None:
        return None

    @pytest.fixture
    def kill_server(self) -> ServerControl | None:
        return None

    @pytest.fixture
    async def conn(self, location: Location) -> AsyncIterator[Connection]:
        connection = await connect(location)
        try:
            yield connection
        finally:
            await connection.close()

    async def populate(self, location: Location, directory: str, count: int) -> None:
        """Create ``count`` one-byte files ``f00000``... in ``directory`` (default: by puts)."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(count):
            queue.put_nowait(index)

        async def worker() -> None:
            connection = await connect(location)
            try:
                while not queue.empty():
                    index = queue.get_nowait()
                    path = f"{directory}/f{index:05d}"
                    await connection.put(path, from_bytes(b"x"), use_tmp=False, mkdirs=True)
            finally:
                await connection.close()

        await asyncio.gather(*(worker() for _ in range(4)))

    # -- round trips ---------------------------------------------------------------------------

    @pytest.mark.parametrize("size", [0, 1000, 3 * MIB + 17])
    async def test_put_then_get_round_trip(self, conn: Connection, size: int) -> None:
        """Bytes put under a name come back identical from get, and put reports their count."""
        data = payload(size)
        written = await conn.put(f"rt-{size}.bin", chunks(data))
        assert written == size
        assert await read_all(conn.get(f"rt-{size}.bin")) == data

    async def test_put_replaces_existing_file(self, conn: Connection) -> None:
        """A second put to the same name replaces the first content entirely."""
        await conn.put("same.bin", from_bytes(b"first version, longer"))
        await conn.put("same.bin", from_bytes(b"second"))
        assert await read_all(conn.get("same.bin")) == b"second"

    async def test_size_reports_bytes(self, conn: Connection, location: Location) -> None:
        """size returns the stored length of a file, also as a fresh session's first command."""
        await conn.put("sized.bin", from_bytes(payload(12345)))
        assert await conn.size("sized.bin") == 12345
        fresh = await connect(location)
        try:
            assert await fresh.size("sized.bin") == 12345
        finally:
            await fresh.close()

    # -- temporary name then rename -------------------------------------------------------------

    async def test_final_name_absent_while_put_runs(
        self, conn: Connection, location: Location
    ) -> None:
        """While a put is still streaming, nothing is visible under the final name."""
        seen_during: list[set[str]] = []
        probe = await connect(location)

        async def look(index: int) -> None:
            if index == 8:
                seen_during.append(names(await probe.list(".")))

        try:
            data = payload(16 * 64 * 1024)
            await conn.put("growing.bin", chunks(data, hook=look))
        finally:
            await probe.close()
        assert seen_during, "the probe never ran"
        assert "growing.bin" not in seen_during[0]
        assert await read_all(conn.get("growing.bin")) == data

    async def test_no_temporary_leftovers_after_put(self, conn: Connection) -> None:
        """After a successful put the directory holds exactly the final name."""
        await conn.put("clean.bin", chunks(payload(300_000)))
        assert names(await conn.list(".")) == {"clean.bin"}

    async def test_put_writes_under_the_temporary_name_it_is_given(
        self, conn: Connection, location: Location
    ) -> None:
        """A put told its temporary name (a mover derives it from the transfer and attempt)
        writes there, never under another hidden name, and leaves only the final name."""
        given = ".given.bin.0a1b2c3d.2.tmp"
        seen_during: list[set[str]] = []
        probe = await connect(location)

        async def look(index: int) -> None:
            if index == 8:
                seen_during.append(names(await probe.list(".")))

        data = payload(16 * 64 * 1024)
        try:
            await conn.put("given.bin", chunks(data, hook=look), use_tmp=True, temporary=given)
        finally:
            await probe.close()
        assert seen_during, "the probe never ran"
        assert {n for n in seen_during[0] if n.startswith(".")} <= {given}
        assert names(await conn.list(".")) == {"given.bin"}
        assert await read_all(conn.get("given.bin")) == data

    async def test_failed_source_leaves_no_final_file(self, conn: Connection) -> None:
        """A put whose source raises midway fails and leaves nothing at the final name."""

        async def broken() -> AsyncIterator[bytes]:
            yield payload(256 * 1024)
            yield payload(256 * 1024, seed=8)
            raise SourceBrokeError("producer died")

        with pytest.raises((SourceBrokeError, TransferError)):
            await conn.put("broken.bin", broken())
        listed = names(await conn.list("."))
        assert "broken.bin" not in listed
        if self.cleans_up_failed_put:
            assert listed == set()
        # The connection must still be usable after the failure.
        await conn.put("after.bin", from_bytes(b"ok"))
        assert await read_all(conn.get("after.bin")) == b"ok"

    # -- directories -------------------------------------------------------------------------

    async def test_put_with_mkdirs_creates_nested_directories(self, conn: Connection) -> None:
        """A put with mkdirs creates every missing parent directory of the target."""
        await conn.put("a/b/c/deep.bin", from_bytes(b"deep"), mkdirs=True)
        assert await read_all(conn.get("a/b/c/deep.bin")) == b"deep"
        assert names(await conn.list("a/b/c")) == {"deep.bin"}

    async def test_mkdir_with_parents(self, conn: Connection) -> None:
        """mkdir creates nested directories, and is idempotent when they exist."""
        if not self.supports_mkdir_dirs:
            pytest.skip("protocol has no empty directories")
        await conn.mkdir("x/y/z")
        await conn.mkdir("x/y/z")
        listed = await conn.list("x/y")
        assert [(e.name, e.is_dir) for e in listed] == [("z", True)]

    # -- resume, delete, rename ------------------------------------------------------------------

    async def test_get_with_offset_resumes(self, conn: Connection) -> None:
        """get from an offset streams exactly the bytes from that offset onward."""
        if not self.supports_resume:
            pytest.skip("protocol cannot resume")
        data = payload(2 * MIB + 3)
        await conn.put("resume.bin", chunks(data))
        assert await read_all(conn.get("resume.bin", offset=MIB + 1)) == data[MIB + 1 :]
        assert await read_all(conn.get("resume.bin", offset=len(data))) == b""

    async def test_delete_removes_file(self, conn: Connection) -> None:
        """A deleted file is gone from listings and its size is NotFound."""
        await conn.put("gone.bin", from_bytes(b"bye"))
        await conn.delete("gone.bin")
        assert "gone.bin" not in names(await conn.list("."))
        with pytest.raises(NotFound):
            await conn.size("gone.bin")

    async def test_rename_moves_file(self, conn: Connection) -> None:
        """rename makes the content appear under the new name only, also across directories."""
        if not self.supports_rename:
            pytest.skip("protocol cannot rename")
        await conn.put("old.bin", from_bytes(b"content"))
        await conn.put("sub/keep.bin", from_bytes(b"k"), mkdirs=True)
        await conn.rename("old.bin", "new.bin")
        assert names(await conn.list("."), files_only=True) == {"new.bin"}
        await conn.rename("new.bin", "sub/moved.bin")
        assert names(await conn.list("sub")) == {"keep.bin", "moved.bin"}
        assert await read_all(conn.get("sub/moved.bin")) == b"content"

    # -- listing -----------------------------------------------------------------------------

    async def test_list_reports_names_sizes_mtimes_and_dirs(self, conn: Connection) -> None:
        """list gives each entry's name, size, UTC mtime and whether it is a directory."""
        await conn.put("one.bin", from_bytes(b"1"))
        await conn.put("three.bin", from_bytes(b"333"))
        await conn.put("dir/inner.bin", from_bytes(b"in"), mkdirs=True)
        listed = {e.name: e for e in await conn.list(".")}
        assert set(listed) == {"one.bin", "three.bin", "dir"}
        assert (listed["one.bin"].size, listed["one.bin"].is_dir) == (1, False)
        assert (listed["three.bin"].size, listed["three.bin"].is_dir) == (3, False)
        assert listed["dir"].is_dir
        if self.supports_mtime:
            mtime = listed["three.bin"].mtime
            assert mtime is not None
            assert mtime.tzinfo is not None
            assert abs(mtime - datetime.now(UTC)) < timedelta(hours=1)

    async def test_recursive_list_names_relative_paths(self, conn: Connection) -> None:
        """A recursive list returns every file below the directory as a relative path."""
        for path in ("top.bin", "d1/a.bin", "d1/d2/b.bin", "d3/c.bin"):
            await conn.put(path, from_bytes(path.encode()), mkdirs=True)
        entries = await conn.list(".", recursive=True)
        assert names(entries, files_only=True) == {"top.bin", "d1/a.bin", "d1/d2/b.bin", "d3/c.bin"}
        sizes = {e.name: e.size for e in entries if not e.is_dir}
        assert sizes["d1/d2/b.bin"] == len(b"d1/d2/b.bin")

    async def test_list_filters_by_glob_and_regex(self, conn: Connection) -> None:
        """pattern (glob) and regex keep only the matching file names."""
        for name in ("a.grib", "b.grib", "c.txt"):
            await conn.put(name, from_bytes(b"z"))
        globbed = await conn.list(".", pattern="*.grib")
        assert names(globbed, files_only=True) == {"a.grib", "b.grib"}
        matched = await conn.list(".", regex=r"^c\.")
        assert names(matched, files_only=True) == {"c.txt"}

    async def test_list_of_many_entries(self, conn: Connection, location: Location) -> None:
        """A directory of many entries (10,000 by default) is listed completely."""
        await self.populate(location, "many", self.many_entries)
        listed = await conn.list("many")
        assert len(listed) == self.many_entries
        assert names(listed) == {f"f{i:05d}" for i in range(self.many_entries)}

    # -- errors ------------------------------------------------------------------------------

    async def test_wrong_password_is_permanent_auth_failure(
        self, bad_location: Location | None
    ) -> None:
        """A wrong password raises AuthenticationFailed, which is not retriable."""
        if bad_location is None:
            pytest.skip("no bad_location fixture")

        async def attempt() -> None:
            # Some protocols only authenticate on the first request, so make one.
            connection = await connect(bad_location)
            try:
                await connection.list(".")
            finally:
                await connection.close()

        with pytest.raises(AuthenticationFailed) as info:
            await attempt()
        assert info.value.retriable is False

    async def test_missing_file_is_permanent_not_found(self, conn: Connection) -> None:
        """get, size, delete and rename of a missing file raise NotFound, not retriable."""
        with pytest.raises(NotFound) as info:
            await read_all(conn.get("missing.bin"))
        assert info.value.retriable is False
        with pytest.raises(NotFound):
            await conn.size("missing.bin")
        if self.delete_missing_raises:
            with pytest.raises(NotFound):
                await conn.delete("missing.bin")
        if self.supports_rename:
            with pytest.raises(NotFound):
                await conn.rename("missing.bin", "other.bin")

    async def test_abandoned_get_leaves_connection_usable(self, conn: Connection) -> None:
        """Closing a get stream after its first chunk leaves the connection working."""
        await conn.put("big.bin", chunks(payload(4 * MIB)))
        stream = conn.get("big.bin")
        first = await anext(stream)
        assert first
        await stream.aclose()  # type: ignore[attr-defined]
        assert await conn.size("big.bin") == 4 * MIB
        assert await read_all(conn.get("big.bin", offset=4 * MIB - 2)) == payload(4 * MIB)[-2:]

    # -- server gone mid-transfer ---------------------------------------------------------------

    async def test_server_gone_during_put_is_retriable(
        self, kill_server: ServerControl | None, location: Location
    ) -> None:
        """A put cut by the server's death raises a retriable error and leaves no final file."""
        if kill_server is None:
            pytest.skip("no kill_server fixture")
        connection = await connect(location)

        async def kill_midway(index: int) -> None:
            if index == 16:
                await kill_server.kill()

        try:
            with pytest.raises(TransferError) as info:
                await connection.put("killed.bin", chunks(payload(8 * MIB), hook=kill_midway))
            assert info.value.retriable is True
        finally:
            await connection.close()
            await kill_server.restart()
        again = await connect(location)
        try:
            assert "killed.bin" not in names(await again.list("."))
        finally:
            await again.close()

    async def test_server_gone_during_get_is_retriable(
        self, kill_server: ServerControl | None, location: Location
    ) -> None:
        """A get cut by the server's death raises a retriable TransferError, not a short read."""
        if kill_server is None:
            pytest.skip("no kill_server fixture")
        connection = await connect(location)
        try:
            await connection.put("victim.bin", from_bytes(bytes(self.kill_file_size)))

            async def read_and_kill() -> None:
                killed = False
                async for _ in connection.get("victim.bin"):
                    if not killed:
                        killed = True
                        await kill_server.kill()

            with pytest.raises(TransferError) as info:
                await read_and_kill()
            assert info.value.retriable is True
        finally:
            await connection.close()
            await kill_server.restart()
