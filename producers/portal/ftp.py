"""The portal's FTP door, on aioftp's server: the view of ``service.Session`` served to stock
FTP clients (lftp, curl, Python's ftplib, FileZilla ...), in the clear, with explicit TLS
(``AUTH TLS``) on the FTP port, or as implicit FTPS on its own port.

aioftp's server gives the connection loop (greeting, command parsing, ordered answers, the
clean-up of a connection's tasks); every command is answered here, over the portal session,
instead of over aioftp's path layer (which knows files on a disk, not a view with grants).

Rules kept here:

- Sign-in: ``USER`` then ``PASS``, checked by the sign-in defender (``bus.signin``: banned
  addresses and accounts refused unchecked, failures scored and published). A failed or banned
  sign-in, or an account the access model refuses (disabled, expired, no destinations, quota
  spent), answers 530; a user past its max connections 421, and the connection is closed. The
  portal session lasts as long as the connection.
- Each operation maps to its commands: ``dir`` LIST/NLST/MLSD/MLST (and CWD's check that a
  folder is there), ``get`` RETR, ``put`` STOR, ``delete`` DELE, ``mkdir`` MKD, ``rmdir`` RMD,
  ``rename`` RNFR+RNTO, ``size`` SIZE, ``mtime`` MDTM (MFMT: set it, which the grant allows
  and nothing keeps). A refusal answers 550 (published as ``PortalAccessDenied`` by the
  session), what the view cannot do 550 with the reason, an upload past its cap 552. A
  transfer answers 425 when its data connection never comes, 426 when it breaks, 451 when
  the store or the ingest service fails midway.
- Paths are the client's, made absolute against the working folder, then confined to the view
  (``access.confine``: ``..``, encoded or not, is refused); only CWD resolves ``..``, the way
  ``realpath`` does, never above the root.
- TLS: after ``AUTH TLS`` (or from the first byte on the implicit port) the control channel is
  TLS; ``PROT P`` protects the data channel (the implicit port protects it by default). Both
  use the portal's certificate and one ``SSLContext`` (``tls_context``), so a TLS 1.2 client
  resumes the control channel's session on each data connection (lftp's and FileZilla's
  ``reuse``, which vsftpd-style servers require); one that does not, or cannot (TLS 1.3: see
  ``tls_context``), gets a full handshake and is served the same.
- Passive mode only (PASV, EPSV): each data connection gets a fresh listener on a port of the
  configured range (ECPDS_PORTAL_FTP_PASSIVE_PORTS; any free port if unset), announced in PASV
  at ECPDS_PORTAL_FTP_ADVERTISED_ADDRESS (the address the client reached, if unset: set it
  behind NAT). A data connection from another address than the control connection's is
  refused (nobody else can take a transfer). Active mode (PORT, EPRT) answers 502.
- REST resumes downloads (served from that offset; not from the first byte, such a download
  never marks a transfer DONE). Uploads stream into the store in order, so REST before STOR,
  and APPE, answer 550: send the whole file again (under a temporary name, then RNTO).
- A client silent for ECPDS_PORTAL_FTP_IDLE_TIMEOUT seconds (600), no transfer running or
  ended meanwhile, is told 421 and disconnected: its session ends (a client that vanished
  does not hold one of its max connections).
- An upload ends when its data connection does. The client going away (its control connection
  closed with it, as when it is killed) is a cut, never registered: the upload is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aioftp
from aioftp.common import Connection, StreamIO

from bus.logging import get_logger
from bus.signin import Banned, SignInGate
from producers.portal.access import Denied, Operation, PortalPath, Reason, normalise
from producers.portal.service import (
    Entry,
    Failed,
    NotFound,
    Portal,
    PortalError,
    Refused,
    Session,
    TooLarge,
    Unsupported,
)

log = get_logger(__name__)
PROTOCOL = "ftp"


def _quiet(record: logging.LogRecord) -> bool:
    """aioftp logs a traceback whenever a client leaves without QUIT (its connection reset or
    closed): a normal end here, not an error."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, ConnectionError | TimeoutError)


