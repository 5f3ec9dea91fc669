"""The sign-in defender's rules, given/when/then over the pure core (time passed in)."""

from __future__ import annotations

from bus.defender import Attempt, Defender, Policy, Scope

POLICY = Policy(address_threshold=10, account_threshold=6, observation=60, ban=100, growth=1.5)
PASSWORD = Attempt.PASSWORD  # 2 points


def failing(defender: Defender, times: int, *, at: float = 0.0, address: str = "10.0.0.1",
            account: str | None = "alice", step: float = 1.0) -> list[Scope]:  # fmt: skip
    """Fail ``times`` sign-ins ``step`` seconds apart; the scopes of the bans they started."""
    scopes: list[Scope] = []
    for i in range(times):
        _, bans = defender.failed(address, account, PASSWORD, at + i * step)
        scopes += [b.scope for b in bans]
    return scopes


def test_failures_below_the_threshold_do_not_ban() -> None:
    """Given two wrong passwords (4 points), when a third sign-in comes, then it is not banned."""
    defender = Defender(POLICY)
    assert failing(defender, 2) == []
    assert defender.banned("10.0.0.1", "alice", 2.0) is None


def test_the_account_threshold_bans_the_account_for_every_address() -> None:
    """Given three wrong passwords for alice from three addresses (6 points on the account),
    then alice is banned from anywhere, and the addresses stay free for other accounts."""
    defender = Defender(POLICY)
    for i, address in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3")):
        defender.failed(address, "alice", PASSWORD, float(i))
    ban = defender.banned("10.9.9.9", "alice", 3.0)
    assert ban is not None
    assert (ban.scope, ban.key, ban.offence) == (Scope.ACCOUNT, "alice", 1)
    assert ban.retry_after(3.0) == 99
    assert defender.banned("10.0.0.1", "bob", 3.0) is None


def test_the_address_threshold_bans_the_address_for_every_account() -> None:
    """Given five wrong sign-ins from one address at five logins (10 points), then that address
    is banned whatever the login, and the event says which scope."""
    defender = Defender(POLICY)
    scopes: list[Scope] = []
    for i in range(5):
        scopes += failing(defender, 1, at=float(i), account=f"user{i}")
    assert scopes == [Scope.ADDRESS]
    assert defender.banned("10.0.0.1", "someone-else", 5.0) is not None
    assert defender.banned("10.0.0.2", "user0", 5.0) is None


def test_a_ban_ends_and_the_next_one_lasts_longer() -> None:
    """Given a first ban of 100 s, when it is over and the account fails again to the
    threshold, then the second ban lasts 150 s (growth 1.5)."""
    defender = Defender(POLICY)
    failing(defender, 3)
    first = defender.banned(None, "alice", 2.0)
    assert first is not None
    assert first.until - first.since == 100
    assert defender.banned(None, "alice", first.until) is None
    failing(defender, 3, at=first.until, address="10.0.0.7")
    second = defender.banned(None, "alice", first.until + 3)
    assert second is not None
    assert (second.offence, second.until - second.since) == (2, 150)


def test_attempts_while_banned_neither_score_nor_lengthen_the_ban() -> None:
    """Given a banned account, when 20 more wrong passwords come, then the ban still ends when
    it first said (its Retry-After stays true)."""
    defender = Defender(POLICY)
    failing(defender, 3, address="10.0.0.1")
    ban = defender.banned(None, "alice", 2.0)
    assert ban is not None
    for i in range(20):
        defender.failed("10.0.0.2", "alice", PASSWORD, 3.0 + i)
    again = defender.banned(None, "alice", 30.0)
    assert again is not None
    assert again.until == ban.until


def test_old_failures_leave_the_observation_window() -> None:
    """Given two wrong passwords, when the third comes after the 60 s window, then no ban."""
    defender = Defender(POLICY)
    assert failing(defender, 3, step=31.0) == []


def test_a_right_password_clears_the_account_not_the_address() -> None:
    """Given two wrong passwords for alice, when alice signs in, then two more wrong ones do not
    ban her account, but the address keeps its points (4 failures: 8 of its 10)."""
    defender = Defender(POLICY)
    failing(defender, 2)
    defender.succeeded("alice", 2.0)
    score, bans = defender.failed("10.0.0.1", "alice", PASSWORD, 3.0)
    assert (score, bans) == (6, [])
    score, bans = defender.failed("10.0.0.1", "alice", PASSWORD, 4.0)
    assert (score, [b.scope for b in bans]) == (8, [])


def test_made_up_logins_cost_bounded_memory() -> None:
    """Given a limit of 50 keys, when 1,000 made-up logins fail from many addresses, then at
    most 50 keys are remembered, and a live ban is never the one forgotten."""
    defender = Defender(Policy(account_threshold=2, max_entries=50))
    defender.failed("10.1.1.1", "victim", PASSWORD, 0.0)
    assert defender.banned(None, "victim", 0.0) is not None
    for i in range(1000):
        defender.failed(f"10.2.{i // 250}.{i % 250}", f"made-up-{i}", Attempt.MALFORMED, 1.0 + i)
    assert len(defender) <= 50
    assert defender.banned(None, "victim", 1001.0) is not None
