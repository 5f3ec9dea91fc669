"""The portal's SFTP and SCP door, on asyncssh's server: the view of ``service.Session``
served to stock clients (OpenSSH ``sftp`` and ``scp``, rclone, lftp ...).

Rules kept here:

- Sign-in by password (checked by the sign-in defender ``bus.signin``: banned addresses and
  accounts are refused unchecked, failures scored and published) or by a key listed in the
  user's ``ssh_authorized_keys``. A key the client merely offers and we do not know is normal
  negotiation (clients try their keys first), not a failed sign-in.
- Once signed in, the connection is a portal session: refused (disconnected with "too many
  connections", or "no more auth methods" for a disabled account or a spent quota) when the
  access model says so; the session ends with the connection.
- Errors answer with SFTP's codes: a path not seen or refused ``NO_SUCH_FILE``, an operation
  not granted ``PERMISSION_DENIED``, what the view cannot do ``OP_UNSUPPORTED``, anything
  else ``FAILURE`` with its message. Symbolic links are refused.
- An upload whose handle is closed by the session's end (not by the client's ``close``), or
  an SCP upload that ends short of its announced size, was cut midway: it is aborted, never
  registered (see ``_cut_short``).
- The host key (ed25519) is created on first run, 0600, and kept.
- A WRITE request with bytes past its data is served as OpenSSH's sftp-server serves it: the
  extra bytes are ignored. The pkg/sftp library (rclone, Debian's 1.60) sends its first writes
  of a file (4, 8 and 16 KiB) in packets framed for 32 KiB; asyncssh refused them with
  ``BAD_MESSAGE`` and every rclone upload failed (``_lenient_writes``).
- Throughput: a channel takes an 8 MiB window and 256 KiB packets from clients, and a
  connection's packets reach the socket once per loop iteration (``_coalesce_sends``). The
  packets themselves (framing, ciphers, sequence numbers) stay asyncssh's.
"""

from __future__ import annotations

import asyncio
import stat as stat_mode
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from types import FrameType
from typing import TypeVar

import asyncssh
from asyncssh.constants import FXP_WRITE
from asyncssh.packet import SSHPacket

from bus.logging import get_logger
from bus.private import create_private
from bus.signin import Banned, SignInGate
from producers.portal.access import Denied, PortalPath, Reason, normalise
from producers.portal.service import (
    Download,
    Entry,
    Failed,
    NotFound,
    Portal,
    PortalError,
    Refused,
    Session,
    SpoolWriter,
    Unsupported,
    Upload,
)

log = get_logger(__name__)
PROTOCOL = "sftp"
WINDOW = 8 * 1024 * 1024  # the channel's receive window (asyncssh's default: 2 MiB)
MAX_PACKET = 256 * 1024  # the largest SSH packet a client may send us (default: 32 KiB)
T = TypeVar("T")


def _lenient_writes() -> None:
    """Make asyncssh's SFTP server ignore bytes past a WRITE's data, as OpenSSH does.

    asyncssh's server has no hook for this: its WRITE handler (a class table entry) is wrapped
    once, to hand it the packet cut where the data string ends. Every other check stays."""
    handlers = asyncssh.sftp.SFTPServerHandler._packet_handlers
    strict = handlers[FXP_WRITE]
    if strict is None or getattr(strict, "lenient", False):
        return

    async def lenient(handler: asyncssh.sftp.SFTPServerHandler, packet: SSHPacket) -> object:
        body = packet.get_remaining_payload()
        handle_end = 4 + int.from_bytes(body[:4], "big")
        data_at = handle_end + 8  # the offset, a uint64
        end = data_at + 4 + int.from_bytes(body[data_at : data_at + 4], "big")
        if len(body) > end >= data_at + 4:
            packet = SSHPacket(body[:end])
        return await strict(handler, packet)

    lenient.lenient = True  # type: ignore[attr-defined]
    handlers[FXP_WRITE] = lenient


_lenient_writes()


def _coalesce_sends(conn: asyncssh.SSHServerConnection) -> None:
    """Hand the connection's encrypted packets to the socket once per loop iteration, in one
    ``writelines`` (one ``writev``), instead of one ``send`` each.

    asyncssh writes every SSH packet to its transport as it is made, and precedes each with an
    IGNORE packet: a 255 KiB SFTP DATA answer is 16 writes (32 KiB packets, OpenSSH's channel
    maximum), each its own syscall and TCP segment. The packets, their order and their bytes
    are asyncssh's; only when they reach the socket changes (before any ``abort`` asyncssh
    schedules after them: the flush is scheduled first)."""
    transport = conn._transport  # asyncssh has no hook for its socket writes
    if transport is None:
        return
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []

    def flush() -> None:
        parts = pending.copy()
        pending.clear()
        if not transport.is_closing():
            transport.writelines(parts)

    def send(data: bytes) -> None:
        if not pending:
            loop.call_soon(flush)
        pending.append(data)

    conn._send = send  # type: ignore[method-assign]


