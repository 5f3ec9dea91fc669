"""The steady-state SSH packet path of the SFTP module with AES-GCM: a leaner copy of asyncssh's.

asyncssh handles each packet with several copies of the data, a key setup per packet, one system
call per packet for padding and log lines built then dropped; on a single large file that costs
as much as the encryption. Used only once the connection is up with AES-GCM: ``GcmPackets``
encrypts outgoing packets in one join and splits incoming bytes into whole packets, decrypting
channel data and window adjusts straight from the read buffer (anything else goes to asyncssh
with its plaintext already decrypted); ``lean_sftp_writes`` copies SFTP write data ~3 times
instead of ~9; ``coalesce_writes`` and ``skip_cbc_countermeasure`` save system calls;
``quiet_packet_logs`` skips per-packet log lines unless packet dumps are on. Key exchange,
rekeying, other ciphers, compression and every error stay asyncssh's. The bytes on the wire are
the same. This reads asyncssh's private state: asyncssh is pinned (pyproject), and the sftp
tests must pass on any upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import (
    Iterable,
)
from typing import Any, cast

import asyncssh
from asyncssh.constants import FXP_WRITE as _FXP_WRITE
from asyncssh.constants import MSG_CHANNEL_DATA as _MSG_CHANNEL_DATA
from asyncssh.constants import MSG_CHANNEL_EOF as _MSG_CHANNEL_EOF
from asyncssh.constants import MSG_CHANNEL_EXTENDED_DATA as _MSG_CHANNEL_EXTENDED_DATA
from asyncssh.constants import MSG_CHANNEL_WINDOW_ADJUST as _MSG_CHANNEL_WINDOW_ADJUST
from asyncssh.constants import MSG_IGNORE as _MSG_IGNORE
from asyncssh.constants import MSG_USERAUTH_LAST as _MSG_USERAUTH_LAST
from asyncssh.encryption import GCMEncryption
from asyncssh.logging import SSHLogger
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

# The packets GcmPackets hands to the channel itself.
_FAST_TYPES = frozenset((_MSG_CHANNEL_DATA, _MSG_CHANNEL_WINDOW_ADJUST))


_EMPTY_IGNORE = (b"\0\0\0\0",)  # String(b""): the payload of asyncssh's filler packets


def skip_cbc_countermeasure(conn: asyncssh.SSHClientConnection) -> None:
    """Stop asyncssh sending an empty MSG_IGNORE before every packet of this connection.

    The filler packet defends CBC ciphers (predictable IVs); AES-GCM, chacha20 and CTR do not
    need it, and it doubles the packets encrypted and written: dropping it cut the client's
    CPU per put by ~25% here. Only this connection's bound method is shadowed; CBC keeps it.
    """
    if "-cbc" in str(conn.get_extra_info("send_cipher")):
        return
    original = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype == _MSG_IGNORE and args == _EMPTY_IGNORE:
            return
        original(pkttype, *args, **kwargs)

    setattr(conn, "send_packet", send_packet)  # noqa: B010 - mypy forbids assigning a method


class CoalescingTransport:
    """Hands the SSH packets written in one event-loop turn to the socket in one call.

    asyncssh writes each packet separately; while puts run (concurrent small files, pipelined
    blocks) one ``writelines`` per turn saves most send syscalls (A/B runs here: ~20% less
    client CPU for 2,000 concurrent small puts). Gets send only small requests whose delay
    costs throughput, so writes go straight through while no put runs (``puts`` counts
    them). Order is kept: once anything is buffered, later writes queue behind it.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self.puts = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            if not self.puts:
                self._transport.write(data)
                return
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def writelines(self, data: Iterable[bytes]) -> None:
        if not self._pending and not self.puts:
            self._transport.writelines(data)
            return
        for item in data:
            self.write(item)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def coalesce_writes(conn: asyncssh.SSHClientConnection) -> CoalescingTransport | None:
    transport = getattr(conn, "_transport", None)
    # uvloop's TCPTransport does not subclass asyncio.Transport: check the methods used.
    if not all(hasattr(transport, name) for name in ("writelines", "is_closing", "abort")):
        return None
    wrapper = CoalescingTransport(cast(asyncio.Transport, transport))
    setattr(conn, "_transport", wrapper)  # noqa: B010 - a private attribute, on purpose
    return wrapper


