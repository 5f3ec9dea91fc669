"""Blocking, thread-side writing of one object: a temporary file, hashed as it is written.

``ObjectWriter`` runs in a worker thread. Each chunk is written to a temporary file in the
object's own directory and summed (ADLER32) in that thread, while a second thread (one per
writer, FIFO, so digests see chunks in order) computes MD5/SHA-512 when asked: on two cores
MD5 and the disk then overlap instead of adding up. At most
``MAX_PENDING`` chunks are in the hash queue, which bounds memory and lets a caller reuse a
ring of ``RING`` buffers. ``commit`` fsyncs and renames to the final name (never a
half-written object at that name); ``abort`` removes the temporary file.

Dirty pages are handed to the kernel for writeback every ``WRITEBACK`` bytes
(``sync_file_range``, Linux), so the final fsync finds little left to do instead of stalling
on the whole object at the end.

``copy_file`` copies a local source with ``copy_file_range`` (an in-kernel copy, as ``cp``
does) and hashes the *written* bytes of the temporary file, so the checksum is of what was
stored, not of the source. ADLER32 alone is summed through ``mmap`` in the hash thread (no
byte copied through Python); with MD5/SHA-512 each copied range is read back in 1 MiB pieces
(page-cache hits into a ring of cache-hot buffers), summed here and digested in the hash
thread, so that thread does no more than the checksum floor while the copy runs beside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import cast

from store.checksums import Checksums, Chunk, Digests

MAX_PENDING = 3
READ_AHEAD = 3
# Ring of read buffers: MAX_PENDING hashing, one being written, READ_AHEAD being read, a spare.
RING = MAX_PENDING + READ_AHEAD + 2
# With MD5/SHA-512 a copied range is read back in CHUNK pieces (small enough to stay in
# cache), copied BACK_WINDOW at a time with up to BACK_PENDING pieces queued for the hash
# thread: the copy then never leaves that thread idle. Measured (1 GiB, 2 loaded cores,
# against the checksum floor): 8 MiB windows with 3 queued 0.71x, 2 MiB with 8 queued 1.22x.
CHUNK = 1024 * 1024
BACK_WINDOW = 2 * CHUNK
BACK_PENDING = 8
BACK_RING = BACK_PENDING + 2
# Below this a chunk is hashed inline: a thread hop would cost more than the hash.
INLINE_HASH = 256 * 1024
# copy_file_range window: large enough to amortise the mmap of each hashed window.
WINDOW = 8 * 1024 * 1024
WRITEBACK = 16 * 1024 * 1024
# Errors meaning "copy_file_range cannot do this pair of files": fall back to read/write.
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError, TypeError):
        return None  # not Linux: the final fsync does all the work
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return cast(Callable[[int, int, int, int], int], function)


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages, do not wait


def ensure_dir(directory: Path) -> None:
    """Create ``directory`` (and parents), fsyncing each parent that gained an entry."""
    if directory.is_dir():
        return
    ensure_dir(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir()
        fsync_dir(directory.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` at ``path`` via a fsynced temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _write_all(fd, memoryview(data))
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


class ObjectWriter:
    """Writes one object's bytes under a temporary name; use from a single worker thread."""

    def __init__(self, final: Path, digests: Digests, *, durable: bool = True) -> None:
        ensure_dir(final.parent)
        self._final = final
        self._digests = digests
        self._durable = durable
        self._fd, self._tmp = tempfile.mkstemp(
            dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"
        )
        self._hasher: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        self._written = 0
        self._flushed = 0
        self._ring: list[bytearray] | None = None
        self._slot = 0

    @property
    def temporary(self) -> Path:
        return Path(self._tmp)

    def write(self, chunk: Chunk) -> None:
        view = memoryview(chunk)
        self._hash(view)
        _write_all(self._fd, view)
        self._advance(view.nbytes)
        self._bound()

    def _hash(self, view: memoryview) -> None:
        # ADLER32 (cheap) stays in this thread; MD5/SHA-512 go to the hash thread, which
        # then bounds throughput at the MD5 rate instead of MD5 + ADLER32 + I/O.
        self._digests.update_light(view)
        if self._digests.heavy:
            if view.nbytes < INLINE_HASH and not self._pending:
                self._digests.update_heavy(view)
            else:
                if self._hasher is None:
                    self._hasher = ThreadPoolExecutor(1, thread_name_prefix="store-hash")
                self._pending.append(self._hasher.submit(self._digests.update_heavy, view))

    def _bound(self, limit: int = MAX_PENDING) -> None:
        while len(self._pending) > limit:
            self._pending.popleft().result()

    def _advance(self, length: int) -> None:
        self._written += length
        if self._durable and self._written - self._flushed >= WRITEBACK and _SYNC_FILE_RANGE:
            _SYNC_FILE_RANGE(
                self._fd, self._flushed, self._written - self._flushed, _SYNC_FILE_RANGE_WRITE
            )
            self._flushed = self._written

    def copy_file(self, source: int) -> bool:
        """Copy all of the open file ``source``; False (nothing written) if unsupported here."""
        reader = os.open(self._tmp, os.O_RDONLY)
        try:
            offset = 0
            while True:
                window = BACK_WINDOW if self._digests.heavy else WINDOW
                try:
                    copied = os.copy_file_range(source, self._fd, window, offset, offset)
                except OSError as error:
                    if offset == 0 and error.errno in _NO_COPY_RANGE:
                        return False
                    raise
                if not copied:
                    break
                if self._digests.heavy:
                    self._read_back(reader, offset, copied)
                else:
                    self._submit_range(reader, offset, copied)
                self._advance(copied)
                offset += copied
            self._drain()
        finally:
            # Hash tasks map ``reader``: none may still run when it is closed (or its number
            # reused), whatever went wrong above.
            with contextlib.suppress(Exception):
                self._drain()
            os.close(reader)
        return True

    def _read_back(self, reader: int, offset: int, length: int) -> None:
        """Hash a copied range read back in CHUNK pieces: ADLER32 here, MD5 in the hash thread.

        The pieces are page-cache hits landing in a ring of small (cache-hot) buffers, so the
        hash thread digests exactly what the checksum floor does while this thread's kernel
        copy and ADLER32 run beside it.
        """
        if self._ring is None:
            self._ring = [bytearray(CHUNK) for _ in range(BACK_RING)]
        end = offset + length
        while offset < end:
            # A slot is refilled only once its piece has left the bounded hash queue.
            buffer = self._ring[self._slot]
            self._slot = (self._slot + 1) % BACK_RING
            view = memoryview(buffer)[: min(CHUNK, end - offset)]
            read = os.preadv(reader, [view], offset)
            if not read:
                raise OSError(errno.EIO, f"short read back of {self._tmp}")
            self._hash(view[:read])
            self._bound(BACK_PENDING)
            offset += read

    def _submit_range(self, reader: int, offset: int, length: int) -> None:
        if self._hasher is None:
            self._hasher = ThreadPoolExecutor(1, thread_name_prefix="store-hash")
        self._pending.append(self._hasher.submit(self._hash_range, reader, offset, length))
        while len(self._pending) > MAX_PENDING:
            self._pending.popleft().result()

    def _hash_range(self, reader: int, offset: int, length: int) -> None:
        skip = offset % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(reader, length + skip, offset=offset - skip, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)[skip:]
            try:
                self._digests.update(view)
            finally:
                view.release()

    def commit(self) -> Checksums:
        """Finish hashing, make the bytes durable and rename to the final name."""
        try:
            self._drain()
            if self._durable:
                os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = -1
        os.replace(self._tmp, self._final)
        return self._digests.result()

    def abort(self) -> None:
        """Drop the temporary file; safe to call more than once."""
        with contextlib.suppress(Exception):
            self._drain()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
        self._stop_hasher()

    def _drain(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._stop_hasher()

    def _stop_hasher(self) -> None:
        if self._hasher is not None:
            self._hasher.shutdown(wait=True)
            self._hasher = None
