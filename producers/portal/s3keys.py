"""The S3 door's secrets: a data user's S3 secret is its password, kept sealed on the portal's
machine, because SigV4 needs the secret in clear and the configuration keeps only an argon2
hash of a password (``bus.config.secrets``).

Rules kept here:

- The file ``<var>/secrets/portal-s3-secrets`` (mode 0600) holds one line per data user:
  ``<login> <key id> <Fernet token>``, the password encrypted with the operator key
  (``OperatorKey``), like a host's credentials. It is written by
  ``python -m producers.portal.s3keys <login>`` (the password read from stdin) and re-read
  when it changes, no restart.
- A sealed password is used only while it still verifies against the user's current argon2
  hash: a password changed in the configuration voids its S3 secret until it is sealed again
  (checked off the event loop, once per hash and secret).
- A login without a line, or whose line does not decrypt with the operator key, has no S3
  secret: the door answers ``InvalidAccessKeyId``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from pathlib import Path

from bus.config.secrets import ClearSecret, OperatorKey, verify_password
from bus.errors import ConfigurationError
from bus.events.config import EncryptedSecret
from bus.private import replace_private
from bus.settings import Settings

FILE_NAME = "portal-s3-secrets"


def secrets_file(var_dir: Path) -> Path:
    return var_dir / "secrets" / FILE_NAME


def seal(path: Path, key_file: Path, login: str, password: str) -> None:
    """Write (or replace) ``login``'s sealed password in ``path``."""
    if not login or any(c.isspace() for c in login):
        raise ConfigurationError("s3_secret", f"{login!r} is not a login")
    sealed = OperatorKey.load(key_file).encrypt(ClearSecret(password))
    lines = [
        line
        for line in (path.read_text().splitlines() if path.exists() else [])
        if line.split(" ", 1)[0] != login
    ]
    lines.append(f"{login} {sealed.key_id} {sealed.ciphertext.decode()}")
    replace_private(path, "\n".join(lines) + "\n")


class S3Secrets:
    """The sealed S3 secrets of one portal, read from their file as it changes."""

    def __init__(self, path: Path, key_file: Path | None) -> None:
        self.path = path
        self._key_file = key_file
        self._seen: tuple[float, int] | None = None
        self._sealed: dict[str, EncryptedSecret] = {}
        # (login, hash, token) -> the secret, or None: no longer the user's password
        self._proven: dict[tuple[str, str, bytes], str | None] = {}

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._sealed, self._seen = {}, None
            return
        if self._seen == (stat.st_mtime, stat.st_size):
            return
        sealed = {}
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                sealed[parts[0]] = EncryptedSecret(key_id=parts[1], ciphertext=parts[2].encode())
        self._sealed, self._seen = sealed, (stat.st_mtime, stat.st_size)

    async def secret(self, login: str, password_hash: str | None) -> str | None:
        """``login``'s S3 secret, if sealed and still its password (``password_hash``)."""
        self._reload()
        sealed = self._sealed.get(login)
        if sealed is None or not password_hash or self._key_file is None:
            return None
        key = (login, hashlib.sha256(password_hash.encode()).hexdigest(), sealed.ciphertext)
        if key in self._proven:  # each (hash, sealed secret) pays argon2 once, even a stale one
            return self._proven[key]
        try:
            clear: str | None = OperatorKey.load(self._key_file, create=False).decrypt(sealed).value
        except ConfigurationError:
            return None  # not remembered: the key may be put in place later
        if clear is not None and not await asyncio.to_thread(verify_password, password_hash, clear):
            clear = None
        self._proven = {k: v for k, v in self._proven.items() if k[0] != login}
        self._proven[key] = clear
        return clear


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Seal a data user's password as its S3 secret (the password on stdin)."
    )
    parser.add_argument("login")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        parser.error("no password on stdin")
    path = secrets_file(settings.var_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    seal(path, settings.key_file, args.login, password)
    print(f"sealed the S3 secret of {args.login} in {path}")


if __name__ == "__main__":
    main()
