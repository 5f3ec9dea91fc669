"""How many times each name was written at the destination servers, counted where it happens.

"Nothing twice" is judged at the servers, not in the log: a second ``TransferSucceeded`` may
be a repeated record (the same event id, a producer's retry after a broker loss) or a
``FOUND_*`` confirmation of a file already there, neither of which wrote anything; and a
write the log never hears of (a mover that wrote and died, then a second send) would not
show in it at all.

- ``FolderWatch``: SFTP (OpenSSH) and FTP (pyftpdlib) write to local folders. A thread looks
  at them every ``POLL`` seconds and keeps, per path, every version it saw (inode, mtime,
  size). A file written to a temporary name and renamed, or rewritten in place, is a new
  version; a version counts as a write once it has the file's final size. Two writes of one
  name less than ``POLL`` apart would count as one: a resend after a crash is seconds apart.
- ``s3_writes``: moto logs every request; a write of a key is a PUT of it (an object or a
  server-side copy, not a part) or the POST that completes its multipart upload.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from pathlib import Path

POLL = 0.1

Version = tuple[int, int, int]  # inode, mtime (ns), size


class FolderWatch:
    """Every version of every file under ``roots`` while it runs (a daemon thread)."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self._versions: dict[str, set[Version]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-writes", daemon=True)

    def __enter__(self) -> FolderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            self.look()

    def look(self) -> None:
        """One pass over the folders (also called once more before counting)."""
        seen: list[tuple[str, Version]] = []
        for root in self.roots:
            for folder, _, names in os.walk(root):
                for name in names:
                    path = os.path.join(folder, name)
                    try:
                        stat = os.stat(path)
                    except FileNotFoundError:
                        continue  # renamed or removed meanwhile
                    seen.append((path, (stat.st_ino, stat.st_mtime_ns, stat.st_size)))
        with self._lock:
            for path, version in seen:
                self._versions.setdefault(path, set()).add(version)

    def writes(self, path: Path, size: int) -> int:
        """How many complete versions of ``path`` (``size`` bytes) were seen."""
        with self._lock:
            versions = self._versions.get(str(path), set())
            return len({(ino, mtime) for ino, mtime, seen in versions if seen == size})


WRITE = re.compile(r'"(PUT|POST) /([^ ?]+)(\?[^ ]*)? HTTP/1\.1[^"]*" 200 ')


def s3_writes(log: Path) -> Counter[str]:
    """Writes per ``bucket/key`` in moto's request log (answered 200 only)."""
    counts: Counter[str] = Counter()
    for match in WRITE.finditer(log.read_text(errors="replace")):
        method, path, query = match.group(1), match.group(2), match.group(3) or ""
        if (method == "PUT" and "partNumber=" not in query and "/" in path) or (
            method == "POST" and "uploadId=" in query
        ):
            counts[path] += 1
    return counts
