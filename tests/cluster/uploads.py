"""Uploads in progress at the destination servers, counted where the servers write: how many
files each host's folder has being written at once, and whether a final name was ever written.

A host's ``max_connections`` bounds the transfers to it in progress; each such transfer is,
at the server, one file being written (sshd's internal-sftp or pyftpdlib writing a temporary
``.<name>.<token>.tmp``, renamed once complete). The kernel tells every write as it happens
(inotify on each host's folder, one watch per folder, read by a thread): a name is *being
written* from its first ``IN_MODIFY`` until its ``IN_CLOSE_WRITE`` (or until it is removed or
renamed away), so the number of names being written in a folder at any moment is the host's
uploads at once. Unlike polling, no upload is too short to be seen: every one is counted
(``uploads``), so a check that the counts cover the files delivered shows the meter worked.

- ``peak``: the most uploads at once per folder since ``mark`` (what a limit is checked on);
- ``final_writes``: names that were written in place without a leading dot, i.e. a final
  name holding partial bytes while it was written (a put under a temporary name never does);
- an overflow of the kernel's queue (events lost) is recorded, and the checks fail on it.

Reads (the suite's own checksums) do not count: they open and close without ``IN_MODIFY``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
from collections import Counter
from pathlib import Path

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_NONBLOCK = 0o4000
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then the name, NUL-padded)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class Uploads:
    """Per watched folder: uploads in progress, their peak since ``mark``, their total."""

    def __init__(self, folders: list[Path]) -> None:
        self._fd = _libc.inotify_init1(IN_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._folder: dict[int, Path] = {}
        mask = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_DELETE
        for folder in folders:
            wd = _libc.inotify_add_watch(self._fd, os.fsencode(folder), mask)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
            self._folder[wd] = folder
        self._writing: dict[Path, set[str]] = {f: set() for f in folders}
        self.peak: Counter[Path] = Counter()
        self.uploads: Counter[Path] = Counter()  # names closed after a write (since start)
        self.final_writes: list[str] = []
        self.overflowed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-uploads", daemon=True)

    def __enter__(self) -> Uploads:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self._fd)

    def mark(self) -> None:
        """Start a new window: each folder's peak is what is being written now."""
        with self._lock:
            for folder, names in self._writing.items():
                self.peak[folder] = len(names)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            try:
                data = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                continue
            with self._lock:
                self._apply(data)

    def _apply(self, data: bytes) -> None:
        offset = 0
        while offset < len(data):
            wd, mask, _, size = EVENT.unpack_from(data, offset)
            name = data[offset + EVENT.size : offset + EVENT.size + size].rstrip(b"\0").decode()
            offset += EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                self.overflowed = True
                continue
            folder = self._folder.get(wd)
            if folder is None or not name:
                continue
            writing = self._writing[folder]
            if mask & IN_MODIFY:
                if name not in writing:
                    writing.add(name)
                    self.peak[folder] = max(self.peak[folder], len(writing))
                    if not name.startswith("."):
                        self.final_writes.append(f"{folder.name}/{name}")
            elif mask & IN_CLOSE_WRITE:
                if name in writing:
                    writing.discard(name)
                    self.uploads[folder] += 1
            else:  # removed or renamed away: whatever wrote it writes no name of this folder
                writing.discard(name)

    def counts(self) -> tuple[dict[Path, int], dict[Path, int]]:
        """The peak per folder since ``mark`` and the uploads per folder so far."""
        with self._lock:
            return dict(self.peak), dict(self.uploads)
