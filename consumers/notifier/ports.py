"""What the notifier needs from outside: an MQTT broker (and the configuration, through
``bus.config.source.ConfigSource``).

``adapters.PahoBroker`` is the production ``Broker``.
"""

from __future__ import annotations

from typing import Protocol

from consumers.notifier.core import Notification


class Broker(Protocol):
    """Publishes MQTT messages.

    ``publish`` returns once the broker has the message (PUBACK/PUBCOMP for qos 1/2, written
    to the socket for qos 0); it raises ``TransientError`` when the broker is unreachable or
    does not answer, ``PermanentError`` when it refuses the message.
    """

    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def publish(self, note: Notification) -> None: ...

    async def stop(self) -> None: ...
