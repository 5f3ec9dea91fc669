"""Who is calling the API: script tokens (``Authorization: Bearer``) and data users (Basic).

Rules kept here:

- Tokens live in a file (default ``var/secrets/api-tokens``), one ``name:sha256hex`` line each;
  only the SHA-256 of a token is kept, never the token. When the file does not exist it is
  created (mode 0600, in a 0700 directory) with one ``admin`` token, which is returned once so
  the runner can print it once to the log; lost, it can only be replaced (add a line made with
  ``python -m producers.api.auth NAME``). The file is re-read when it changes, no restart.
- A token caller is an operator (may put on any destination); a Basic caller is a data user,
  checked with argon2 against the hash in the live configuration (``bus.config.secrets``), and
  ``decide`` then checks its ``put`` permission on the destination.
- argon2 is slow on purpose: a verified (login, hash, password digest) is remembered in memory
  so a script putting many files pays it once; a changed password hash invalidates it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from bus.config.secrets import verify_password
from bus.config.view import ConfigView

TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an operator token by name, or a data user by login."""

    name: str
    user: str | None = None  # the data user login; None for a token (operator)

    @property
    def label(self) -> str:
        return f"user:{self.user}" if self.user else f"token:{self.name}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class TokenBook:
    """The token file, re-read whenever its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: int | None = None
        self._by_digest: dict[str, str] = {}

    @classmethod
    def open(cls, path: Path) -> tuple[TokenBook, str | None]:
        """The book of ``path``; a missing file is created with one admin token, returned
        (the only time it is ever seen in clear)."""
        created: str | None = None
        if not path.exists():
            created = new_token()
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                created = None  # another process created it first
            else:
                with os.fdopen(fd, "w") as out:
                    out.write("# API tokens: name:sha256hex of the token, one per line\n")
                    out.write(f"admin:{token_digest(created)}\n")
        return cls(path), created

    def _reload(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._by_digest, self._stamp = {}, None
            return
        if stamp == self._stamp:
            return
        found: dict[str, str] = {}
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, digest = line.partition(":")
            if name and len(digest) == 64:
                found[digest.lower()] = name
        self._by_digest, self._stamp = found, stamp

    def check(self, token: str) -> str | None:
        """The name of ``token``, or None when it is not in the file."""
        self._reload()
        digest = token_digest(token)
        for known, name in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return name
        return None


class Authenticator:
    """Turns an ``Authorization`` header into a ``Principal`` (or None: 401)."""

    def __init__(self, tokens: TokenBook) -> None:
        self._tokens = tokens
        self._verified: dict[tuple[str, str], str] = {}  # (login, hash) -> password digest

    async def principal(self, header: str | None, view: ConfigView) -> Principal | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            name = self._tokens.check(value.strip())
            return Principal(name) if name is not None else None
        if scheme == "basic":
            return await self._basic(value.strip(), view)
        return None

    async def _basic(self, value: str, view: ConfigView) -> Principal | None:
        try:
            login, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user = view.users.get(login)
        if not sep or user is None or not user.active or user.password_hash is None:
            return None
        key, digest = (login, user.password_hash), token_digest(password)
        remembered = self._verified.get(key)
        if remembered is not None and hmac.compare_digest(remembered, digest):
            return Principal(login, user=login)
        # argon2 takes tens of milliseconds of CPU: off the event loop
        if not await asyncio.to_thread(verify_password, user.password_hash, password):
            return None
        self._verified[key] = digest
        return Principal(login, user=login)


def main(argv: list[str]) -> None:
    """Print a new token and the line to append to the token file."""
    name = argv[1] if len(argv) > 1 else "script"
    token = new_token()
    sys.stdout.write(f"token: {token}\nline:  {name}:{token_digest(token)}\n")


if __name__ == "__main__":
    main(sys.argv)