def ensure_host_key(path: Path) -> asyncssh.SSHKey:
    """The door's host key from ``path``, created there (ed25519, 0600) on first run."""
    if not path.is_file():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="ecpds portal")
        text = key.export_private_key().decode()
        if create_private(path, text):
            log.warning("created the portal's SSH host key", path=str(path))
    return asyncssh.read_private_key(str(path))


class SftpDoor:
    """The SSH server of one portal: sign-in, sessions, and an SFTP server per channel."""

    def __init__(self, portal: Portal, gate: SignInGate) -> None:
        self.portal = portal
        self.gate = gate
        self._server: asyncssh.SSHAcceptor | None = None
        self.connections: set[_Connection] = set()

    async def start(self, host: str, port: int, host_key: asyncssh.SSHKey) -> int:
        """Listen on ``host``:``port`` (0: any free port); the port listened on."""
        self._server = await asyncssh.create_server(
            lambda: _Connection(self),
            host,
            port,
            server_host_keys=[host_key],
            sftp_factory=lambda chan: PortalSftp(chan, self),
            allow_scp=True,
            line_editor=False,
            # no shell, no exec, no forwarding: a session channel only runs SFTP or SCP
            process_factory=None,
            agent_forwarding=False,
            allow_pty=False,
            x11_forwarding=False,
            window=WINDOW,
            max_pktsize=MAX_PACKET,
        )
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self, grace: float = 10.0) -> None:
        """Stop listening, then drop the connections still open (an upload in flight is cut,
        never registered) and wait up to ``grace`` seconds for them to end."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        open_now = [c.conn for c in self.connections if c.conn is not None]
        for conn in open_now:
            conn.close()
        if open_now:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in open_now], timeout=grace
            )

    def knows_key(self, login: str, offered: asyncssh.SSHKey) -> bool:
        user = self.portal.user(login)
        if user is None or not user.active:
            return False
        for line in user.ssh_authorized_keys:
            try:
                known = asyncssh.import_public_key(line)
            except (asyncssh.KeyImportError, ValueError):
                continue
            if known.public_data == offered.public_data:
                return True
        return False


class _Connection(asyncssh.SSHServer):
    """One client connection: its sign-in, then its portal session."""

    def __init__(self, door: SftpDoor) -> None:
        self.door = door
        self.address: str | None = None
        self.session: Session | None = None
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        _coalesce_sends(conn)
        self.door.connections.add(self)
        peer = conn.get_extra_info("peername")
        self.address = str(peer[0]) if peer else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.connections.discard(self)
        if self.session is not None:
            self.session.close()

    def begin_auth(self, username: str) -> bool:
        return True  # every connection signs in

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        outcome = await self.door.gate.check(
            self.address, username, self.door.portal.password_hash(username), password
        )
        if isinstance(outcome, Banned):
            log.info("sftp sign-in banned", login=username, retry_after=outcome.retry_after)
            return False
        return outcome is True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.door.gate.banned(self.address, username) is not None:
            return False
        return self.door.knows_key(username, key)

    def auth_completed(self) -> None:
        assert self.conn is not None
        username = str(self.conn.get_extra_info("username"))
        # admitted at once, before the client can open a channel: the session is there for it
        found = self.door.portal.start_session(username, PROTOCOL, self.address)
        if isinstance(found, Session):
            self.session = found
            return
        code = (
            asyncssh.DISC_TOO_MANY_CONNECTIONS
            if found.reason is Reason.MAX_CONNECTIONS
            else asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE
        )
        self.conn.disconnect(code, found.message)


def _attrs(entry: Entry) -> asyncssh.SFTPAttrs:
    mode = (stat_mode.S_IFDIR | 0o755) if entry.folder else (stat_mode.S_IFREG | 0o644)
    mtime = int(entry.mtime.timestamp()) if entry.mtime is not None else None
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_DIRECTORY if entry.folder else asyncssh.FILEXFER_TYPE_REGULAR,
        size=entry.size,
        permissions=mode,
        uid=0,
        gid=0,
        atime=mtime,
        mtime=mtime,
        nlink=1,
    )


async def _answered(work: Awaitable[T]) -> T:
    """``work``'s result, its portal error as the SFTP error a client understands."""
    try:
        return await work
    except Refused as refused:
        if refused.denied.reason is Reason.NOT_FOUND:
            raise asyncssh.SFTPNoSuchFile(refused.denied.message) from None
        raise asyncssh.SFTPPermissionDenied(refused.denied.message) from None
    except NotFound as error:
        raise asyncssh.SFTPNoSuchFile(str(error)) from None
    except Unsupported as error:
        raise asyncssh.SFTPOpUnsupported(str(error)) from None
    except (Failed, PortalError) as error:
        raise asyncssh.SFTPFailure(str(error)) from None


Handle = Download | Upload | SpoolWriter


