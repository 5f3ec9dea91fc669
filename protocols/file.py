"""The ``file`` transfer module: a local directory tree.

Blocking file I/O never runs on the event loop: every read, write, fsync, rename and directory
walk goes through ``asyncio.to_thread``, in blocks of 1 MiB. Rule kept: a put writes a
temporary file in the target's directory, fsyncs it, ``os.replace``s it onto the final name and
fsyncs the directory, so the final name only ever holds a complete file, even after a crash;
a failed put removes its temporary file. A local tree has no login directory: a path still
relative after the location's base path is under ``/`` (``Location.rooted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections.abc import AsyncIterable, Callable
from datetime import UTC, datetime
from typing import BinaryIO, TypeVar

from protocols.base import (
    DEFAULT_CHUNK,
    ByteStream,
    Connection,
    Entry,
    Location,
    NotFound,
    PermissionDenied,
    ProtocolFailure,
    ServerFailure,
    TransferError,
    put_target,
    select,
)

T = TypeVar("T")


def translate(error: OSError, what: str) -> TransferError:
    """The ``protocols.base`` error for an ``OSError`` raised while doing ``what``."""
    message = f"{what}: {error.strerror or error}"
    if isinstance(error, FileNotFoundError):
        return NotFound(message)
    if isinstance(error, PermissionError) or error.errno == errno.EROFS:
        return PermissionDenied(message)
    if isinstance(error, (IsADirectoryError, NotADirectoryError, FileExistsError)):
        return ProtocolFailure(message)
    # ENOSPC, EIO, stale NFS handles...: may clear up, so worth another try.
    return ServerFailure(message)


async def _io(what: str, function: Callable[..., T], *args: object) -> T:
    try:
        return await asyncio.to_thread(function, *args)
    except OSError as error:
        raise translate(error, what) from error


async def _open_for_put(what: str, target: str, offset: int) -> BinaryIO:
    """Open ``target`` for a put, in a worker thread. A put cancelled meanwhile (an abort)
    does not stop the thread: once it has opened the file, the file is closed and, unless a
    resumed final one, removed, so a cancelled put never leaves a temporary file behind."""
    opening = asyncio.ensure_future(_io(what, _open_binary, target, bool(offset)))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            handle = await opening
            handle.close()
            if not offset:
                await asyncio.to_thread(os.unlink, target)
        raise


def _open_binary(target: str, resume: bool) -> BinaryIO:
    return open(target, "r+b") if resume else open(target, "wb")


def _fsync_dir(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _entry(name: str, entry: os.DirEntry[str]) -> Entry:
    link = entry.is_symlink()
    try:
        info = entry.stat(follow_symlinks=True)
    except OSError:  # a dangling symlink: list it, without size
        info = entry.stat(follow_symlinks=False)
    directory = stat.S_ISDIR(info.st_mode)
    mtime = datetime.fromtimestamp(info.st_mtime, UTC)
    return Entry(name, 0 if directory else info.st_size, mtime, directory, link)


def _walk(base: str, recursive: bool) -> list[Entry]:
    entries: list[Entry] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(base, relative) if relative else base) as scan:
            for item in scan:
                name = f"{relative}/{item.name}" if relative else item.name
                entry = _entry(name, item)
                entries.append(entry)
                # Symlinked directories are listed but not followed: no loops.
                if recursive and entry.is_dir and not entry.is_symlink:
                    pending.append(name)
    return entries


def _write_all(handle: BinaryIO, blocks: list[bytes]) -> None:
    for block in blocks:
        handle.write(block)


def _finish(handle: BinaryIO, sync: bool) -> None:
    handle.flush()
    if sync:
        os.fsync(handle.fileno())
    handle.close()


class FileConnection:
    """A view of the local file system rooted at the location's path."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.fsync = location.flag("fsync", True)

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]:
        base = self.location.rooted(path)
        entries = await _io(f"list {base}", _walk, base, recursive)
        return sorted(select(entries, pattern, regex), key=lambda e: e.name)

    async def get(self, path: str, *, offset: int = 0) -> ByteStream:
        target = self.location.rooted(path)
        what = f"get {target}"
        handle: BinaryIO = await _io(what, open, target, "rb")
        try:
            if offset:
                await _io(what, handle.seek, offset)
            while block := await _io(what, handle.read, DEFAULT_CHUNK):
                yield block
        finally:
            handle.close()

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
        final = self.location.rooted(path)
        what = f"put {final}"
        directory = os.path.dirname(final)
        if self.location.flag("mkdirs", True) if mkdirs is None else mkdirs:
            await _io(what, os.makedirs, directory, 0o777, True)
        tmp = self.location.flag("usetmp", True) if use_tmp is None else use_tmp
        # A resumed put appends to the final file: there is nothing to rename.
        target = (
            put_target(final, self.location, temporary, self.location.rooted)
            if tmp and not offset
            else final
        )
        handle = await _open_for_put(what, target, offset)
        written = 0
        done = False
        try:
            if offset:
                await _io(what, handle.seek, offset)
                await _io(what, handle.truncate)
            pending: list[bytes] = []
            size = 0
            async for chunk in data:
                pending.append(chunk)
                size += len(chunk)
                if size >= DEFAULT_CHUNK:  # one thread hop per MiB, not per chunk
                    await _io(what, _write_all, handle, pending)
                    written += size
                    pending, size = [], 0
            await _io(what, _write_all, handle, pending)
            written += size
            await _io(what, _finish, handle, self.fsync)
            if target != final:
                await _io(what, os.replace, target, final)
            if self.fsync:
                await _io(what, _fsync_dir, directory)
            done = True
        finally:
            if not done:
                handle.close()
                if target != final or not offset:
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(os.unlink, target)
        return written

    async def rename(self, source: str, target: str) -> None:
        src, dst = self.location.rooted(source), self.location.rooted(target)
        await _io(f"rename {src} to {dst}", os.replace, src, dst)

    async def delete(self, path: str) -> None:
        target = self.location.rooted(path)
        try:
            await _io(f"delete {target}", os.unlink, target)
        except ProtocolFailure:  # a directory: remove it if empty
            await _io(f"delete {target}", os.rmdir, target)

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        target = self.location.rooted(path)
        if parents:
            await _io(f"mkdir {target}", os.makedirs, target, 0o777, True)
            return
        with contextlib.suppress(ProtocolFailure):  # it already exists
            await _io(f"mkdir {target}", os.mkdir, target)

    async def size(self, path: str) -> int:
        target = self.location.rooted(path)
        info = await _io(f"size {target}", os.stat, target)
        if stat.S_ISDIR(info.st_mode):
            raise ProtocolFailure(f"size {target}: is a directory")
        return info.st_size

    async def close(self) -> None:
        return None


class FileModule:
    """Opens views of local directories (``file:///path``)."""

    async def connect(self, location: Location) -> Connection:
        connection: Connection = FileConnection(location)
        return connection