logging.getLogger("aioftp.server").addFilter(_quiet)
CHUNK = 1024 * 1024  # bytes read from the store, or from an upload's socket, at a time
DATA_WAIT = 20.0  # seconds a transfer waits for the client's data connection
CUT_WAIT = 0.05  # seconds an upload's end waits to tell a cut (its control connection closes)
WRITE_HIGH = 4 * 1024 * 1024  # a data connection's write buffer before ``drain`` waits
FEATURES = (
    "AUTH TLS", "PBSZ", "PROT", "EPSV", "MDTM", "MFMT", "MLST type*;size*;modify*;",
    "REST STREAM", "SIZE", "TVFS", "UTF8",
)  # fmt: skip
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The door's TLS context, for its control and data connections alike.

    It sends no TLS 1.3 session tickets: a server sends them just after the handshake, and an
    uploading client never reads its data connection, so they were still unread when it
    closed it, and its kernel answered with a reset that dropped the file's last bytes on
    their way in (lftp's uploads were cut, now and then). TLS 1.2 sessions (ids and tickets,
    sent within the handshake) are resumed by data connections as before."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.num_tickets = 0
    return context


class _Ports:
    """The passive ports a door may listen on: a range, tried in turn, or any free port."""

    def __init__(self, span: tuple[int, int] | None) -> None:
        self.span = span
        self._next = span[0] if span else 0

    def candidates(self) -> Iterator[int]:
        if self.span is None:
            yield 0
            return
        low, high = self.span
        count = high - low + 1
        start = self._next
        for step in range(count):
            port = low + (start - low + step) % count
            self._next = low + (port - low + 1) % count
            yield port


@dataclass(eq=False)
class _State:
    """One control connection: who signed in, where it is, its data connection to come."""

    address: str | None
    local: str  # the address the client reached (passive listeners bind to it)
    writer: asyncio.StreamWriter
    tls: bool  # the control channel is protected
    protect: bool  # PROT P: data connections are TLS
    login: str | None = None
    session: Session | None = None
    cwd: PortalPath = field(default_factory=lambda: PortalPath(()))
    rename_from: PortalPath | None = None
    transfers: int = 0  # running now: the control connection may stay silent meanwhile
    quiet_since: float = 0.0  # loop time the last transfer ended (silence counts from then)
    listener: asyncio.Server | None = None
    data: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
    closed: bool = False


Handler = Callable[["_Server", Connection, str], Awaitable[bool]]


def _command(*, login: bool = True) -> Callable[[Handler], Handler]:
    """A command handler that answers every portal error (never raises: aioftp's loop would
    drop the connection) and, with ``login``, refuses to work before a sign-in."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(server: _Server, connection: Connection, rest: str) -> bool:
            state = server.state(connection)
            if login and (state.session is None or state.session.closed):
                connection.response("530", "sign in first (USER and PASS)")
                return True
            try:
                return await handler(server, connection, rest)
            except PortalError as error:
                code, message = _answer(error)
                connection.response(code, message)
                return code != "421"
            except Exception:
                log.exception("ftp command failed", command=handler.__name__, user=state.login)
                connection.response("451", "the command failed: local error")
                return True

        return run

    return wrap


def _answer(error: PortalError) -> tuple[str, str]:
    """The FTP code and message of a portal error."""
    if isinstance(error, Refused):
        if error.denied.reason is Reason.MAX_CONNECTIONS:
            return "421", error.denied.message
        return "550", error.denied.message
    if isinstance(error, TooLarge):
        return "552", str(error)
    return "550", str(error)


def _flat(text: str) -> str:
    """One line of an answer: a name's CR/LF would end it early."""
    return text.replace("\r", " ").replace("\n", " ")


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _facts(entry: Entry) -> str:
    """An MLSD/MLST line: its facts, a space, its name."""
    facts = "type=dir;" if entry.folder else "type=file;"
    if entry.size is not None and not entry.folder:
        facts += f"size={entry.size};"
    if entry.mtime is not None:
        facts += f"modify={_stamp(entry.mtime)};"
    return f"{facts} {_flat(entry.name)}"


