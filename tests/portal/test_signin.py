"""Sign-in at the portal's SFTP door through the sign-in defender: wrong passwords from one
address are scored until it is banned, and then even the right password is refused unchecked.
A module of its own: the ban holds 127.0.0.1, which every other test connects from."""

from __future__ import annotations

import asyncio
import ftplib
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


async def test_the_ftp_door_bans_too_and_then_refuses_the_right_password_with_530(
    portal: PortalStack,
) -> None:
    """Through the FTP door (a defender of its own, door ``ftp``): eight wrong passwords ban
    the address and the account, after which the right password answers 530 unchecked."""
    login = f"ftpvictim-{portal.tag}"
    await portal.apply(
        f"""
users:
  - login: {login}
    password: right-secret
    destinations: [pickup-{portal.tag}]
    operations: [dir]
"""
    )
    await asyncio.sleep(1.0)  # the portal follows the configuration topic

    def sign_in(password: str) -> str:
        with ftplib.FTP(timeout=30) as client:  # noqa: S321 - plain FTP is a door under test
            client.connect("127.0.0.1", portal.ftp_port)
            try:
                return client.login(login, password)
            except ftplib.error_perm as refused:
                return str(refused)

    assert (await asyncio.to_thread(sign_in, "right-secret")).startswith("230")
    for _ in range(8):
        assert (await asyncio.to_thread(sign_in, "wrong-secret")).startswith("530")
    await portal.until(lambda: any(b.door == "ftp" for b in portal.events(SignInBanned)))
    refused = await asyncio.to_thread(sign_in, "right-secret")
    assert refused.startswith("530 too many failed sign-ins")
