"""Who is calling the API: script tokens (``Authorization: Bearer``) and data users (Basic).

Rules kept here:

- Tokens live in a file (default ``var/secrets/api-tokens``, format and roles in ``bus.tokens``);
  only the SHA-256 of a token is kept, never the token. When the file does not exist it is
  created (mode 0600, in a 0700 directory) with one ``admin`` operator token, which is returned
  once so the runner can print it once to the log; lost, it can only be replaced (``ecpds token
  create NAME --role operator``). The file is re-read when it changes, no restart.
- An operator token may put on any destination; a viewer (read-only) token may only read and is
  answered 403 where it would publish; a Basic caller is a data user,
  checked with argon2 against the hash in the live configuration (decrypted with the operator
  key file, ``bus.config.secrets``), and
  ``decide`` then checks its ``put`` permission on the destination.
- argon2 is slow on purpose: a verified (login, hash, password digest) is remembered in memory
  so a script putting many files pays it once; a changed password hash invalidates it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from dataclasses import dataclass
from pathlib import Path

from bus.config.secrets import OperatorKey, stored_hash, verify_password
from bus.config.view import ConfigView
from bus.errors import ConfigurationError
from bus.tokens import Token, TokenFile, create_file, token_digest


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an operator token by name, or a data user by login."""

    name: str
    user: str | None = None  # the data user login; None for a token
    can_act: bool = True  # False for a read-only (viewer) token: nothing it sends is published

    @property
    def label(self) -> str:
        return f"user:{self.user}" if self.user else f"token:{self.name}"


class TokenBook:
    """The token file (``bus.tokens``), created with one admin operator token when missing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = TokenFile(path)

    @classmethod
    def open(cls, path: Path) -> tuple[TokenBook, str | None]:
        """The book of ``path``; a missing file is created with one admin token, returned
        (the only time it is ever seen in clear)."""
        created = create_file(path) if not path.exists() else None
        return cls(path), created

    def check(self, token: str) -> Token | None:
        """The token's name and role, or None when it is not in the file."""
        return self._file.check(token)


class Authenticator:
    """Turns an ``Authorization`` header into a ``Principal`` (or None: 401)."""

    def __init__(self, tokens: TokenBook, key_file: Path | None = None) -> None:
        self._tokens = tokens
        self._key_file = key_file  # decrypts data users' hashes (``bus.config.secrets``)
        self._verified: dict[tuple[str, str], str] = {}  # (login, stored form) -> digest

    async def principal(self, header: str | None, view: ConfigView) -> Principal | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            found = self._tokens.check(value.strip())
            return Principal(found.name, can_act=found.can_act) if found is not None else None
        if scheme == "basic":
            return await self._basic(value.strip(), view)
        return None

    async def _basic(self, value: str, view: ConfigView) -> Principal | None:
        try:
            login, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user = view.users.get(login)
        if not sep or user is None or not user.active:
            return None
        sealed = user.password_secret
        stored = sealed.ciphertext.decode() if sealed is not None else user.password_hash
        if stored is None:
            return None
        key, digest = (login, stored), token_digest(password)
        remembered = self._verified.get(key)
        if remembered is not None and hmac.compare_digest(remembered, digest):
            return Principal(login, user=login)
        try:
            operator_key = (
                OperatorKey.load(self._key_file, create=False) if self._key_file else None
            )
            password_hash = stored_hash(user, operator_key)
        except ConfigurationError:
            return None  # under a key this machine does not have: no one can sign in as them
        if password_hash is None:
            return None
        # argon2 takes tens of milliseconds of CPU: off the event loop
        if not await asyncio.to_thread(verify_password, password_hash, password):
            return None
        self._verified[key] = digest
        return Principal(login, user=login)