def _cut_short() -> bool:
    """Whether asyncssh is closing a handle because the session ended without the client's
    ``CLOSE`` (the connection or the channel went away midway) or an SCP upload ended short of
    its announced size, rather than because the client closed it.

    asyncssh's server API calls ``close`` the same way in every case, so this reads who is
    calling: its SFTP handler's ``_cleanup`` (session end) or ``_process_close`` (the client's
    request), or its SCP sink's ``_recv_file`` with fewer bytes than announced. The one reach
    into asyncssh's workings; ``tests/portal/test_sftp.py`` cuts an upload midway and fails if
    it stops telling the two apart (the cut file would be registered).
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_name
        if name == "_process_close":
            return False
        if name == "_cleanup" and frame.f_code.co_filename.endswith("sftp.py"):
            return True
        if name == "_recv_file":
            offset, size = frame.f_locals.get("offset"), frame.f_locals.get("size")
            return isinstance(offset, int) and isinstance(size, int) and offset < size
        frame = frame.f_back
    return False


class PortalSftp(asyncssh.SFTPServer):
    """The SFTP (and SCP) server of one channel, over the connection's portal session."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], door: SftpDoor) -> None:
        super().__init__(chan)
        owner = chan.get_connection().get_owner()
        assert isinstance(owner, _Connection)
        self._owner = owner

    def exit(self) -> None:
        """The SFTP session ended: report exit status 0 before the channel closes, as OpenSSH's
        sftp-server does. OpenSSH's ``scp`` (SFTP mode, its default since 9.0) exits 1 on a
        channel closed without a status. SCP sessions (``scp -O``) report their own status."""
        chan = self.channel
        if chan.get_subsystem() == "sftp":
            chan.exit(0)  # a no-op on a channel already closing

    @property
    def _session(self) -> Session:
        session = self._owner.session
        if session is None or session.closed:
            raise asyncssh.SFTPFailure("no portal session")
        return session

    async def _path(self, raw: bytes) -> PortalPath:
        session = self._session
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            denied = Denied(Reason.NOT_FOUND, "path refused: not UTF-8", path=repr(raw)[:64])
            await session.refuse(denied)
            raise asyncssh.SFTPNoSuchFile(denied.message) from None
        # a '.' part names the folder it is in, as on any file system (lftp's mirror asks for
        # "<folder>/."): dropped here; '..' and the rest are the view's to refuse
        text = "/".join(part for part in text.split("/") if part != ".") or "/"
        return await _answered(session.resolve(text))

    # -- names ------------------------------------------------------------------------------

    async def realpath(self, path: bytes) -> bytes:
        found = normalise(path.decode("utf-8", "replace"))
        if isinstance(found, Denied):
            await self._session.refuse(found)
            raise asyncssh.SFTPNoSuchFile(found.message)
        return str(found).encode()

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        where = await self._path(path)
        return _attrs(await _answered(self._session.stat(where)))

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return await self.stat(path)

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        where = await self._path(path)
        entries = await _answered(self._session.list(where))
        for entry in entries:
            yield asyncssh.SFTPName(entry.name.encode(), attrs=_attrs(entry))

    # -- files ------------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> Handle:
        where = await self._path(path)
        writing = pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_APPEND)
        if writing and pflags & asyncssh.FXF_READ:
            raise asyncssh.SFTPOpUnsupported("a file is opened to read or to write, not both")
        if pflags & asyncssh.FXF_APPEND:
            raise asyncssh.SFTPOpUnsupported("appending is not supported")
        if writing:
            return await _answered(self._session.open_write(where))
        return await _answered(self._session.open_read(where))

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        if not isinstance(file_obj, Download):
            raise asyncssh.SFTPPermissionDenied("file not opened for reading")
        return await _answered(file_obj.read(offset, size))

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, Upload | SpoolWriter):
            raise asyncssh.SFTPPermissionDenied("file not opened for writing")
        await _answered(file_obj.write(offset, data))
        return len(data)

    async def close(self, file_obj: object) -> None:
        if isinstance(file_obj, Download):
            await file_obj.close()
            return
        if not isinstance(file_obj, Upload | SpoolWriter):
            return
        if _cut_short():
            await file_obj.abort()
            return
        await _answered(file_obj.finish())

    async def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        if isinstance(file_obj, Download):
            item = file_obj.item
            leaf = file_obj.path.parts[-1]
            return _attrs(Entry(leaf, False, item.size, item.stored_at))
        if isinstance(file_obj, Upload | SpoolWriter):
            return _attrs(Entry(file_obj.path.parts[-1], False, file_obj.received))
        raise asyncssh.SFTPFailure("unknown handle")

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        where = await self._path(path)
        await _answered(self._session.touch(where))

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        if isinstance(file_obj, Download | Upload | SpoolWriter):
            await _answered(self._session.touch(file_obj.path))

    # -- folders and names ------------------------------------------------------------------

    async def remove(self, path: bytes) -> None:
        await _answered(self._session.remove(await self._path(path)))

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await _answered(self._session.mkdir(await self._path(path)))

    async def rmdir(self, path: bytes) -> None:
        await _answered(self._session.rmdir(await self._path(path)))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = await self._path(oldpath), await self._path(newpath)
        await _answered(self._session.rename(old, new))

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self.rename(oldpath, newpath)

    def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPOpUnsupported("symbolic links are not supported")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("symbolic links are not supported")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("links are not supported")


__all__ = ["PROTOCOL", "PortalSftp", "SftpDoor", "ensure_host_key"]
