"""The one retry policy of ecpds: how patiently a retriable failure is tried again.

A failure is tried again only when it is retriable (``bus.consumer.is_retriable`` reads the
error's flag, never its message) and attempts remain: ``max_attempts`` of ``None`` means as long
as it takes (a stage that must not drop a record while a remote service is down). The delay
after failed attempt ``n`` (1-based) doubles from ``initial`` and is capped at ``maximum``.

``until_acknowledged`` is how a runner publishes what must not be lost before it moves on (an
outcome, a dead letter): retriable failures are tried again for as long as it takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bus.consumer import is_retriable
from bus.logging import get_logger

log = get_logger(__name__)


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


PUBLISH = RetryPolicy(initial=0.2, maximum=5.0)  # a broker away: try again soon, then every 5 s


async def until_acknowledged(
    send: Callable[[], Awaitable[object]], what: str, policy: RetryPolicy = PUBLISH
) -> None:
    """Await ``send`` until it succeeds, waiting ``policy``'s delays after each retriable
    failure (logged as ``what``); a permanent failure is raised."""
    attempt = 0
    while True:
        try:
            await send()
            return
        except Exception as error:
            if not is_retriable(error):
                raise
            attempt += 1
            log.warning(f"{what} failed, retrying", attempt=attempt, error=str(error))
            await asyncio.sleep(policy.delay(attempt))
