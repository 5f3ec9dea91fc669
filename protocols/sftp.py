"""SFTP transfer module (asyncssh).

Options (OpenECPDS ``sftp.*`` names, without prefix): ``password`` (or the location's),
``privateKey`` (PEM text) / ``privateKeyFile`` with ``passPhrase``; host key pinning with
``fingerPrint`` (``SHA256:...``) or ``knownHosts`` (an OpenSSH known_hosts file); ``cipher``
(comma list, overrides the AES-GCM-first preference); ``usetmp`` (yes), ``mkdirs`` (yes),
``chmod`` (octal, applied after put), ``listRecursive`` (no), ``listMaxThreads`` (10),
``blockSize`` (256 KiB, capped by the server's limits), ``maxRequests`` (128), ``window``
(8 MiB SSH receive window) and ``maxPacketSize`` (256 KiB, the largest packet the server may
send), ``connectTimeOut`` (30s), ``serverAliveInterval`` (30s) and ``serverAliveCountMax`` (3).

Rules kept:

- Host keys: with ``fingerPrint`` or ``knownHosts`` (the operator's pin) an unknown key aborts
  the handshake before any credential is sent. With neither, the stage's options say what was
  learnt (``bus.config.hostkeys``): ``hostKeyPinned`` (the learnt or trusted fingerprint) makes
  another key abort the handshake as ``HostKeyChanged``, reported to the watchers' ``refused``;
  without it the key is accepted and, once the connection is up, reported to the watchers'
  ``seen`` for ``hostKeyFor`` (the host id), which records it. No pin and no host id (a
  location made by hand) accepts the key silently. The module never publishes: a stage
  registers a ``HostKeyWatcher`` (``watch_host_keys``) and publishes itself.
- AES-GCM is preferred because asyncssh's chacha20 default costs ~20% throughput; the client's
  order wins the negotiation, so GCM is used whenever the server offers it.
- Reads and writes are pipelined: up to ``maxRequests`` requests of ``blockSize`` in flight, with
  bytes yielded in order (memory bounded by blockSize x maxRequests).
- One connection serves many concurrent operations (each opens its own handle).
- The SSH transport is asyncssh's own, through its public API: packets, ciphers, sequence
  numbers, channel windows and rekeying are never touched here, so asyncssh can be upgraded
  like any other dependency (a hand-kept AES-GCM record layer fails silently on a nonce slip;
  the one that was here halved a put's CPU but gained nothing reliable on gets). The one
  private call is the pipelined READDIR of ``_names``: SFTP requests, not the record layer.
- A put with ``offset`` > 0 resumes: it writes into the final name from that offset, with no
  temporary name. With mkdirs, a put opens first and creates parents only when they are missing.
- Puts go to a temporary name and are renamed with ``posix-rename@openssh.com`` (overwrites)
  when the server offers it, else remove-then-rename.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import stat
import struct
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Sequence,
)
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import asyncssh

from bus.config import hostkeys
from protocols.base import (
    AuthenticationFailed,
    ByteStream,
    ConnectionLost,
    Entry,
    Location,
    NotFound,
    PermissionDenied,
    ProtocolFailure,
    ServerFailure,
    TransferError,
    TransferTimeout,
    put_target,
    select,
)

PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
DEFAULT_BLOCK = 256 * 1024
# final names whose landed size is kept for a check (a put nobody checks is dropped first)
LANDED_KEPT = 64
DEFAULT_REQUESTS = 128
# The receive window and the largest packet the server may send us (asyncssh: 2 MiB, 32 KiB).
# OpenSSH's server fills bigger packets when the window lets it run ahead (40-64 KiB on
# average here instead of 32 KiB), so a get decrypts and parses fewer; and 128 requests x
# 256 KiB in flight would stall on a 2 MiB window.
DEFAULT_WINDOW = 8 * 1024 * 1024
DEFAULT_MAX_PACKET = 256 * 1024
READDIR_WINDOW = 16  # READDIR requests in flight while listing one directory
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


# ``list`` is a method name below, so annotations there use this alias.
Entries = list[Entry]
Names = list[tuple[bytes, int | None, int | None, int | None]]  # name, size, mode, mtime
_FXP_READDIR, _FXP_NAME = 12, 104  # SFTP packet types (draft-ietf-secsh-filexfer-02)
_U32, _U64 = struct.Struct(">I").unpack_from, struct.Struct(">Q").unpack_from


class HostKeyChanged(TransferError):
    """The host offered another key than the one learnt or trusted for it: the connection is
    refused before any credential is sent, until an operator trusts the new key (``ecpds host
    trust-key``). The host's problem, not retriable."""

    retriable = False

    def __init__(self, message: str, *, key_type: str, fingerprint: str, expected: str) -> None:
        super().__init__(message)
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.expected = expected


