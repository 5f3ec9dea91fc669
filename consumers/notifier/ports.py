"""What the notifier needs from outside: the current configuration and an MQTT broker.

``adapters.PahoBroker`` is the production ``Broker``; ``FixedConfig`` holds a view that never
changes (tests, demos), ``bus.config.view.LiveConfig`` the live one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bus.config.view import ConfigView
from consumers.notifier.core import Notification


class ConfigSource(Protocol):
    """Holds the latest configuration view."""

    @property
    def view(self) -> ConfigView: ...


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


@dataclass(frozen=True)
class FixedConfig:
    """A configuration that never changes (tests, demos)."""

    view: ConfigView
