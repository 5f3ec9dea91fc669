"""Files only this machine's operator may read (secrets, token and user files): mode 0600 in a
0700 directory, created once or rewritten whole and renamed into place, so a reader never sees
half a file and no other account ever sees one at all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def create_private(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text``; False when it exists already (another process won)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return True


def replace_private(path: Path, text: str) -> None:
    """Write ``path`` whole with ``text``: a temporary file beside it, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # unique per writer, threads of one process included
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, path)
