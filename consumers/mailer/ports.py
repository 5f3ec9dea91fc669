"""What the mailer needs from outside: a way to deliver a mail (and the configuration, through
``bus.config.source.ConfigSource``).

``delivery.SmtpTransport`` and ``delivery.OutboxTransport`` are the ``Transport``s.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

from bus.errors import EcpdsError


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