class HostKeyWatcher(Protocol):
    """Told of the keys the module sees for a location carrying ``hostKeyFor``."""

    def seen(self, host_id: str, key_type: str, fingerprint: str) -> None: ...

    def refused(self, host_id: str, key_type: str, fingerprint: str, expected: str) -> None: ...


_watchers: list[HostKeyWatcher] = []


def watch_host_keys(watcher: HostKeyWatcher) -> Callable[[], None]:
    """Report host keys to ``watcher`` from now on; returns the call that stops it."""
    _watchers.append(watcher)
    return lambda: _watchers.remove(watcher) if watcher in _watchers else None


def _seconds(value: str | None, default: float) -> float:
    if not value:
        return default
    match = _DURATION.match(value)
    if match is None:
        raise ProtocolFailure(f"bad duration {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _bytes(value: str | None, default: int) -> int:
    if not value:
        return default
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    scale = {"k": 1024, "m": 1024**2}.get(text[-1:], 1)
    try:
        return int(float(text.rstrip("km")) * scale)
    except ValueError:
        raise ProtocolFailure(f"bad byte size {value!r}") from None


def translate(exc: BaseException, what: str) -> TransferError:
    """Map an asyncssh/OS error to the project's error (permanent or retriable)."""
    if isinstance(exc, TransferError):
        return exc
    message = f"{what}: {exc}"
    if isinstance(
        exc, asyncssh.PermissionDenied | asyncssh.KeyImportError | asyncssh.KeyEncryptionError
    ):
        return AuthenticationFailed(message)
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return AuthenticationFailed(f"{what}: host key not trusted: {exc}")
    if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        return NotFound(message)
    if isinstance(exc, asyncssh.SFTPPermissionDenied | asyncssh.SFTPWriteProtect):
        return PermissionDenied(message)
    if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
        return ConnectionLost(message)
    if isinstance(exc, asyncssh.SFTPOpUnsupported | asyncssh.SFTPBadMessage):
        return ProtocolFailure(message)
    if isinstance(exc, asyncssh.SFTPError):
        # SSH_FX_FAILURE covers disk full, rename clashes, transient server trouble.
        return ServerFailure(message)
    if isinstance(exc, asyncssh.KeyExchangeFailed | asyncssh.ProtocolNotSupported):
        return ProtocolFailure(message)
    if isinstance(exc, TimeoutError):
        return TransferTimeout(message)
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError | OSError):
        return ConnectionLost(message)
    return ProtocolFailure(message)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except TransferError:
        raise
    except (
        asyncssh.Error,
        asyncssh.KeyImportError,
        asyncssh.KeyEncryptionError,
        OSError,
        TimeoutError,
    ) as exc:
        raise translate(exc, what) from exc