def _long(entry: Entry, now: datetime) -> str:
    """A LIST line, as ``ls -l`` writes it (the parsers of every client read it)."""
    mode = "drwxr-xr-x" if entry.folder else "-rw-r--r--"
    when = (entry.mtime or now).astimezone(UTC)
    month = _MONTHS[when.month - 1]
    recent = abs((now - when).days) < 180
    shown = f"{when:%H:%M}" if recent else f" {when.year}"
    size = 0 if entry.size is None else entry.size
    return f"{mode} 1 ecpds ecpds {size:>12} {month} {when.day:>2} {shown} {_flat(entry.name)}"


class FtpDoor:
    """The FTP servers of one portal: explicit TLS on the FTP port, implicit FTPS on its own."""

    def __init__(
        self,
        portal: Portal,
        gate: SignInGate,
        tls: ssl.SSLContext,
        *,
        passive_ports: tuple[int, int] | None = None,
        advertised: str | None = None,
        idle: float = 600.0,
    ) -> None:
        self.portal = portal
        self.idle = idle
        self.gate = gate
        self.tls = tls
        self.ports = _Ports(passive_ports)
        self.advertised = advertised
        self._servers: list[_Server] = []

    async def start(self, host: str, port: int, ftps_port: int) -> tuple[int, int]:
        """Listen for FTP on ``port`` and implicit FTPS on ``ftps_port`` (0: any free port);
        the ports listened on."""
        plain, implicit = _Server(self, implicit=False), _Server(self, implicit=True)
        await plain.start(host, port)
        self._servers.append(plain)
        await implicit.start(host, ftps_port)
        self._servers.append(implicit)
        return plain.server_port, implicit.server_port

    async def close(self) -> None:
        """Stop listening and drop every connection (an upload in flight is cut, never
        registered)."""
        for server in self._servers:
            await server.close()
        self._servers.clear()


