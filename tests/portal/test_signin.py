"""Sign-in at the portal's SFTP door through the sign-in defender: wrong passwords from one
address are scored until it is banned, and then even the right password is refused unchecked.
A module of its own: the ban holds 127.0.0.1, which every other test connects from."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bus.events.portal import BanScope, SignInBanned, SignInFailed
from tests.portal.conftest import PortalStack

pytestmark = pytest.mark.kafka


async def test_wrong_passwords_until_banned_then_even_the_right_one_is_refused(
    portal: PortalStack, tmp_path: Path
) -> None:
    """Eight wrong passwords (2 points each, threshold 15) ban the address and the account
    (``SignInBanned``, door ``sftp``); the right password is then refused too, and the
    attempts made while banned are not scored."""
    login = f"victim-{portal.tag}"
    site = portal.site(login, "right-secret")
    await portal.apply(
        f"""
users:
  - login: {login}
    password: right-secret
    destinations: [pickup-{portal.tag}]
    operations: [dir]
"""
    )
    ok = portal.sftp(site, [f"ls /pickup-{portal.tag}"], password="right-secret", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr + portal.log("portal")
    for _ in range(8):
        wrong = portal.sftp(site, ["ls"], password="wrong-secret", cwd=tmp_path)
        assert wrong.returncode != 0
    await portal.until(lambda: bool(portal.events(SignInBanned)))
    bans = portal.events(SignInBanned)
    assert {b.scope for b in bans} == {BanScope.ADDRESS, BanScope.ACCOUNT}
    assert all(b.door == "sftp" for b in bans)
    failed = [e for e in portal.events(SignInFailed) if e.login == login]
    assert len(failed) == 8
    refused = portal.sftp(site, ["ls"], password="right-secret", cwd=tmp_path)
    assert refused.returncode != 0
    await asyncio.sleep(1.0)  # a scored attempt would be on the topic by now
    assert len([e for e in portal.events(SignInFailed) if e.login == login]) == 8