class _Client(asyncssh.SSHClient):
    """Checks the server host key against the operator's pin, else the learnt one, and keeps
    what it saw (key type and SHA256 fingerprint) for ``connect`` to report."""

    def __init__(self, location: Location, fingerprint: str | None, pinned: bool) -> None:
        self.fingerprint = fingerprint  # the operator's pin (fingerPrint)
        self.pinned = pinned  # a knownHosts file was given: keys outside it are refused
        self.learnt = location.option(hostkeys.PIN_OPTION) if not (fingerprint or pinned) else None
        self.seen: tuple[str, str] | None = None  # (key type, SHA256 fingerprint)
        self.changed = False  # refused: not the learnt key

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        seen = key.get_fingerprint("sha256")
        self.seen = (key.get_algorithm(), seen)
        if self.fingerprint is None:
            if self.pinned:
                return False
            if self.learnt:
                self.changed = not hostkeys.same_fingerprint(seen, self.learnt)
                return not self.changed
            return True  # nothing pinned yet: ``connect`` reports it to be learnt
        wanted = self.fingerprint.strip()
        if wanted.upper().startswith("MD5:"):  # hex: case does not matter
            return key.get_fingerprint("md5").lower() == wanted.lower()
        return hostkeys.same_fingerprint(seen, wanted)


def _report(client: _Client, location: Location) -> None:
    """Tell the watchers what ``client`` saw for a location a stage labelled with its host."""
    host_id = location.option(hostkeys.HOST_OPTION)
    if not host_id or client.seen is None:
        return
    key_type, fingerprint = client.seen
    for watcher in list(_watchers):
        if client.changed:
            watcher.refused(host_id, key_type, fingerprint, client.learnt or "")
        elif not client.learnt and not client.fingerprint and not client.pinned:
            watcher.seen(host_id, key_type, fingerprint)


def _client_keys(location: Location) -> list[asyncssh.SSHKey]:
    passphrase = location.option("passPhrase")
    text = location.option("privateKey")
    if text:
        return [asyncssh.import_private_key(text, passphrase)]
    path = location.option("privateKeyFile")
    if path:
        return [asyncssh.read_private_key(path, passphrase)]
    return []


def _ciphers(location: Location) -> Sequence[str]:
    chosen = location.option("cipher")
    if chosen:
        return [c.strip() for c in chosen.split(",") if c.strip()]
    defaults = [alg.decode() for alg in asyncssh.encryption.get_default_encryption_algs()]
    return [*PREFERRED_CIPHERS, *(a for a in defaults if a not in PREFERRED_CIPHERS)]


class SftpModule:
    """Opens SFTP connections for ``sftp://`` locations."""

    async def connect(self, location: Location) -> SftpConnection:
        known_hosts = location.option("knownHosts") or None
        fingerprint = location.option("fingerPrint") or None
        timeout = _seconds(location.option("connectTimeOut"), 30.0)
        client = _Client(location, fingerprint, known_hosts is not None)
        try:
            connection = await self._connect(location, client, known_hosts, timeout)
        except TransferError as error:
            if not client.changed or client.seen is None:
                raise
            key_type, seen = client.seen
            _report(client, location)
            raise HostKeyChanged(
                f"connect {location.url}: the host offered key {seen} ({key_type}), not the"
                f" pinned {client.learnt}; accept it with: ecpds host trust-key"
                f" {location.option(hostkeys.HOST_OPTION) or '<host>'} --fingerprint {seen}",
                key_type=key_type,
                fingerprint=seen,
                expected=client.learnt or "",
            ) from error
        _report(client, location)
        return connection

    async def _connect(
        self, location: Location, client: _Client, known_hosts: str | None, timeout: float
    ) -> SftpConnection:
        with _errors(f"connect {location.url}"):
            keys = _client_keys(location)
            conn, _ = await asyncio.wait_for(
                asyncssh.create_connection(
                    lambda: client,
                    location.host or "127.0.0.1",
                    port=location.port or 22,
                    username=location.user or "anonymous",
                    password=location.option("password", location.password),
                    client_keys=keys,
                    passphrase=None,
                    agent_path=None,
                    # An empty trusted list sends every key to _Client; a file pins it.
                    known_hosts=known_hosts if known_hosts else ([], [], []),
                    encryption_algs=_ciphers(location),
                    preferred_auth=("publickey", "password", "keyboard-interactive")
                    if keys
                    else ("password", "keyboard-interactive"),
                    connect_timeout=timeout,
                    # A silent peer (hung, or gone without a RST) ends as ConnectionLost.
                    keepalive_interval=_seconds(location.option("serverAliveInterval"), 30.0),
                    keepalive_count_max=int(location.option("serverAliveCountMax") or 3),
                    config=None,  # never read ~/.ssh/config: the location says it all
                    window=_bytes(location.option("window"), DEFAULT_WINDOW),
                    max_pktsize=_bytes(location.option("maxPacketSize"), DEFAULT_MAX_PACKET),
                ),
                timeout,
            )
            try:
                sftp = await conn.start_sftp_client()
            except BaseException:
                conn.close()
                raise
        return SftpConnection(location, conn, sftp)


