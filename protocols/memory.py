"""The ``memory`` transfer module: an in-process file tree shared per host name.

For demos and unit tests that need no server. Every connection to ``memory://<host>/...`` in
the same process sees the same tree. It keeps the contract's rule like a real server would:
a put writes under a temporary name (visible in listings while it runs) and renames it to the
final name only after the last byte, and removes the temporary file if the source fails.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from protocols.base import (
    DEFAULT_CHUNK,
    ByteStream,
    Connection,
    Entry,
    Location,
    NotFound,
    PermissionDenied,
    ProtocolFailure,
    put_target,
    select,
)


@dataclass
class _File:
    data: bytes | bytearray  # a bytearray while a put is still writing it
    mtime: datetime


@dataclass
class MemoryTree:
    """One host's files (absolute path -> content) and directories."""

    files: dict[str, _File] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {"/"})

    def require_dir(self, path: str) -> None:
        if path not in self.dirs:
            if path in self.files:
                raise ProtocolFailure(f"{path} is a file, not a directory")
            raise NotFound(f"no such directory: {path}")

    def make_dirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        current = "/"
        for part in parts:
            current = posixpath.join(current, part)
            if current in self.files:
                raise PermissionDenied(f"cannot create directory {current}: a file is there")
            self.dirs.add(current)


_TREES: dict[str, MemoryTree] = {}


def tree(host: str) -> MemoryTree:
    """The shared tree of ``host`` (created empty on first use)."""
    return _TREES.setdefault(host, MemoryTree())


def forget(host: str) -> None:
    """Drop the tree of ``host`` (tests use it to start clean)."""
    _TREES.pop(host, None)


class MemoryConnection:
    """A connection to one host's in-memory tree."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.tree = tree(location.host)
        self.closed = False

    def _path(self, path: str) -> str:
        if self.closed:
            raise ProtocolFailure("connection is closed")
        return self.location.rooted(path)

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]:
        base = self._path(path)
        self.tree.require_dir(base)
        entries: list[Entry] = []
        prefix = base.rstrip("/") + "/"
        for name, item in self.tree.files.items():
            if name.startswith(prefix):
                relative = name[len(prefix) :]
                if recursive or "/" not in relative:
                    entries.append(Entry(relative, len(item.data), item.mtime))
        for directory in self.tree.dirs:
            if directory.startswith(prefix) and directory != base:
                relative = directory[len(prefix) :]
                if recursive or "/" not in relative:
                    entries.append(Entry(relative, 0, None, is_dir=True))
        await asyncio.sleep(0)
        return sorted(select(entries, pattern, regex), key=lambda e: e.name)

    async def get(self, path: str, *, offset: int = 0) -> ByteStream:
        target = self._path(path)
        item = self.tree.files.get(target)
        if item is None:
            raise NotFound(f"no such file: {target}")
        view = memoryview(item.data)
        for start in range(offset, len(view), DEFAULT_CHUNK):
            yield bytes(view[start : start + DEFAULT_CHUNK])
            await asyncio.sleep(0)

    async def put(
        self,
        path: str,
        data: AsyncIterable[bytes],
        *,
        use_tmp: bool | None = None,
        mkdirs: bool | None = None,
        offset: int = 0,
        temporary: str | None = None,
    ) -> int:
        final = self._path(path)
        parent = posixpath.dirname(final)
        if mkdirs if mkdirs is not None else self.location.flag("mkdirs", True):
            self.tree.make_dirs(parent)
        self.tree.require_dir(parent)
        if final in self.tree.dirs:
            raise PermissionDenied(f"{final} is a directory")
        tmp = use_tmp if use_tmp is not None else self.location.flag("usetmp", True)
        name = put_target(final, self.location, temporary, self._path) if tmp else final
        head: bytes | bytearray = b""
        if offset:
            existing = self.tree.files.get(final)
            head = existing.data[:offset] if existing else b""
        buffer = bytearray(head)
        # The in-progress file is visible (and grows) like on a real server.
        self.tree.files[name] = _File(buffer, datetime.now(UTC))
        try:
            async for chunk in data:
                buffer += chunk
        except BaseException:
            self.tree.files.pop(name, None)
            raise
        self.tree.files[name] = _File(bytes(buffer), datetime.now(UTC))
        if name != final:
            self.tree.files[final] = self.tree.files.pop(name)
        return len(buffer) - len(head)

    async def rename(self, source: str, target: str) -> None:
        src, dst = self._path(source), self._path(target)
        item = self.tree.files.pop(src, None)
        if item is None:
            raise NotFound(f"no such file: {src}")
        if posixpath.dirname(dst) not in self.tree.dirs:
            self.tree.files[src] = item
            raise NotFound(f"no such directory: {posixpath.dirname(dst)}")
        self.tree.files[dst] = item

    async def delete(self, path: str) -> None:
        target = self._path(path)
        if self.tree.files.pop(target, None) is None:
            raise NotFound(f"no such file: {target}")

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        target = self._path(path)
        if not parents:
            self.tree.require_dir(posixpath.dirname(target))
        self.tree.make_dirs(target)

    async def size(self, path: str) -> int:
        target = self._path(path)
        item = self.tree.files.get(target)
        if item is None:
            raise NotFound(f"no such file: {target}")
        return len(item.data)

    async def close(self) -> None:
        self.closed = True


class MemoryModule:
    """Opens connections to the shared in-memory tree named by the location's host."""

    async def connect(self, location: Location) -> Connection:
        connection: Connection = MemoryConnection(location)
        return connection
