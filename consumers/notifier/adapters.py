"""The MQTT broker the notifier publishes to, through paho, driven by the event loop.

Rules kept here:

- paho's network loop runs on the notifier's own event loop, through paho's hooks for an
  external loop (``on_socket_open``/``close``/``register_write``/``unregister_write``): the
  socket is read and written when the loop sees it ready, ``loop_misc`` keeps the connection
  alive every second. There is no network thread: a PUBACK settles its ``publish`` in the
  same loop iteration it is read, instead of after two thread hand-overs that each wait for
  the GIL (with paho's own thread that cost ~10 ms a message under load, and capped the
  notifier below 500 messages/s).
- The connection is made, and made again after it is lost, by ``_drive``: the TCP connect and
  CONNECT run in a worker thread (a broker that drops SYNs must not stall the loop), then
  every further call is on the loop. A lost or refused connection is retried after 1 s,
  doubling to 10 s.
- ``publish`` waits for the connection, then for the broker's acknowledgement
  (PUBACK/PUBCOMP; for qos 0 the write), each at most ``timeout`` seconds.
- MQTT 5 for message expiry and content type, unless the broker is known not to speak it:
  ``for_settings`` speaks 3.1.1 to the embedded amqtt broker from the first CONNECT (it logs
  every MQTT 5 one as an invalid protocol). A broker that refuses MQTT 5 anyway ("unsupported
  protocol version") is spoken to in 3.1.1 from its refusal on, without those two properties
  (a warning says so once); the switch is made at once, not at the next publish.
- Errors are the project's: unreachable, disconnected or silent -> ``TransientError``; a
  message refused (reason code >= 0x80, except "server busy" and "quota exceeded", or a topic
  paho rejects) -> ``PermanentError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bus.errors import PermanentError, TransientError
from bus.logging import get_logger
from bus.mqtt import speaks_mqtt5
from bus.settings import Settings
from consumers.notifier.core import Notification

log = get_logger(__name__)
UNSUPPORTED_PROTOCOL: Final = 0x84
RETRIABLE_REFUSALS: Final = frozenset({0x89, 0x97})  # server busy, quota exceeded
IN_FLIGHT: Final = 1000  # qos 1/2 messages awaiting their acknowledgement (paho's default: 20)
RECONNECT: Final = (1.0, 10.0)  # first and longest wait before connecting again, seconds


class PahoBroker:
    """Publishes notifications to one MQTT broker (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "ecpds-notifier",
        timeout: float = 10.0,
        mqtt5: bool = True,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self._host = host
        self._credentials = credentials  # (username, password) when the broker asks for one
        self._port = port
        self._client_id = client_id
        self._timeout = timeout
        self._protocol = paho.MQTTv5 if mqtt5 else paho.MQTTv311
        self._client: paho.Client | None = None
        self._driver: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0  # the loop's thread: paho's hooks called elsewhere hand over to it
        self._socket: Any = None  # the socket paho has open, registered with the loop
        self._connected = False
        self._downgrading: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[ReasonCode]] = {}
        self._early: dict[int, ReasonCode] = {}  # acknowledged before publish() saw the mid

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        *,
        client_id: str = "ecpds-notifier",
        credentials: tuple[str, str] | None = None,
    ) -> PahoBroker:
        """The broker of ``settings``, in the MQTT version it speaks (module docstring)."""
        return cls(
            settings.mqtt_host,
            settings.mqtt_port,
            client_id=client_id,
            mqtt5=speaks_mqtt5(settings.mqtt_broker),
            credentials=credentials,
        )

    @property
    def protocol(self) -> str:
        """The MQTT version spoken now (``5`` or ``3.1.1``)."""
        return "5" if self._protocol == paho.MQTTv5 else "3.1.1"

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._connect()

    async def stop(self) -> None:
        downgrading, self._downgrading = self._downgrading, None
        if downgrading is not None and not downgrading.done():
            downgrading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await downgrading
        await self._disconnect()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        if client is not None:
            client.disconnect()  # queued; written (and the socket closed by paho) below
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    client.loop_write()
            self._forget_socket()
            sock = client.socket()
            if sock is not None:  # DISCONNECT not written at once: close without it
                sock.close()
        self._apply(connected=False, unsupported=False)

    async def publish(self, note: Notification) -> None:
        client = await self._ready()
        properties = None
        if self._protocol == paho.MQTTv5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped here
            if note.expiry_interval_s is not None:
                properties.MessageExpiryInterval = note.expiry_interval_s
            if note.content_type:
                properties.ContentType = note.content_type
        try:
            info = client.publish(
                note.topic, note.payload, qos=note.qos, retain=note.retain, properties=properties
            )
        except ValueError as error:  # a topic with wildcards, a bad qos: no retry helps
            raise PermanentError(f"MQTT message refused by the client: {error}") from error
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise TransientError(f"MQTT publish to {self.address}: {paho.error_string(info.rc)}")
        reason = await self._acknowledged(info.mid)
        if reason.is_failure:
            message = f"MQTT broker {self.address} refused {note.topic}: {reason}"
            if reason.value in RETRIABLE_REFUSALS:
                raise TransientError(message)
            raise PermanentError(message)

    async def _acknowledged(self, mid: int) -> ReasonCode:
        assert self._loop is not None
        future: asyncio.Future[ReasonCode] = self._loop.create_future()
        early = self._early.pop(mid, None)
        if early is None:
            self._waiting[mid] = future
        else:
            future.set_result(early)
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError as error:
            raise TransientError(
                f"MQTT broker {self.address} did not acknowledge within {self._timeout}s"
            ) from error
        finally:
            self._waiting.pop(mid, None)

    async def _ready(self) -> paho.Client:
        """The connected client; ``TransientError`` when none within ``timeout``."""
        assert self._loop is not None, "start() first"
        deadline = self._loop.time() + self._timeout
        while not self._connected:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise TransientError(f"MQTT broker {self.address} unreachable")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        assert self._client is not None
        return self._client

    async def _downgrade(self) -> None:
        log.warning(
            "MQTT broker refuses MQTT 5: publishing in 3.1.1 without expiry or content type",
            broker=self.address,
        )
        await self._disconnect()
        self._protocol = paho.MQTTv311
        self._connect()

    def _connect(self) -> None:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=self._protocol
        )
        client.max_inflight_messages_set(IN_FLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        if self._credentials is not None:
            client.username_pw_set(*self._credentials)
        client.connect_async(self._host, self._port, keepalive=30)  # records where, no I/O
        self._client = client  # before any callback: they check it
        self._driver = asyncio.create_task(self._drive(client))

    async def _drive(self, client: paho.Client) -> None:
        """Connect ``client``, keep it alive, connect it again when lost (module docstring)."""
        assert self._loop is not None
        wait = RECONNECT[0]
        while client is self._client:
            if self._socket is None:
                try:
                    # connect + CONNECT in a thread; the socket hooks it calls hand over to the loop
                    await asyncio.to_thread(client.reconnect)
                except (OSError, ValueError) as error:
                    log.debug("MQTT broker not reachable", broker=self.address, error=str(error))
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RECONNECT[1])
                    continue
                await asyncio.sleep(0)  # let the hooks' hand-over run
                await self._until_settled(wait)
                if self._connected:
                    wait = RECONNECT[0]
                elif self._socket is None:  # refused or closed at once
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RECONNECT[1])
                    continue
            client.loop_misc()  # PINGREQ when due; closes a connection whose broker is silent
            await asyncio.sleep(1.0)

    async def _until_settled(self, most: float) -> None:
        """Wait (at most ``most`` seconds) for the CONNACK or the socket's end."""
        self._changed.clear()
        if self._connected or self._socket is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), most)

    # paho's socket hooks: those of a connection being made run in the connecting thread, and
    # hand over to the loop (which alone touches its selector and this object)

    def _on_socket_open(self, client: paho.Client, _u: Any, sock: Any) -> None:
        self._loop_or_fail().call_soon_threadsafe(self._watch, client, sock)

    def _watch(self, client: paho.Client, sock: Any) -> None:
        if client is not self._client:  # stopped while it connected
            sock.close()
            return
        self._socket = sock
        self._loop_or_fail().add_reader(sock, self._readable, client)
        if client.want_write():
            self._on_register_write(client, None, sock)

    def _readable(self, client: paho.Client) -> None:
        client.loop_read()

    def _writable(self, client: paho.Client) -> None:
        client.loop_write()

    def _on_socket_close(self, client: paho.Client, _u: Any, sock: Any) -> None:
        if threading.get_ident() != self._thread:
            self._loop_or_fail().call_soon_threadsafe(self._on_socket_close, client, _u, sock)
        elif sock is self._socket:
            self._forget_socket()

    def _on_register_write(self, client: paho.Client, _u: Any, sock: Any) -> None:
        if threading.get_ident() != self._thread:
            self._loop_or_fail().call_soon_threadsafe(self._on_register_write, client, _u, sock)
        elif sock is self._socket:
            self._loop_or_fail().add_writer(sock, self._writable, client)

    def _on_unregister_write(self, client: paho.Client, _u: Any, sock: Any) -> None:
        if threading.get_ident() != self._thread:
            self._loop_or_fail().call_soon_threadsafe(self._on_unregister_write, client, _u, sock)
        elif sock is self._socket:
            self._loop_or_fail().remove_writer(sock)

    def _forget_socket(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            loop = self._loop_or_fail()
            loop.remove_reader(sock)
            loop.remove_writer(sock)
        self._changed.set()

    def _loop_or_fail(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() first"
        return self._loop

    # paho's protocol callbacks (on the loop; CONNACK may come before the socket is watched)

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if client is not self._client:
            return
        if not reason.is_failure:
            self._apply(connected=True, unsupported=False)
        elif reason.value == UNSUPPORTED_PROTOCOL and self._protocol == paho.MQTTv5:
            self._apply(connected=False, unsupported=True)
        else:
            log.warning("MQTT connection refused", broker=self.address, reason=str(reason))

    def _on_disconnect(self, client: paho.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        if client is self._client:
            self._apply(connected=False, unsupported=False)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        future = self._waiting.pop(mid, None)
        if future is None:
            self._early[mid] = reason
        elif not future.done():
            future.set_result(reason)

    def _apply(self, *, connected: bool, unsupported: bool) -> None:
        self._connected = connected
        if unsupported and self._downgrading is None and self._protocol == paho.MQTTv5:
            self._downgrading = asyncio.ensure_future(self._downgrade())
        if not connected:
            self._early.clear()  # acknowledgements of messages nobody waits for any more
        self._changed.set()
