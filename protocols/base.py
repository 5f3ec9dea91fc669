"""The transfer-module contract every protocol implements.

A module is chosen by URL scheme (see ``protocols.registry``) and opens a ``Connection`` for a
``Location``. Connections list, stream bytes in and out, rename, delete, mkdir and size. All
library errors are translated at this boundary into ``TransferError`` subclasses carrying
``retriable``: authentication, permission and missing-file errors are permanent; timeouts,
resets and server-side (5xx) failures are retriable.

Whose problem each error is, is written once, in ``FAULTS`` (read by the movers when they
report a failure, whose ``TransferFailed`` carries it to the scheduler): the host's (it counts
against the host's retries, fails over to the next host, and after the destination's cycles
holds the destination), the file's own (it ends the transfer), or transient (requeued later,
nobody's count). Only the file's own problem ends a transfer: a wrong password, a permission
or a missing directory is fixed at the host, and the queue waits for it.

Rule kept by every ``put``: unless ``use_tmp`` is False, bytes are written under a temporary
name in the same directory and renamed to the final name only after the last byte is written,
so no reader ever sees a partial file at the final name. The caller may name that temporary
file (``temporary``, e.g. derived from a transfer and attempt so a later attempt can find and
remove what a crashed one left); otherwise ``temporary_name`` picks a unique one.

Paths are read as FTP and SFTP clients read them: an absolute path (``/data/in``) is absolute
on the remote host; a relative one (``inbox/sftp``) is under the location's base path, and a
relative base (``.``, the login directory, which a host whose address has no base path gets) is
left relative, so the server resolves it from the login directory. ``Location.resolve`` is the
one place that joins them; modules whose remote has no login directory (file, HTTP, memory)
anchor what is still relative at ``/`` with ``Location.rooted``, and the object stores read it
as a key under the bucket.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple, Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from bus.errors import EcpdsError
from bus.events.transfers import Fault

ByteStream = AsyncIterator[bytes]
DEFAULT_CHUNK = 1024 * 1024
# The base path of a location whose relative paths the server resolves from the login directory.
LOGIN_DIRECTORY = "."


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


class Whose(NamedTuple):
    """One row of ``FAULTS``: whose problem an error is, and its class's ``retriable``."""

    fault: Fault
    retriable: bool


HOST, FILE, TRANSIENT = Fault.HOST, Fault.FILE, Fault.TRANSIENT

FAULTS: Mapping[str, Whose] = MappingProxyType(
    {
        # -- the host's: fixed at the host or in its configuration, never by resending --------
        "AuthenticationFailed": Whose(HOST, False),  # wrong password or key, host key not trusted
        # the host offered another SSH host key than the one learnt or trusted (``sftp``)
        "HostKeyChanged": Whose(HOST, False),
        "PermissionDenied": Whose(HOST, False),  # the login may not write there
        "NotFound": Whose(HOST, False),  # the Host Directory (or a parent) is missing
        "ProtocolFailure": Whose(HOST, False),  # the peer speaks something the module cannot
        "ConnectionLost": Whose(HOST, True),  # refused, reset, unreachable
        "TransferTimeout": Whose(HOST, True),
        "ServerFailure": Whose(HOST, True),  # 5xx, 4xx FTP replies, SSH_FX_FAILURE, disk full
        "ChecksumMismatch": Whose(HOST, True),  # the remote kept other bytes than were sent
        # the host's definition: a Host Directory template, its credentials, address or options
        "ConfigurationError": Whose(HOST, False),
        # an OS error no module translated, on the way to the host
        "ConnectionError": Whose(HOST, True),
        "TimeoutError": Whose(HOST, True),
        # -- the file's own: at the store (``store.errors``), the same on every host -----------
        "ObjectNotFound": Whose(FILE, False),  # missing in the store and every replica
        "CodecError": Whose(FILE, False),  # its stored compressed stream cannot be decoded
        # -- transient: neither the host's nor the file's for good ---------------------------------
        # a copy failed its checksum: a replica, or a repaired copy, may serve the next read
        "ObjectCorrupt": Whose(TRANSIENT, True),
        # a regional replica has no copy yet: pre-staging may bring it (``store.staged``)
        "NotStaged": Whose(TRANSIENT, True),
        "StoreError": Whose(TRANSIENT, False),  # the store could not be read just now
        "TransientError": Whose(TRANSIENT, True),
    }
)
"""Whose problem each error the movers can meet is, by class name: the name a
``TransferFailed`` carries as ``error_class`` (so failures logged before it carried a fault are
classed the same way), and the store's errors are named without importing ``store`` here
(``tests/protocols/test_faults.py`` checks that every row names a real class, with its
``retriable``, and that every error class of the modules and the store has a row). A class
not listed takes the row of its nearest
listed base class; one with none is ``TRANSIENT``: an unknown error is not the file's, so it
never ends a transfer (the destination's max start and max requeue bound its retries)."""


