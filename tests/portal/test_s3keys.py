"""The S3 door's sealed secrets (``producers.portal.s3keys``): a password sealed with the
operator key is the user's S3 secret while it still verifies against the user's current
argon2 hash, and never in clear on disk."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet

from bus.config.secrets import hash_password
from producers.portal.s3keys import S3Secrets, seal


async def test_a_sealed_password_is_the_secret_until_the_password_changes(tmp_path: Path) -> None:
    """The sealed password comes back for its login; the file holds no clear text; a hash of
    another password (the user's password changed) voids it; resealing replaces the line."""
    key, path = tmp_path / "ecpds.key", tmp_path / "secrets" / "portal-s3-secrets"
    seal(path, key, "site-a", "first-password")
    seal(path, key, "site-b", "other-password")
    assert b"first-password" not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    secrets = S3Secrets(path, key)
    assert await secrets.secret("site-a", hash_password("first-password")) == "first-password"
    assert await secrets.secret("site-a", hash_password("changed-password")) is None
    assert await secrets.secret("nobody", hash_password("first-password")) is None
    seal(path, key, "site-a", "changed-password")
    assert await secrets.secret("site-a", hash_password("changed-password")) == "changed-password"
    assert len(path.read_text().splitlines()) == 2


async def test_a_secret_under_another_operator_key_is_none(tmp_path: Path) -> None:
    """A line sealed with another operator key does not decrypt here: no secret, no error."""
    path = tmp_path / "portal-s3-secrets"
    seal(path, tmp_path / "other.key", "site-a", "a-password")
    secrets = S3Secrets(path, tmp_path / "ecpds.key")
    (tmp_path / "ecpds.key").write_bytes(Fernet.generate_key())
    assert await secrets.secret("site-a", hash_password("a-password")) is None