class _Server(aioftp.Server):
    """One listening port of the door: aioftp's connection loop, the portal's commands."""

    def __init__(self, door: FtpDoor, *, implicit: bool) -> None:
        super().__init__(
            ssl=door.tls if implicit else None,
            welcome_message="ecpds portal FTP",
            wait_future_timeout=DATA_WAIT,
        )
        self.door = door
        self.implicit = implicit
        self._states: dict[asyncio.StreamWriter, _State] = {}
        # every command is the portal's (``ftp_<name>``) but QUIT, REST and SYST, aioftp's
        kept = {name: self.commands_mapping[name] for name in ("quit", "rest", "syst")}
        ours = {n[4:]: getattr(self, n) for n in dir(self) if n.startswith("ftp_")}
        ours |= {"eprt": self.ftp_port, "xpwd": self.ftp_pwd, "xcwd": self.ftp_cwd}
        self.commands_mapping = {**kept, **ours}

    # -- connections ------------------------------------------------------------------------

    def state(self, connection: Connection) -> _State:
        return self._states[connection.command_connection.writer]

    async def dispatcher(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        state = _State(
            address=str(peer[0]) if peer else None,
            local=str(local[0]) if local else "127.0.0.1",
            writer=writer,
            tls=self.implicit,
            protect=self.implicit,
        )
        self._states[writer] = state
        try:
            await super().dispatcher(reader, writer)
        finally:
            self._states.pop(writer, None)
            state.closed = True
            _drop_data(state)
            if state.session is not None:
                state.session.close()

    async def parse_command(
        self, stream: StreamIO, censor_commands: tuple[str] = ("pass",)
    ) -> tuple[str, str]:
        """The client's next command; after ``idle`` seconds of silence with no transfer
        running, 421 and the connection (and its session) ends."""
        state = self._states.get(stream.writer)
        while True:
            try:
                return await asyncio.wait_for(
                    super().parse_command(stream, censor_commands), self.door.idle
                )
            except TimeoutError:
                now = asyncio.get_running_loop().time()
                if state is not None and (
                    state.transfers or now - state.quiet_since < self.door.idle
                ):
                    continue
                if state is not None and not state.writer.is_closing():
                    state.writer.write(b"421 idle for too long: closing the connection\r\n")
                raise

    # -- sign-in and TLS --------------------------------------------------------------------

    @_command(login=False)
    async def ftp_auth(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        if rest.strip().upper() not in ("TLS", "SSL", "TLS-C"):
            connection.response("504", "AUTH TLS only")
            return True
        if state.tls:
            connection.response("503", "already protected by TLS")
            return True
        # The answer goes straight to the socket and the handshake starts before the loop
        # reads again: the client's hello must reach TLS, not the command parser.
        state.writer.write(b"234 AUTH TLS accepted: start the handshake\r\n")
        try:
            await state.writer.start_tls(self.door.tls)
        except (ssl.SSLError, OSError) as error:
            log.info("ftp TLS handshake failed", client_address=state.address, error=str(error))
            return False
        state.tls = True
        return True

    @_command(login=False)
    async def ftp_pbsz(self, connection: Connection, rest: str) -> bool:
        if not self.state(connection).tls:
            connection.response("503", "PBSZ comes after AUTH TLS")
            return True
        connection.response("200", "PBSZ=0")
        return True

    @_command(login=False)
    async def ftp_prot(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        level = rest.strip().upper()
        if level not in ("C", "P"):
            connection.response("504", "PROT C or P only")
        elif level == "P" and not state.tls:
            connection.response("503", "PROT P comes after AUTH TLS")
        else:
            state.protect = level == "P"
            connection.response("200", f"PROT {level}: data connections in the {_clear(level)}")
        return True

    @_command(login=False)
    async def ftp_user(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        if state.session is not None:
            connection.response("530", "already signed in: cannot change user")
            return True
        state.login = rest.strip()
        connection.response("331", f"password for {_flat(state.login)}")
        return True

    @_command(login=False)
    async def ftp_pass(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        login, portal = state.login, self.door.portal
        if state.session is not None:
            connection.response("503", "already signed in")
            return True
        if login is None:
            connection.response("503", "send USER first")
            return True
        outcome = await self.door.gate.check(
            state.address, login, portal.password_hash(login), rest
        )
        if isinstance(outcome, Banned):
            log.info("ftp sign-in banned", login=login, retry_after=outcome.retry_after)
            connection.response(
                "530", f"too many failed sign-ins: retry in {outcome.retry_after} s"
            )
            return True
        if outcome is not True:
            connection.response("530", "sign-in failed")
            return True
        found = portal.start_session(login, PROTOCOL, state.address)
        if isinstance(found, Denied):
            if found.reason is Reason.MAX_CONNECTIONS:
                connection.response("421", found.message)
                return False
            connection.response("530", found.message)
            return True
        state.session = found
        connection.response("230", f"signed in as {_flat(login)}")
        return True

    # -- small talk -------------------------------------------------------------------------

    @_command(login=False)
    async def ftp_feat(self, connection: Connection, rest: str) -> bool:
        connection.response("211", ["Features:", *FEATURES, "End"], True)
        return True

    @_command(login=False)
    async def ftp_opts(self, connection: Connection, rest: str) -> bool:
        name = rest.strip().upper()
        if name.startswith("UTF8"):
            connection.response("200", "UTF-8 is always on")
        elif name.startswith("MLST"):
            connection.response("200", "MLST OPTS type;size;modify;")
        else:
            connection.response("501", "unknown option")
        return True

    @_command(login=False)
    async def ftp_noop(self, connection: Connection, rest: str) -> bool:
        connection.response("200", "ok")
        return True

    @_command()
    async def ftp_type(self, connection: Connection, rest: str) -> bool:
        kind = rest.strip().upper()
        if kind in ("I", "L 8", "A", "A N"):
            connection.response("200", f"type {kind} (bytes are sent as they are)")
        else:
            connection.response("504", f"type {_flat(rest)} not supported")
        return True

    @_command()
    async def ftp_mode(self, connection: Connection, rest: str) -> bool:
        ok = rest.strip().upper() == "S"
        connection.response("200" if ok else "504", "stream mode" if ok else "MODE S only")
        return True

    @_command()
    async def ftp_stru(self, connection: Connection, rest: str) -> bool:
        ok = rest.strip().upper() == "F"
        connection.response("200" if ok else "504", "file structure" if ok else "STRU F only")
        return True

    @_command()
    async def ftp_allo(self, connection: Connection, rest: str) -> bool:
        connection.response("202", "no storage allocation needed")
        return True

    @_command()
    async def ftp_port(self, connection: Connection, rest: str) -> bool:
        connection.response("502", "active mode is not supported: use passive mode (PASV, EPSV)")
        return True

    # -- paths and folders ------------------------------------------------------------------

    async def _path(self, state: _State, raw: str) -> PortalPath:
        """``raw`` (absolute, or relative to the working folder) confined to the view."""
        assert state.session is not None
        text = raw if raw.startswith("/") else f"{state.cwd}/{raw}" if raw else str(state.cwd)
        return await state.session.resolve(text)

    @_command()
    async def ftp_pwd(self, connection: Connection, rest: str) -> bool:
        where = str(self.state(connection).cwd).replace('"', '""')
        connection.response("257", f'"{where}" is the working folder')
        return True

    @_command()
    async def ftp_cwd(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        found = normalise(rest.strip() or "/", state.cwd)
        if isinstance(found, Denied):
            await state.session.refuse(found)
            raise NotFound(found.message)
        if not (await state.session.stat(found)).folder:
            raise NotFound(f"{found}: not a folder")
        await state.session.check(Operation.DIR, found)
        state.cwd = found
        connection.response("250", f"working folder {_flat(str(found))}")
        return True

    @_command()
    async def ftp_cdup(self, connection: Connection, rest: str) -> bool:
        return await self.ftp_cwd(connection, "..")

    @_command()
    async def ftp_mkd(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        path = await self._path(state, rest)
        await state.session.mkdir(path)
        shown = str(path).replace('"', '""')
        connection.response("257", f'"{_flat(shown)}" created')
        return True

    @_command()
    async def ftp_rmd(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        await state.session.rmdir(await self._path(state, rest))
        connection.response("250", "folder removed")
        return True

    @_command()
    async def ftp_dele(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        await state.session.remove(await self._path(state, rest))
        connection.response("250", "deleted")
        return True

    @_command()
    async def ftp_rnfr(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        path = await self._path(state, rest)
        await state.session.check(Operation.RENAME, path)
        state.rename_from = path
        connection.response("350", "ready for RNTO")
        return True

    @_command()
    async def ftp_rnto(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        old, state.rename_from = state.rename_from, None
        if old is None:
            connection.response("503", "send RNFR first")
            return True
        await state.session.rename(old, await self._path(state, rest))
        connection.response("250", "renamed")
        return True

    @_command()
    async def ftp_size(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        path = await self._path(state, rest)
        await state.session.check(Operation.SIZE, path)
        entry = await state.session.stat(path)
        if entry.folder or entry.size is None:
            raise NotFound(f"{path}: not a file")
        connection.response("213", str(entry.size))
        return True

    @_command()
    async def ftp_mdtm(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        path = await self._path(state, rest)
        await state.session.check(Operation.MTIME, path)
        entry = await state.session.stat(path)
        if entry.folder or entry.mtime is None:
            raise NotFound(f"{path}: not a file")
        connection.response("213", _stamp(entry.mtime))
        return True

    @_command()
    async def ftp_mfmt(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        when, _, name = rest.strip().partition(" ")
        if len(when) != 14 or not when.isdigit() or not name:
            connection.response("501", "MFMT YYYYMMDDHHMMSS path")
            return True
        path = await self._path(state, name)
        await state.session.touch(path)  # allowed with the grant; nothing keeps it
        connection.response("213", f"Modify={when}; {_flat(str(path))}")
        return True

    async def _entries(self, state: _State, rest: str) -> list[Entry]:
        """The entries LIST/NLST/MLSD show for ``rest``: a folder's, or one file's."""
        assert state.session is not None
        words = rest.split()
        # ``ls``-style options (``LIST -la``) come first; what follows is the path
        while words and words[0].startswith("-"):
            words.pop(0)
        path = await self._path(state, " ".join(words))
        try:
            return await state.session.list(path)
        except NotFound:
            entry = await state.session.stat(path)
            if entry.folder:
                raise
            await state.session.check(Operation.DIR, path)
            return [entry]

    @_command()
    async def ftp_list(self, connection: Connection, rest: str) -> bool:
        entries = await self._entries(self.state(connection), rest)
        now = datetime.now(UTC)
        return self._send_lines(connection, [_long(e, now) for e in entries])

    @_command()
    async def ftp_nlst(self, connection: Connection, rest: str) -> bool:
        entries = await self._entries(self.state(connection), rest)
        return self._send_lines(connection, [_flat(e.name) for e in entries])

    @_command()
    async def ftp_mlsd(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        path = await self._path(state, rest)
        entries = await state.session.list(path)
        return self._send_lines(connection, [_facts(e) for e in entries])

    @_command()
    async def ftp_mlst(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        path = await self._path(state, rest)
        entry = await state.session.stat(path)
        await state.session.check(Operation.DIR, path)
        shown = Entry(str(path), entry.folder, entry.size, entry.mtime)
        connection.response("250", ["listing", _facts(shown), "end"], True)
        return True

    def _send_lines(self, connection: Connection, lines: list[str]) -> bool:
        body = "".join(line + "\r\n" for line in lines).encode()

        async def send(data: _Data) -> None:
            data.writer.write(body)
            await data.writer.drain()

        return self._transfer(connection, "listing", send)

    # -- passive data connections -----------------------------------------------------------

    @_command()
    async def ftp_pasv(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        port = await self._listen(state)
        host = self.door.advertised or state.local
        if ":" in host:
            connection.response("425", "PASV needs IPv4: use EPSV")
            return True
        numbers = [*host.split("."), str(port >> 8), str(port & 0xFF)]
        connection.response("227", f"entering passive mode ({','.join(numbers)})")
        return True

    @_command()
    async def ftp_epsv(self, connection: Connection, rest: str) -> bool:
        if rest.strip().upper() == "ALL":
            connection.response("200", "EPSV ALL: passive mode only, as always")
            return True
        port = await self._listen(self.state(connection))
        connection.response("229", f"entering extended passive mode (|||{port}|)")
        return True

    async def _listen(self, state: _State) -> int:
        """A fresh listener for the next data connection (TLS under PROT P); its port. It
        takes one connection, from the control connection's address, and stops listening."""
        _drop_data(state)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        future = loop.create_future()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            if future.done() or (peer and str(peer[0]) != state.address):
                log.warning("ftp data connection refused", client_address=peer and peer[0])
                writer.close()
                return
            future.set_result((reader, writer))
            if state.listener is not None:
                state.listener.close()

        tls = self.door.tls if state.protect else None
        for port in self.door.ports.candidates():
            try:
                listener = await asyncio.start_server(
                    accepted, state.local, port, ssl=tls, limit=CHUNK, backlog=4
                )
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    continue
                raise
            state.listener, state.data = listener, future
            return int(listener.sockets[0].getsockname()[1])
        raise Failed("no free passive port: try again later")

    async def _data(self, state: _State) -> _Data | None:
        """The data connection the client opened for this transfer, or None if it did not
        come in ``DATA_WAIT`` seconds."""
        future = state.data
        if future is None:
            return None
        try:
            reader, writer = await asyncio.wait_for(asyncio.shield(future), DATA_WAIT)
        except TimeoutError:
            future.cancel()  # one that comes later is closed
            return None
        finally:
            _drop_data(state, keep=future)
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH)
        return _Data(reader, writer)

    def _transfer(
        self,
        connection: Connection,
        what: str,
        work: Callable[[_Data], Awaitable[Any]],
        *,
        ended: Callable[[bool], Awaitable[None]] | None = None,
    ) -> bool:
        """Answer 150, then run ``work`` over the data connection in a task of aioftp's
        (ABOR and the connection's end cancel it): 226 once the data connection is closed,
        425 if it never came, 426 if it broke. ``ended(ok)`` runs in every case, before
        the last answer (a download's event, an upload's abort)."""
        state = self.state(connection)
        if state.data is None:
            connection.response("425", "use PASV or EPSV first")
            return True
        connection.response("150", f"opening data connection for the {what}")

        async def run() -> bool:
            state.transfers += 1
            try:
                return await attempt()
            finally:
                state.transfers -= 1
                state.quiet_since = asyncio.get_running_loop().time()

        async def attempt() -> bool:
            ok, code, message = False, "425", "no data connection: the transfer did not start"
            try:
                data = await self._data(state)
                if data is not None:
                    code, message = "426", "the data connection broke: the transfer is cut"
                    try:
                        await work(data)
                        await data.close()
                    finally:
                        data.abort()
                    ok, code, message = True, "226", f"{what} done"
            except PortalError as error:
                code, message = _answer(error)
                code = "451" if code == "550" and isinstance(error, Failed) else code
            except (ConnectionError, OSError, ssl.SSLError) as error:
                log.info("ftp data connection broke", what=what, error=repr(error))
            except asyncio.CancelledError:
                if ended is not None:
                    await ended(False)
                connection.response("426", "transfer aborted")
                connection.response("226", "abort done")
                raise
            if ended is not None:
                try:
                    await ended(ok)
                except PortalError as error:
                    ok, (code, message) = False, _answer(error)
            connection.response(code, message)
            return True

        connection.extra_workers.add(asyncio.ensure_future(run()))
        return True

    # -- files ------------------------------------------------------------------------------

    @_command()
    async def ftp_retr(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        if state.data is None:
            connection.response("425", "use PASV or EPSV first")
            return True
        path = await self._path(state, rest)
        download = await state.session.open_read(path)
        start = int(connection.restart_offset or 0)

        async def send(data: _Data) -> None:
            offset = start
            while chunk := await download.read(offset, CHUNK):
                offset += len(chunk)
                data.writer.write(chunk)
                await data.writer.drain()

        async def ended(ok: bool) -> None:
            await asyncio.shield(download.close())

        return self._transfer(connection, f"download of {path}", send, ended=ended)

    @_command()
    async def ftp_stor(self, connection: Connection, rest: str) -> bool:
        state = self.state(connection)
        assert state.session is not None
        if connection.restart_offset:
            raise Unsupported(
                "resuming an upload is not supported: uploads stream into the store in order,"
                " send the whole file again"
            )
        if state.data is None:
            connection.response("425", "use PASV or EPSV first")
            return True
        path = await self._path(state, rest)
        upload = await state.session.open_write(path)

        async def receive(data: _Data) -> None:
            while chunk := await data.reader.read(CHUNK):
                await upload.write(upload.received, chunk)

        async def ended(ok: bool) -> None:
            cut = not ok
            try:
                if ok:
                    # a client killed midway closes its data connection as if the file had
                    # ended: its control connection, closed with it, tells the cut apart (its
                    # end cancels this wait, or is seen after it)
                    await asyncio.sleep(CUT_WAIT)
                    cut = state.closed or state.writer.is_closing() or _at_eof(connection)
            except asyncio.CancelledError:
                cut = True
                raise
            finally:
                if cut:
                    await asyncio.shield(upload.abort())
            if not cut:
                await asyncio.shield(upload.finish())

        return self._transfer(connection, f"upload of {path}", receive, ended=ended)

    @_command()
    async def ftp_abor(self, connection: Connection, rest: str) -> bool:
        if not connection.extra_workers:
            connection.response("226", "no transfer to abort")
        for work in connection.extra_workers:
            work.cancel()  # it answers 426 then 226
        return True

    @_command()
    async def ftp_appe(self, connection: Connection, rest: str) -> bool:
        raise Unsupported("appending is not supported: send the whole file with STOR")


def _at_eof(connection: Connection) -> bool:
    reader = connection.command_connection.reader
    return bool(reader.at_eof())


def _clear(level: str) -> str:
    return "clear" if level == "C" else "TLS"


@dataclass
class _Data:
    """One data connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def close(self) -> None:
        """Close it cleanly (TLS: close_notify), so the client sees the end of the file."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 30)

    def abort(self) -> None:
        if not self.writer.is_closing():
            self.writer.transport.abort()


def _drop_data(
    state: _State,
    keep: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None,
) -> None:
    """Stop listening for a data connection; close one that came and is not taken."""
    if state.listener is not None:
        state.listener.close()
        state.listener = None
    future, state.data = state.data, None
    if future is None or future is keep:
        return
    if future.done() and not future.cancelled():
        future.result()[1].close()
    else:
        future.cancel()


__all__ = ["PROTOCOL", "FtpDoor", "tls_context"]
