"""One sign-in door: the defender's rules (``bus.defender``), the off-loop password check
(``bus.passwords``), the clock, the log and the events, for every place a caller signs in (the
monitor, the ingest API, and the portal's SFTP/FTP/HTTPS/S3 servers).

Rules kept here:

- A banned address or account is refused before any password is checked (``Banned``, whose
  ``retry_after`` the door sends as ``Retry-After``).
- Every failed sign-in is logged and published as ``SignInFailed``; every ban as
  ``SignInBanned`` (a warning). Events are published in the background: a sign-in answer never
  waits on Kafka, and a broker that is down costs a log line, not the sign-in.
- The defender keys on the client address the door saw (behind a proxy, the door passes the
  forwarded address it trusts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bus.defender import Attempt, Ban, Defender, Policy, Scope
from bus.events import Event, envelope
from bus.events.portal import SignInBanned, SignInFailed
from bus.logging import get_logger
from bus.passwords import PasswordChecker

log = get_logger(__name__)

Publish = Callable[[str, Event], Awaitable[object]]
"""Publishes one event under a key (the door's topic is the caller's business)."""


@dataclass(frozen=True, slots=True)
class Banned:
    """A sign-in refused unchecked: this address or account is banned for ``retry_after`` s."""

    retry_after: int
    scope: Scope


class SignInGate:
    """The sign-in defender of one door (``door``: ``monitor``, ``api``, ``sftp`` ...)."""

    def __init__(
        self,
        door: str,
        publish: Publish | None = None,
        *,
        policy: Policy | None = None,
        checker: PasswordChecker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.door = door
        self.defender = Defender(policy)
        self.checker = checker or PasswordChecker()
        self._publish = publish
        self._clock = clock
        self._pending: set[asyncio.Task[None]] = set()

    def banned(self, address: str | None, login: str | None) -> Banned | None:
        """Whether this sign-in is refused unchecked, and for how long."""
        now = self._clock()
        ban = self.defender.banned(address, login, now)
        return Banned(ban.retry_after(now), ban.scope) if ban is not None else None

    async def check(
        self, address: str | None, login: str, password_hash: str | None, password: str
    ) -> bool | Banned:
        """Sign ``login`` in with ``password`` against its hash (None: no such login, checked
        at the same cost): True, False (scored and evented) or ``Banned`` (not checked)."""
        refused = self.banned(address, login)
        if refused is not None:
            return refused
        if await self.checker.verify(password_hash, password):
            self.defender.succeeded(login, self._clock())
            return True
        self.failed(address, login, Attempt.PASSWORD)
        return False

    def failed(self, address: str | None, login: str | None, attempt: Attempt) -> None:
        """Score one failed sign-in; log it and publish it (and any ban it starts)."""
        now = self._clock()
        score, bans = self.defender.failed(address, login, attempt, now)
        log.info(
            "sign-in failed",
            door=self.door,
            login=login,
            client_address=address,
            attempt=attempt.value,
            score=score,
        )
        key = login or address or "-"
        source = f"{self.door}/defender"
        self._emit(
            key,
            SignInFailed(
                envelope=envelope(source, key),
                door=self.door,
                attempt=attempt,
                login=login,
                client_address=address,
                score=score,
            ),
        )
        for ban in bans:
            self._banned(ban, address, login, now, key, source)

    def _banned(
        self, ban: Ban, address: str | None, login: str | None, now: float, key: str, source: str
    ) -> None:
        seconds = ban.until - now
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        log.warning(
            "sign-in banned",
            door=self.door,
            scope=ban.scope.value,
            banned=ban.key,
            seconds=round(seconds),
            offence=ban.offence,
            score=ban.score,
        )
        self._emit(
            key,
            SignInBanned(
                envelope=envelope(source, key),
                door=self.door,
                scope=ban.scope,
                banned=ban.key,
                banned_until=until,
                ban_ms=int(seconds * 1000),
                offence=ban.offence,
                score=ban.score,
                login=login,
                client_address=address,
            ),
        )

    def succeeded(self, login: str) -> None:
        """A sign-in that passed another way (a remembered password): clear the account."""
        self.defender.succeeded(login, self._clock())

    def _emit(self, key: str, event: Event) -> None:
        if self._publish is None:
            return
        task = asyncio.get_running_loop().create_task(self._send(key, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, key: str, event: Event) -> None:
        assert self._publish is not None
        try:
            await self._publish(key, event)
        except Exception as error:  # a lost event must not fail the sign-in
            log.warning(
                "sign-in event not published",
                door=self.door,
                event_type=event.AVRO_NAME,
                error=str(error),
            )

    async def drain(self) -> None:
        """Wait for the events still being published (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        self.checker.close()


__all__ = ["Banned", "Publish", "SignInGate"]