class SftpConnection:
    """One SSH connection with one SFTP session; safe for many concurrent operations."""

    # requests carry ids and a cancelled one's answer is dropped: a pool may lend it to
    # several callers at once (``ConnectionPool(share=...)``)
    multiplexed = True

    def __init__(
        self,
        location: Location,
        conn: asyncssh.SSHClientConnection,
        sftp: asyncssh.SFTPClient,
    ) -> None:
        self.location = location
        self._conn = conn
        self._sftp = sftp
        limits = sftp.limits
        block = _bytes(location.option("blockSize"), DEFAULT_BLOCK)
        self._read_block = max(4096, min(block, limits.max_read_len or block))
        self._write_block = max(4096, min(block, limits.max_write_len or block))
        self._requests = int(location.option("maxRequests", str(DEFAULT_REQUESTS)) or 128)
        # size of each final name as stat'ed in the round trip of its rename (``landed_size``)
        self._landed: dict[str, int] = {}

    @property
    def broken(self) -> bool:
        """True once the SSH connection is gone (the pool then never lends it again)."""
        return self._conn.is_closed()

    @property
    def cipher(self) -> str:
        return str(self._conn.get_extra_info("send_cipher"))

    async def list(
        self,
        path: str,
        *,
        recursive: bool = False,
        pattern: str | None = None,
        regex: str | None = None,
    ) -> list[Entry]:
        root = self.location.resolve(path)
        deep = recursive or self.location.flag("listRecursive", False)
        limit = asyncio.Semaphore(int(self.location.option("listMaxThreads", "10") or 10))
        entries: list[Entry] = []
        level = [""]
        with _errors(f"list {root}"):
            while level:
                results = await _all([self._read_dir(root, rel, limit) for rel in level])
                level = []
                for found in results:
                    for entry in found:
                        entries.append(entry)
                        if deep and entry.is_dir and not entry.is_symlink:
                            level.append(entry.name)
        return select(entries, pattern, regex)

    async def _read_dir(self, root: str, rel: str, limit: asyncio.Semaphore) -> Entries:
        async with limit:
            names = await self._names(posixpath.join(root, rel) if rel else root)
        found = []
        decode = self._sftp.decode
        for raw, size, mode, mtime in names:
            name = cast(str, decode(raw))
            if name in {".", ".."}:
                continue
            link = stat.S_ISLNK(mode or 0)
            if link:
                with suppress(asyncssh.SFTPError):
                    attrs = await self._sftp.stat(posixpath.join(root, rel, name))
                    size, mode = attrs.size, attrs.permissions
                    mtime = int(attrs.mtime) if attrs.mtime is not None else None
            found.append(
                Entry(
                    name=posixpath.join(rel, name) if rel else name,
                    size=size or 0,
                    mtime=datetime.fromtimestamp(mtime, UTC) if mtime is not None else None,
                    is_dir=stat.S_ISDIR(mode or 0),
                    is_symlink=link,
                )
            )
        return found

    async def _names(self, path: str) -> Names:
        """Every name of a directory, READDIR requests pipelined.

        asyncssh's ``readdir`` waits for each page (OpenSSH's server sends 100 names a page)
        before asking for the next, so a 100,000-entry directory costs 1,000 round trips; here
        up to ``READDIR_WINDOW`` requests are in flight on the handle (the window doubles from
        one, so a small directory costs one extra request). Pages may be taken in any order:
        each name is in exactly one page, and the caller does not rely on the server's order.
        Requests sent past the end are answered EOF and awaited, never abandoned."""
        handler = self._sftp._handler  # private: the page-level API asyncssh hides
        handle = await handler.opendir(self._sftp.compose_path(path))
        names: Names = []
        window: deque[asyncio.Future[tuple[Names, bool]]] = deque()
        size, ended = 1, False
        try:
            while not ended:
                while len(window) < size:
                    window.append(asyncio.ensure_future(self._page(handler, handle)))
                try:
                    page, at_end = await window.popleft()
                except asyncssh.SFTPEOFError:
                    break
                names.extend(page)
                ended = at_end or not page
                size = min(size * 2, READDIR_WINDOW)
        finally:
            if window:
                await asyncio.gather(*window, return_exceptions=True)
            with suppress(asyncssh.SFTPError):
                await handler.close(handle)
        return names

    async def _page(self, handler: Any, handle: bytes) -> tuple[Names, bool]:
        """One READDIR page as (name, size, permissions, mtime) tuples, and whether it ends.

        asyncssh decodes each name into two ~30-field records (about two thirds of the CPU of
        a large listing); for SFTP v3 (OpenSSH) the reply is parsed here straight from its
        bytes, other versions go through asyncssh."""
        if handler._version != 3:
            page, at_end = await handler.readdir(handle)
            return [
                (n.filename, n.attrs.size, n.attrs.permissions, n.attrs.mtime) for n in page
            ], at_end
        waiter: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        handler._send_request(_FXP_READDIR, (asyncssh.packet.String(handle),), waiter)
        kind, packet = await waiter
        if kind != _FXP_NAME:
            handler._process_status(packet)  # raises: SFTPEOFError at the end, or the error
            raise asyncssh.SFTPBadMessage(f"unexpected READDIR reply type {kind}")
        return _parse_names(packet.get_remaining_payload()), False

    async def get(self, path: str, *, offset: int = 0) -> ByteStream:
        target = self.location.resolve(path)
        with _errors(f"get {target}"):
            file = await self._sftp.open(target, "rb", block_size=0)
        try:
            with _errors(f"get {target}"):
                size = (await file.stat()).size or 0
                async for chunk in self._pipelined_read(file, offset, size):
                    yield chunk
        finally:
            with suppress(asyncssh.Error, OSError):
                await file.close()

    async def _pipelined_read(
        self, file: asyncssh.SFTPClientFile, offset: int, size: int
    ) -> AsyncIterator[bytes]:
        """Read [offset, size) with a window of requests, yielding blocks in order.

        ``size`` is the size seen by fstat when the get started: bytes appended later are not
        part of this get (as with ``size()``), which spares a round trip to probe for EOF.
        """
        pending: deque[tuple[int, int, asyncio.Task[bytes]]] = deque()
        position = offset
        try:
            while True:
                while position < size and len(pending) < self._requests:
                    length = min(self._read_block, size - position)
                    pending.append(
                        (position, length, asyncio.ensure_future(file.read(length, position)))
                    )
                    position += length
                if not pending:
                    break
                start, length, task = pending.popleft()
                data: bytes = await task
                while len(data) < length:
                    # A short read (server capped it): fetch the rest in place.
                    more: bytes = await file.read(length - len(data), start + len(data))
                    if not more:
                        # Never end quietly short: the reader would take a truncated file.
                        raise ServerFailure(f"file shrank to {start + len(data)} during get")
                    data += more
                yield data
        finally:
            for _, _, task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*(t for _, _, t in pending), return_exceptions=True)

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
        target = self.location.resolve(path)
        tmp = use_tmp if use_tmp is not None else self.location.flag("usetmp", True)
        # Resuming continues the bytes already at the final name: no temporary file.
        write_to = (
            put_target(target, self.location, temporary, self.location.resolve)
            if tmp and offset == 0
            else target
        )
        parents = mkdirs if mkdirs is not None else self.location.flag("mkdirs", True)
        written = 0
        try:
            with _errors(f"put {target}"):
                async with await self._open_for_put(write_to, offset, parents) as file:
                    written = await self._pipelined_write(file, data, offset, close=True)
                chmod = self.location.option("chmod")
                if chmod:
                    await self._sftp.chmod(write_to, int(chmod, 8))
                if write_to != target:
                    await self._land(write_to, target)
        except BaseException:
            if write_to != target:
                with suppress(asyncssh.Error, OSError):
                    await asyncio.shield(self._sftp.remove(write_to))
            raise
        return written

    async def _open_for_put(self, path: str, offset: int, parents: bool) -> asyncssh.SFTPClientFile:
        # Open first and create parents only when missing: a put into an existing
        # directory (the usual case) costs no extra round trips.
        mode = "r+b" if offset else "wb"
        try:
            return await self._sftp.open(path, mode, block_size=0)
        except asyncssh.SFTPNoSuchFile:
            if not parents:
                raise
        await self._sftp.makedirs(posixpath.dirname(path), exist_ok=True)
        return await self._sftp.open(path, mode, block_size=0)

    async def _pipelined_write(
        self,
        file: asyncssh.SFTPClientFile,
        data: AsyncIterable[bytes],
        offset: int,
        *,
        close: bool = False,
    ) -> int:
        """Write ``data`` at ``offset`` with up to ``self._requests`` writes in flight; with
        ``close``, the close request follows the last write without waiting for the writes'
        answers (a round trip less per file: the server handles one file's requests in order,
        and a failed write still fails the put, whose temporary file is then removed)."""
        window = asyncio.Semaphore(self._requests)
        pending: set[asyncio.Task[int]] = set()
        failures: list[BaseException] = []

        def done(task: asyncio.Task[int]) -> None:
            pending.discard(task)
            window.release()
            if not task.cancelled() and task.exception() is not None:
                failures.append(task.exception())  # type: ignore[arg-type]

        position = offset
        try:
            async for chunk in data:
                # Views of immutable bytes spare a copy; anything else may be reused: slice.
                whole = memoryview(chunk) if type(chunk) is bytes else chunk
                for start in range(0, len(chunk), self._write_block):
                    if failures:
                        raise failures[0]
                    piece = whole[start : start + self._write_block]
                    await window.acquire()
                    # asyncssh joins the data to its length prefix: a view is copied once there
                    task = asyncio.ensure_future(file.write(cast(bytes, piece), position))
                    pending.add(task)
                    task.add_done_callback(done)
                    position += len(piece)
            closing = asyncio.ensure_future(file.close()) if close else None
            if pending:
                await asyncio.wait(set(pending))
            if closing is not None:
                await asyncio.wait({closing})
            if failures:
                raise failures[0]
            if closing is not None:
                closing.result()
        finally:
            for task in list(pending):
                task.cancel()
        return position - offset

    async def _land(self, source: str, target: str) -> None:
        """Rename the temporary file to ``target`` and stat ``target`` in the same round trip.

        The stat request follows the rename without waiting for its answer (tasks run in the
        order they are made, so the rename is sent first; the server answers one session's
        requests in order). Its size is kept for ``landed_size``: the delivery's check then
        costs no round trip of its own. A stat that fails, or a rename that needed the
        remove-then-rename fallback, keeps nothing (the check then stats as before).
        """
        self._landed.pop(target, None)
        renaming = asyncio.ensure_future(self._sftp.posix_rename(source, target))
        stat = asyncio.ensure_future(self._sftp.stat(target))
        try:
            await renaming
        except asyncssh.SFTPOpUnsupported:
            stat.cancel()
            with suppress(asyncssh.SFTPNoSuchFile):
                await self._sftp.remove(target)
            await self._sftp.rename(source, target)
            return
        except BaseException:
            stat.cancel()
            raise
        finally:
            with suppress(BaseException):
                await stat  # never left pending (its answer is read in every case)
        size = None if stat.cancelled() or stat.exception() else stat.result().size
        if size is not None:
            if len(self._landed) >= LANDED_KEPT:  # puts nobody checked: keep the newest
                self._landed.pop(next(iter(self._landed)))
            self._landed[target] = size

    def landed_size(self, path: str) -> int | None:
        """The size of ``path`` (absolute) as stat'ed right after the last put renamed to it,
        once (then forgotten); None when there is none."""
        return self._landed.pop(path, None)

    async def _replace(self, source: str, target: str) -> None:
        try:
            await self._sftp.posix_rename(source, target)
        except asyncssh.SFTPOpUnsupported:
            with suppress(asyncssh.SFTPNoSuchFile):
                await self._sftp.remove(target)
            await self._sftp.rename(source, target)

    async def rename(self, source: str, target: str) -> None:
        old, new = self.location.resolve(source), self.location.resolve(target)
        with _errors(f"rename {old} -> {new}"):
            await self._replace(old, new)

    async def delete(self, path: str) -> None:
        target = self.location.resolve(path)
        with _errors(f"delete {target}"):
            if await self._sftp.isdir(target):
                await self._sftp.rmdir(target)
            else:
                await self._sftp.remove(target)

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        target = self.location.resolve(path)
        with _errors(f"mkdir {target}"):
            if parents:
                await self._sftp.makedirs(target, exist_ok=True)
            else:
                await self._sftp.mkdir(target)

    async def size(self, path: str) -> int:
        target = self.location.resolve(path)
        with _errors(f"size {target}"):
            return (await self._sftp.stat(target)).size or 0

    async def close(self) -> None:
        self._sftp.exit()
        self._conn.close()
        with suppress(asyncssh.Error, OSError):
            await self._conn.wait_closed()


