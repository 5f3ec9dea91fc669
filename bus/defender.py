"""The sign-in defender's rules: failed sign-ins scored per address and per account, bans that
grow on repeat. Pure: no clock, no I/O; ``now`` is passed in (seconds, any monotonic origin).

Modelled on SFTPGo's defender. Rules kept here:

- Every failed sign-in adds the score of its kind (``Policy.scores``) to its address and, when
  a login was given, to that account. A wrong password and an unknown login score the same, so
  counting attempts up to a ban tells nothing about which logins exist.
- Scores older than ``Policy.observation`` seconds no longer count. When an address or account
  reaches its threshold within that window, it is banned for ``Policy.ban`` seconds, and each
  further ban of the same key lasts ``Policy.growth`` times longer than the one before (capped
  at ``Policy.max_ban``); the count of bans is forgotten after ``Policy.memory`` seconds quiet.
- A banned key is refused before any password is checked; attempts while banned neither score
  nor lengthen the ban (the answer's ``Retry-After`` stays true).
- A successful sign-in clears its account's score (not its address's: one known password must
  not buy an address fresh guesses at other accounts).
- At most ``Policy.max_entries`` keys are remembered; past that, the quietest keys are
  forgotten first, so a flood of made-up logins costs bounded memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# the event enums are the vocabulary (one home): a failure's kind and a ban's scope
from bus.events.portal import BanScope as Scope
from bus.events.portal import SignInAttempt as Attempt

_SCORES: Mapping[Attempt, int] = MappingProxyType(
    {Attempt.PASSWORD: 2, Attempt.TOKEN: 2, Attempt.MALFORMED: 1}
)


@dataclass(frozen=True, slots=True)
class Policy:
    """How many points ban, for how long (seconds); SFTPGo's defaults but per account too."""

    address_threshold: int = 15
    account_threshold: int = 15
    observation: float = 30 * 60.0
    ban: float = 30 * 60.0
    growth: float = 1.5
    max_ban: float = 24 * 3600.0
    memory: float = 24 * 3600.0
    max_entries: int = 10_000
    scores: Mapping[Attempt, int] = field(default_factory=lambda: _SCORES, hash=False)

    def threshold(self, scope: Scope) -> int:
        return self.address_threshold if scope is Scope.ADDRESS else self.account_threshold

    def ban_seconds(self, offence: int) -> float:
        """How long the ``offence``-th ban (1, 2, ...) of one key lasts."""
        return min(self.max_ban, self.ban * self.growth ** (offence - 1))


@dataclass(frozen=True, slots=True)
class Ban:
    """A key refused until ``until`` (the ``offence``-th ban of that key)."""

    scope: Scope
    key: str
    since: float
    until: float
    offence: int
    score: int

    def retry_after(self, now: float) -> int:
        """Whole seconds to wait (at least 1)."""
        return max(1, int(self.until - now + 0.999))


@dataclass(slots=True)
class _Entry:
    hits: list[tuple[float, int]] = field(default_factory=list)  # (when, score) in the window
    ban: Ban | None = None
    offences: int = 0
    last: float = 0.0


class Defender:
    """The scores and bans of every address and account seen failing (state only; no I/O)."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self._entries: dict[tuple[Scope, str], _Entry] = {}

    def banned(self, address: str | None, account: str | None, now: float) -> Ban | None:
        """The ban that refuses this sign-in now (the longest one), or None."""
        found = [
            entry.ban
            for key in self._keys(address, account)
            if (entry := self._entries.get(key)) is not None
            and entry.ban is not None
            and entry.ban.until > now
        ]
        return max(found, key=lambda b: b.until, default=None)

    def failed(
        self, address: str | None, account: str | None, attempt: Attempt, now: float
    ) -> tuple[int, list[Ban]]:
        """Score one failed sign-in; (the address's score now, the bans it starts)."""
        points = self.policy.scores.get(attempt, 1)
        started: list[Ban] = []
        address_score = 0
        for key in self._keys(address, account):
            entry = self._entries.get(key) or _Entry()
            self._entries[key] = entry
            if entry.ban is not None and entry.ban.until > now:
                continue  # already banned: no extra score, the ban's end stays as told
            if entry.ban is not None and now - entry.ban.until > self.policy.memory:
                entry.offences = 0
            entry.hits = [h for h in entry.hits if now - h[0] < self.policy.observation]
            entry.hits.append((now, points))
            entry.last = now
            score = sum(p for _, p in entry.hits)
            if key[0] is Scope.ADDRESS:
                address_score = score
            if score >= self.policy.threshold(key[0]):
                entry.offences += 1
                until = now + self.policy.ban_seconds(entry.offences)
                entry.ban = Ban(key[0], key[1], now, until, entry.offences, score)
                entry.hits = []
                started.append(entry.ban)
        self._bound(now)
        return address_score, started

    def succeeded(self, account: str, now: float) -> None:
        """A right password: the account's score starts again from nothing."""
        entry = self._entries.get((Scope.ACCOUNT, account))
        if entry is not None:
            entry.hits = []

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _keys(address: str | None, account: str | None) -> list[tuple[Scope, str]]:
        keys: list[tuple[Scope, str]] = []
        if address:
            keys.append((Scope.ADDRESS, address))
        if account:
            keys.append((Scope.ACCOUNT, account))
        return keys

    def _bound(self, now: float) -> None:
        """Forget keys with nothing left to remember, then the quietest past the limit."""
        if len(self._entries) <= self.policy.max_entries:
            return
        horizon = max(self.policy.observation, self.policy.memory)
        for key, entry in list(self._entries.items()):
            ended = entry.ban is None or entry.ban.until <= now
            if ended and now - entry.last > horizon:
                del self._entries[key]
        excess = len(self._entries) - self.policy.max_entries
        if excess > 0:
            quiet = sorted(
                (e.last, k) for k, e in self._entries.items() if e.ban is None or e.ban.until <= now
            )
            for _, key in quiet[:excess]:
                del self._entries[key]


__all__ = ["Attempt", "Ban", "Defender", "Policy", "Scope"]