class GcmPackets:
    """Sends and receives the packets of an AES-GCM connection with fewer copies than asyncssh.

    Per 32 KiB data packet asyncssh's sender builds the payload, pads it, encrypts, splits tag
    from ciphertext and glues them back (five copies), draws padding with one ``urandom`` call
    and formats a log line it then drops; its receiver slices the whole input buffer twice per
    packet, so a 256 KiB read holding eight packets is copied ~16 times. Here a packet is one
    join and one encryption (written as header + ciphertext), padding comes from a random
    pool; input is cut into whole packets (GCM leaves lengths in clear), channel data and
    window adjusts are opened in place and given to the channel (``_handled``), and any
    other packet goes to asyncssh alone. Only the steady state takes this path
    (authenticated, keys in use, no rekey due, no compression, AES-GCM in that direction);
    everything else goes through asyncssh unchanged, so key exchange, rekeying and error
    handling stay its own.
    """

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn: Any = conn  # private state below: asyncssh has no API for it
        self._send_fallback = conn.send_packet
        self._data_fallback = conn.data_received
        self._cipher: Any = None
        self._aead: AESGCM | None = None
        self._random = b""
        self._tail = b""  # the start of a packet whose end has not come yet
        setattr(conn, "send_packet", self.send_packet)  # noqa: B010 - see skip_cbc_countermeasure
        setattr(conn, "data_received", self.data_received)  # noqa: B010
        transport = self._conn._transport
        if transport is not None:
            # uvloop keeps the protocol's bound data_received: set it again to take ours.
            transport.set_protocol(conn)

    def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
        conn = self._conn
        encryption = conn._send_encryption
        if (
            pkttype <= _MSG_USERAUTH_LAST
            or type(encryption) is not GCMEncryption
            or not (conn._kex_complete and conn._auth_complete)
            or conn._compressor is not None
            or conn._rekey_bytes_sent >= conn._rekey_bytes
            or (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)
        ):
            self._send_fallback(pkttype, *args, handler=handler)
            return
        cipher = encryption._cipher
        if cipher is not self._cipher:  # new keys: one AESGCM per key, not per packet
            self._cipher, self._aead = cipher, AESGCM(cipher._key)
        length = 1 + sum(map(len, args))
        padlen = -(conn._send_enchdrlen + length) % conn._send_blocksize
        if padlen < 4:
            padlen += conn._send_blocksize
        if len(self._random) < padlen:
            self._random = os.urandom(4096)
        padding, self._random = self._random[:padlen], self._random[padlen:]
        packet = b"".join((bytes((padlen, pkttype)), *args, padding))
        header = len(packet).to_bytes(4, "big")
        iv = cipher._iv
        assert self._aead is not None
        sealed = self._aead.encrypt(iv, packet, header)
        count = (int.from_bytes(iv[4:], "big") + 1) & 0xFFFFFFFFFFFFFFFF
        cipher._iv = iv[:4] + count.to_bytes(8, "big")
        transport = conn._transport
        if transport:
            try:
                if len(sealed) < 4096:  # one small write beats two buffers
                    transport.write(header + sealed)
                else:
                    transport.writelines((header, sealed))
            except ConnectionError:
                pass  # as asyncssh's _send: connection_lost reports it
        seq = conn._send_seq
        conn._send_seq = (seq + 1) & 0xFFFFFFFF
        conn._rekey_bytes_sent += len(packet)
        if SSHLogger._debug_level >= 3:  # packet dumps asked for
            payload = bytes((pkttype,)) + b"".join(args)
            (handler or conn).log_sent_packet(pkttype, seq, payload)

    def data_received(self, data: bytes, datatype: object = None) -> None:
        conn = self._conn
        # asyncssh re-arms its keepalive timer per call; once per read is what it does too.
        conn._reset_keepalive_timer()
        conn._reset_keepalive_timer = _nothing
        try:
            self._split(data)
        finally:
            del conn._reset_keepalive_timer

    def _split(self, data: bytes) -> None:
        """Hand ``data`` to asyncssh one whole packet at a time (GCM keeps lengths in clear)."""
        conn = self._conn
        view = memoryview(data)
        while (view or self._tail) and conn._transport is not None:
            opener = conn._recv_encryption
            if type(opener) is GCMEncryption:  # new keys: our opener over them
                conn._recv_encryption = opener = GcmOpener(opener)
            if (
                conn._inpbuf
                or conn._recv_handler != conn._recv_pkthdr
                or type(opener) is not GcmOpener
            ):
                # Mid-packet, mid-handshake or another cipher: asyncssh parses the rest.
                rest, self._tail = self._tail + view, b""
                self._data_fallback(rest)
                return
            packet: bytes | memoryview
            if self._tail:  # a packet begun in an earlier read: complete it
                begun = self._tail
                need = 4 - len(begun)
                if need <= 0:
                    need = self._size(begun) - len(begun)
                begun += view[:need]
                view = view[need:]
                if len(begun) < 4 or len(begun) < self._size(begun):
                    self._tail = begun
                    if not view:
                        return
                    continue  # the length is complete now: size the rest of the packet
                packet, self._tail = begun, b""
            else:
                size = self._size(view) if len(view) >= 4 else len(view) + 1
                if len(view) < size:
                    self._tail = bytes(view)
                    return
                packet = view[:size]
                view = view[size:]
            if self._handled(opener, packet):
                continue
            self._data_fallback(packet if type(packet) is bytes else bytes(packet))

    def _handled(self, opener: GcmOpener, packet: bytes | memoryview) -> bool:
        """Apply channel data or a window adjust without asyncssh's parse (True), or leave it.

        These two are nearly every packet of a transfer (a put gets a window adjust from
        OpenSSH's server every ~96 KiB; a get is data), and asyncssh's receive path copies
        each packet four times and dispatches it through several layers. Here the packet is
        opened straight from the read buffer and handed to the channel as asyncssh's handlers
        would (same state checks, same window accounting); anything else, or anything odd,
        goes to asyncssh with its plaintext kept (``GcmOpener.ready``), the IV having moved
        on once, so asyncssh decides and reports the errors.
        """
        conn = self._conn
        plain = opener.open(packet)
        if (
            plain is None
            or len(plain) < 10
            or plain[1] not in _FAST_TYPES
            or not conn._auth_complete
            or SSHLogger._debug_level >= 2  # asyncssh logs these at level 2
        ):
            return False
        end = len(plain) - plain[0]  # the padding length comes first
        channel = conn._channels.get(int.from_bytes(plain[2:6], "big"))
        if channel is None:
            return False
        if plain[1] == _MSG_CHANNEL_DATA:
            size = int.from_bytes(plain[6:10], "big")
            if end != 10 + size or channel._recv_state != "open" or size > channel._recv_window:
                return False
        elif end != 10 or channel._recv_state not in {"open", "eof_pending", "eof"}:
            return False
        opener.ready = None
        conn._auth_final = True  # as asyncssh's _finish_recv_packet
        conn._recv_seq = (conn._recv_seq + 1) & 0xFFFFFFFF
        try:
            if plain[1] == _MSG_CHANNEL_DATA:
                channel._accept_data(plain[10:end])
            else:
                channel._send_window += int.from_bytes(plain[6:10], "big")
                channel._flush_send_buf()
        except Exception:  # as asyncssh's _recv_data: a failing handler ends the connection
            conn.internal_error()
        return True

    def _size(self, head: bytes | memoryview) -> int:
        """A packet's length on the wire; an absurd one is capped for asyncssh to refuse."""
        size = 4 + int.from_bytes(head[:4], "big") + int(self._conn._recv_macsize)
        return min(size, int(self._conn._max_recv_pktlen) + 64)


