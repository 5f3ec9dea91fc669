"""The one retry policy of ecpds: how patiently a retriable failure is tried again.

A failure is tried again only when it is retriable (``bus.consumer.is_retriable`` reads the
error's flag, never its message) and attempts remain: ``max_attempts`` of ``None`` means as long
as it takes (a stage that must not drop a record while a remote service is down). The delay
after failed attempt ``n`` (1-based) doubles from ``initial`` and is capped at ``maximum``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Doubling delays, capped, for at most ``max_attempts`` attempts (``None``: no limit)."""

    initial: float = 0.5
    maximum: float = 30.0
    max_attempts: int | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        doublings = min(max(attempt - 1, 0), 64)  # past the cap anyway; keeps the float finite
        return float(min(self.maximum, self.initial * 2.0**doublings))

    def retry(self, attempt: int, retriable: bool) -> bool:
        """Whether to try again after failed attempt number ``attempt``."""
        return retriable and (self.max_attempts is None or attempt < self.max_attempts)
