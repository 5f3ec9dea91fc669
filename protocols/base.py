"""The transfer-module contract every protocol implements.

A module is chosen by URL scheme (see ``protocols.registry``) and opens a ``Connection`` for a
``Location``. Connections list, stream bytes in and out, rename, delete, mkdir and size. All
library errors are translated at this boundary into ``TransferError`` subclasses carrying
``retriable``: authentication, permission and missing-file errors are permanent; timeouts,
resets and server-side (5xx) failures are retriable.

Rule kept by every ``put``: unless ``use_tmp`` is False, bytes are written under a temporary
name in the same directory and renamed to the final name only after the last byte is written,
so no reader ever sees a partial file at the final name. The caller may name that temporary
file (``temporary``, e.g. derived from a transfer and attempt so a later attempt can find and
remove what a crashed one left); otherwise ``temporary_name`` picks a unique one.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from bus.errors import EcpdsError

ByteStream = AsyncIterator[bytes]
DEFAULT_CHUNK = 1024 * 1024


class TransferError(EcpdsError):
    """A transfer-module failure; ``retriable`` decides whether the scheduler tries again."""


class AuthenticationFailed(TransferError):
    retriable = False


class PermissionDenied(TransferError):
    retriable = False


class NotFound(TransferError):
    retriable = False


class ProtocolFailure(TransferError):
    """The peer answered something the module cannot work with (permanent)."""

    retriable = False


class ConnectionLost(TransferError):
    retriable = True


class TransferTimeout(TransferError):
    retriable = True


class ServerFailure(TransferError):
    """The peer failed on its side (5xx, 4xx FTP replies): worth another try."""

    retriable = True


class ChecksumMismatch(TransferError):
    """Bytes read back do not match the recorded checksum."""

    retriable = True


@dataclass(frozen=True)
class Location:
    """Where a module connects: scheme, host, port, login, secret, base path and options.

    ``password`` never appears in ``repr`` or ``url``; options are the protocol options an
    operator sets on a host (``usetmp``, ``passive``, ``mkdirs`` ...), without module prefix.
    """

    scheme: str
    host: str = ""
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = "/"
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str, **options: str) -> Location:
        """Parse ``scheme://user:pass@host:port/path?opt=v``; keyword options win."""
        parts = urlsplit(url)
        if not parts.scheme:
            raise ProtocolFailure(f"location {url!r} has no scheme")
        merged = dict(parse_qsl(parts.query))
        merged.update(options)
        return cls(
            scheme=parts.scheme.lower(),
            host=parts.hostname or "",
            port=parts.port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            path=unquote(parts.path) or "/",
            options=merged,
        )

    @property
    def url(self) -> str:
        """The location without its secret, for logs and events."""
        user = f"{quote(self.user)}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"{self.scheme}://{user}{host}{port}{self.path}"

    def option(self, name: str, default: str | None = None) -> str | None:
        return self.options.get(name, default)

    def flag(self, name: str, default: bool) -> bool:
        value = self.options.get(name)
        if value is None:
            return default
        return value.strip().lower() in {"1", "yes", "true", "on"}

    def resolve(self, path: str) -> str:
        """Join ``path`` to the location's base path (absolute paths are kept)."""
        if path.startswith("/"):
            return posixpath.normpath(path)
        return posixpath.normpath(posixpath.join(self.path or "/", path))


@dataclass(frozen=True)
class Entry:
    """One listed item; ``name`` is relative to the listed directory (``a/b.dat`` if recursive)."""

    name: str
    size: int
    mtime: datetime | None
    is_dir: bool = False
    is_symlink: bool = False


@runtime_checkable
@runtime_checkable
class LandedSize(Protocol):
    """A connection that learns a put's final size in the put's own round trips (SFTP)."""

    def landed_size(self, path: str) -> int | None: ...


class Connection(Protocol):
    """An open session to one remote place."""

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]: ...

    def get(self, path: str, *, offset: int = 0) -> ByteStream: ...

    async def put(
        self,
        path: str,
        data: AsyncIterable[bytes],
        *,
        use_tmp: bool | None = None,
        mkdirs: bool | None = None,
        offset: int = 0,
        temporary: str | None = None,
    ) -> int: ...

    async def rename(self, source: str, target: str) -> None: ...

    async def delete(self, path: str) -> None: ...

    async def mkdir(self, path: str, *, parents: bool = True) -> None: ...

    async def size(self, path: str) -> int: ...

    async def close(self) -> None: ...


class Module(Protocol):
    """A protocol implementation: opens connections for locations of its schemes."""

    async def connect(self, location: Location) -> Connection: ...


def temporary_name(path: str, location: Location | None = None, token: str | None = None) -> str:
    """The name a put writes to before its final rename (same directory, hidden).

    Honours the ``prefix``/``suffix`` options operators know from OpenECPDS (``ftp.prefix``,
    ``sftp.suffix``); the default is ``.<name>.<token>.tmp``, where ``token`` says whose file it
    is (a mover passes one derived from the transfer and attempt) and is random when not given.
    """
    directory, name = posixpath.split(path)
    prefix = (location.option("prefix") if location else None) or "."
    suffix = (location.option("suffix") if location else None) or (
        f".{token or secrets.token_hex(3)}.tmp"
    )
    return posixpath.join(directory, f"{prefix}{name}{suffix}")


def select(entries: list[Entry], pattern: str | None, regex: str | None) -> list[Entry]:
    """Filter entries by glob ``pattern`` and/or ``regex`` on their base name (dirs kept)."""
    compiled = re.compile(regex) if regex else None

    def keep(entry: Entry) -> bool:
        if entry.is_dir:
            return True
        base = posixpath.basename(entry.name)
        if pattern and not fnmatch.fnmatchcase(base, pattern):
            return False
        return not (compiled and not compiled.search(base))

    return [e for e in entries if keep(e)]


async def read_all(stream: AsyncIterable[bytes]) -> bytes:
    """Collect a stream into bytes (tests and small files only)."""
    return b"".join([chunk async for chunk in stream])


async def from_bytes(data: bytes, chunk: int = DEFAULT_CHUNK) -> ByteStream:
    """An async byte stream over an in-memory buffer."""
    view = memoryview(data)
    for start in range(0, len(view), chunk):
        yield bytes(view[start : start + chunk])