def _nothing() -> None:
    return None


def quiet_packet_logs(*loggers: Any) -> None:
    """Skip asyncssh's per-packet log line unless packet dumps are on (debug level 3).

    asyncssh formats a name and a byte count for every packet and only then finds the logger
    uninterested: ~6% of a large get's time. Only these objects' bound methods are shadowed.
    """
    for item in loggers:

        def _log_packet(*args: Any, _original: Any = item._log_packet) -> None:
            if SSHLogger._debug_level >= 3:
                _original(*args)

        setattr(item, "_log_packet", _log_packet)  # noqa: B010 - see skip_cbc_countermeasure


def lean_sftp_writes(handler: Any) -> None:
    """Send SFTP writes with three copies of the data where asyncssh makes about nine.

    asyncssh copies a write's bytes into a string field, a request, a length-prefixed
    message, a ``bytearray`` send buffer, each 32 KiB slice of it, its string field and the
    channel's header, before the packet join and the encryption; at ~600 MB/s those copies
    cost as much as AES-GCM. Here the SFTP message is one join, the channel keeps it as is
    and hands memoryview slices to the connection, whose packet join is the next copy. Only
    this session's handler and channel are changed; other channels keep asyncssh's code.
    """
    channel: Any = handler._writer.channel
    original_write = channel.write

    async def write(handle: bytes, offset: int, data: bytes) -> object:
        handler.logger.debug1("Sending write for %d bytes at offset %d", len(data), offset)
        size = len(data).to_bytes(4, "big")
        return await handler._make_request(
            _FXP_WRITE, _string(handle), offset.to_bytes(8, "big"), size, data
        )

    def send_packet(pkttype: int, pktid: int | None, *args: bytes) -> None:
        writer = handler._writer
        if not writer:
            raise asyncssh.SFTPNoConnection("Connection not open")
        if writer.channel.is_closing():
            return
        head = (1 + sum(map(len, args))).to_bytes(4, "big") + bytes((pkttype,))
        writer.write(b"".join((head, *args)))
        if SSHLogger._debug_level >= 3:
            handler.log_sent_packet(pkttype, pktid, b"".join((head[4:], *args)))

    def channel_write(data: bytes, datatype: int | None = None) -> None:
        if datatype is not None or type(data) is not bytes or channel._send_state != "open":
            original_write(data, datatype)  # asyncssh's checks, errors and copy
            return
        if data:
            # Bytes are immutable: slices of a view of them stay valid until sent.
            channel._send_buf.append((memoryview(data), None))
            channel._send_buf_len += len(data)
            channel._flush_send_buf()

    def flush_send_buf() -> None:
        """asyncssh's ``_flush_send_buf`` with view slices and one join (in the connection)."""
        pending = channel._send_buf
        while pending and channel._send_window:
            size = min(channel._send_window, channel._send_pktsize)
            buf, datatype = pending[0]
            if len(buf) > size:
                data = buf[:size]  # a view, or a copy of asyncssh's own bytearray
                if isinstance(buf, memoryview):
                    pending[0] = (buf[size:], datatype)
                else:
                    del buf[:size]
            else:
                data = buf
                del pending[0]
            channel._send_buf_len -= len(data)
            channel._send_window -= len(data)
            if channel._send_chan is None:
                continue
            head = [channel._send_chan.to_bytes(4, "big")]
            if datatype is None:
                pkttype = _MSG_CHANNEL_DATA
            else:
                pkttype = _MSG_CHANNEL_EXTENDED_DATA
                head.append(datatype.to_bytes(4, "big"))
            head.append(len(data).to_bytes(4, "big"))
            channel._conn.send_packet(pkttype, *head, data, handler=channel)
        channel._pause_resume_writing()
        if not pending:
            if channel._send_state == "eof_pending":
                channel.send_packet(_MSG_CHANNEL_EOF)
                channel._send_state = "eof"
            elif channel._send_state == "close_pending":
                channel._close_send()

    # Instance attributes shadow the methods: mypy forbids assigning methods, hence setattr.
    setattr(handler, "write", write)  # noqa: B010
    setattr(handler, "send_packet", send_packet)  # noqa: B010
    setattr(channel, "write", channel_write)  # noqa: B010
    setattr(channel, "_flush_send_buf", flush_send_buf)  # noqa: B010


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