async def _all(calls: list[Coroutine[Any, Any, list[Entry]]]) -> list[list[Entry]]:
    """Run listing calls together; the first failure cancels the rest and is raised as is."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _parse_names(data: bytes) -> Names:
    """The names of an SFTP v3 NAME reply body: count, then per name its file name, long name
    (unused) and ATTRS (flags, then size, uid/gid, permissions, atime/mtime, extensions as
    the flags say). A truncated or overlong reply is a ProtocolFailure."""
    try:
        (count,) = _U32(data, 0)
        at, names = 4, []
        for _ in range(count):
            (length,) = _U32(data, at)
            name = data[at + 4 : at + 4 + length]
            at += 4 + length
            (length,) = _U32(data, at)
            (flags,) = _U32(data, at + 4 + length)
            at += 8 + length
            size = mode = mtime = None
            if flags & 0x1:
                (size,) = _U64(data, at)
                at += 8
            if flags & 0x2:
                at += 8  # uid, gid
            if flags & 0x4:
                (mode,) = _U32(data, at)
                at += 4
            if flags & 0x8:
                (mtime,) = _U32(data, at + 4)  # after atime
                at += 8
            if flags & 0x80000000:
                (pairs,) = _U32(data, at)
                at += 4
                for _ in range(2 * pairs):
                    (length,) = _U32(data, at)
                    at += 4 + length
            names.append((name, size, mode, mtime))
    except struct.error as error:
        raise ProtocolFailure(f"malformed SFTP NAME reply: {error}") from error
    if at != len(data):
        raise ProtocolFailure("malformed SFTP NAME reply: trailing bytes")
    return names
