"""What the mailer needs from outside: the current configuration and a way to deliver a mail.

``bus.config.view.LiveConfig`` is the production ``ConfigSource``; ``delivery.SmtpTransport``
and ``delivery.OutboxTransport`` are the ``Transport``s.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from bus.config.view import ConfigView
from bus.errors import EcpdsError


class ConfigSource(Protocol):
    """Holds the latest configuration view."""

    @property
    def view(self) -> ConfigView: ...


@dataclass(frozen=True)
class FixedConfig:
    """A configuration that never changes (tests, demos)."""

    view: ConfigView


class DeliveryError(EcpdsError):
    """A mail was not delivered; ``retriable`` says whether trying again may work (server
    down, 4xx) or not (5xx: recipient refused, message rejected)."""

    def __init__(self, reason: str, *, retriable: bool) -> None:
        super().__init__(reason, retriable=retriable)
        self.reason = reason


class Transport(Protocol):
    """Delivers one message or raises ``DeliveryError``."""

    @property
    def name(self) -> str:
        """Where mails go, for logs (never with credentials)."""
        ...

    async def deliver(self, message: EmailMessage) -> None: ...
