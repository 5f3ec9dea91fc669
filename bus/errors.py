"""The project's own errors.

Every failure that crosses a boundary (protocol adapter, store backend, codec, broker) is
translated into one of these, chained with ``from`` to the library error that caused it.
Each carries ``retriable``: retry policy reads the flag, never the message text.
"""

from __future__ import annotations


class EcpdsError(Exception):
    """Base of every ecpds error; ``retriable`` says whether trying again may succeed."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable

    @property
    def message(self) -> str:
        return str(self)


class ConfigurationError(EcpdsError):
    """A setting or a configuration entity is invalid; ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", retriable=False)
        self.field = field
        self.reason = reason


class DecodeError(EcpdsError):
    """A message could not be decoded into a known event (never retriable)."""

    retriable = False


class TransientError(EcpdsError):
    """A failure that may go away by itself: timeout, connection reset, broker away, 5xx."""

    retriable = True


class PermanentError(EcpdsError):
    """A failure that will repeat until someone changes something."""

    retriable = False


class InfrastructureError(EcpdsError):
    """A local service (Kafka, PostgreSQL, MQTT) could not be installed, started or reached."""

    retriable = False


class UnknownSchema(DecodeError):
    """A single-object message whose schema fingerprint is not in ``schemas/``."""