def fault_of(error: BaseException) -> Fault:
    """Whose problem ``error`` is (see ``FAULTS``)."""
    for cls in type(error).__mro__:
        row = FAULTS.get(cls.__name__)
        if row is not None:
            return row.fault
    return TRANSIENT


def reported_fault(fault: Fault | None, error_class: str, retriable: bool) -> Fault:
    """Whose problem a reported failure was: the ``fault`` it carries, or for a failure from a
    mover older than that field, its class's row, else HOST when retriable and FILE when not
    (what such a failure meant to the scheduler then: counted against the host, or stopped)."""
    if fault is not None:
        return fault
    row = FAULTS.get(error_class)
    if row is not None:
        return row.fault
    return HOST if retriable else FILE


@dataclass(frozen=True)
class Location:
    """Where a module connects: scheme, host, port, login, secret, base path and options.

    ``password`` never appears in ``repr`` or ``url``; options are the protocol options an
    operator sets on a host (``usetmp``, ``passive``, ``mkdirs`` ...), without module prefix.
    ``path`` is the base path: absolute, or relative to the login directory (``.`` is the login
    directory itself; empty means the same).
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
        return f"{self.scheme}://{user}{host}{port}{_url_path(self.path)}"

    def option(self, name: str, default: str | None = None) -> str | None:
        return self.options.get(name, default)

    def flag(self, name: str, default: bool) -> bool:
        value = self.options.get(name)
        if value is None:
            return default
        return value.strip().lower() in {"1", "yes", "true", "on"}

    def resolve(self, path: str) -> str:
        """``path`` joined to the base path: an absolute path is kept, a relative one is under
        the base, and stays relative (to the login directory) when the base is relative."""
        return posixpath.normpath(posixpath.join(self.path or LOGIN_DIRECTORY, path))

    def rooted(self, path: str) -> str:
        """``resolve``, for a remote without a login directory: what is relative is under ``/``."""
        return posixpath.normpath(posixpath.join("/", self.resolve(path)))


def _url_path(path: str) -> str:
    """A base path as a URL path: a relative one is under ``/~`` (home), as SFTP URLs write it."""
    if path.startswith("/"):
        return path
    relative = posixpath.normpath(path or LOGIN_DIRECTORY)
    return "/~" if relative == LOGIN_DIRECTORY else f"/~/{relative}"


@dataclass(frozen=True)
class Entry:
    """One listed item; ``name`` is relative to the listed directory (``a/b.dat`` if recursive)."""

    name: str
    size: int
    mtime: datetime | None
    is_dir: bool = False
    is_symlink: bool = False
    # False: the listing rounds ``mtime`` down (FTP ``LIST``: to the minute, the day for old
    # files); a connection with an ``mtime(path)`` method (FTP ``MDTM``) tells the exact one
    exact_time: bool = True


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


def put_target(
    final: str, location: Location, temporary: str | None, anchor: Callable[[str], str]
) -> str:
    """Where a put writes before its rename to ``final``: the caller's ``temporary`` read the
    way the module reads ``final`` (``anchor``: ``Location.resolve``, ``rooted``, its own), else
    a ``temporary_name`` beside it."""
    return anchor(temporary) if temporary else temporary_name(final, location)


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
