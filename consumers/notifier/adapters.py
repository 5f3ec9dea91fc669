"""The MQTT broker the notifier publishes to, through paho.

Rules kept here:

- paho runs its network thread (``loop_start``) and reconnects by itself, the first
  connection included; its callbacks only hand results to the event loop
  (``call_soon_threadsafe``). ``publish`` waits for the connection, then for the broker's
  acknowledgement (PUBACK/PUBCOMP; for qos 0 the write), each at most ``timeout`` seconds.
- MQTT 5 for message expiry and content type, unless the broker is known not to speak it:
  ``for_settings`` speaks 3.1.1 to the embedded amqtt broker from the first CONNECT (it logs
  every MQTT 5 one as an invalid protocol). A broker that refuses MQTT 5 anyway ("unsupported
  protocol version") is spoken to in 3.1.1 from its refusal on, without those two properties
  (a warning says so once); the switch is made at once, not at the next publish, as paho would
  otherwise retry MQTT 5 every few seconds for as long as nothing is published.
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._downgrading: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._lock = threading.Lock()  # guards the two tables below (network thread vs loop)
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
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

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
        with self._lock:
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
            with self._lock:
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
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self._credentials is not None:
            client.username_pw_set(*self._credentials)
        self._client = client  # before the network thread starts: its callbacks check it
        client.connect_async(self._host, self._port, keepalive=30)
        client.loop_start()  # retries the first connection too

    # paho callbacks, on its network thread: hand over to the event loop, nothing more

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if client is not self._client:
            return
        if not reason.is_failure:
            self._state(connected=True)
        elif reason.value == UNSUPPORTED_PROTOCOL and self._protocol == paho.MQTTv5:
            self._state(unsupported=True)
        else:
            log.warning("MQTT connection refused", broker=self.address, reason=str(reason))

    def _on_disconnect(self, client: paho.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        if client is self._client:
            self._state(connected=False)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            future = self._waiting.pop(mid, None)
            if future is None:
                self._early[mid] = reason
                return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle, future, reason)

    def _state(self, *, connected: bool = False, unsupported: bool = False) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._apply, connected, unsupported)

    def _apply(self, connected: bool, unsupported: bool) -> None:
        self._connected = connected
        if unsupported and self._downgrading is None and self._protocol == paho.MQTTv5:
            self._downgrading = asyncio.ensure_future(self._downgrade())
        if not connected:
            with self._lock:
                self._early.clear()  # acknowledgements of messages nobody waits for any more
        self._changed.set()


def _settle(future: asyncio.Future[ReasonCode], reason: ReasonCode) -> None:
    if not future.done():
        future.set_result(reason)