class GcmOpener:
    """asyncssh's AES-GCM packet decryption with one AESGCM per key and one copy per packet.

    Stands in for a ``GCMEncryption`` as the connection's receive side (asyncssh only calls
    these two methods there); the IV stays in the wrapped cipher, so the two never disagree.
    """

    def __init__(self, encryption: GCMEncryption) -> None:
        self._cipher: Any = encryption._cipher
        self._aead = AESGCM(self._cipher._key)
        # A packet already opened by ``open`` and handed to asyncssh next: (plaintext or None).
        self.ready: tuple[bytes | None] | None = None

    def open(self, packet: bytes | memoryview) -> bytes | None:
        """Open one whole wire packet (length, sealed body, tag); kept for asyncssh too."""
        cipher = self._cipher
        view = memoryview(packet)
        try:
            opened: bytes | None = self._aead.decrypt(cipher._iv, view[4:], view[:4])
        except InvalidTag:
            opened = None
        cipher._update_iv()
        self.ready = (opened,)
        return opened

    def decrypt_header(self, seq: int, first: bytes, header_len: int) -> tuple[bytes, bytes]:
        return first, first[:header_len]

    def decrypt_packet(
        self, seq: int, first: bytes, rest: bytes, header_len: int, mac: bytes
    ) -> bytes | None:
        if self.ready is not None:  # opened already: the IV has moved on once
            (kept,), self.ready = self.ready, None
            return kept
        cipher = self._cipher
        sealed = b"".join((memoryview(first)[header_len:], rest, mac))
        try:
            opened: bytes | None = self._aead.decrypt(cipher._iv, sealed, first[:header_len])
        except InvalidTag:
            opened = None  # asyncssh turns this into its MACError
        cipher._update_iv()
        return opened
