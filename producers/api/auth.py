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
- Every check goes through the sign-in defender (``bus.signin``, door ``api``): a banned client
  address or account is refused unchecked (``Banned``: 429 with ``Retry-After``), a wrong
  password, an unknown token or unreadable credentials is scored and evented, and an unknown or
  inactive login costs the same argon2 check as a known one (off the event loop).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from pathlib import Path

from bus.config.secrets import OperatorKey, stored_hash
from bus.config.view import ConfigView
from bus.defender import Attempt
from bus.errors import ConfigurationError
from bus.events.config import DataUser
from bus.signin import Banned, SignInGate
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

    def __init__(
        self, tokens: TokenBook, gate: SignInGate | None = None, key_file: Path | None = None
    ) -> None:
        self._tokens = tokens
        self.gate = gate or SignInGate("api")
        self._key_file = key_file  # decrypts data users' hashes (``bus.config.secrets``)
        self._verified: dict[tuple[str, str], str] = {}  # (login, stored form) -> digest

    async def principal(
        self, header: str | None, view: ConfigView, address: str | None = None
    ) -> Principal | Banned | None:
        """The caller of ``address`` (the client's IP), ``Banned`` (refused unchecked), or
        None (no or wrong credentials: 401)."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme not in ("bearer", "basic"):
            return None
        refused = self.gate.banned(address, None)
        if refused is not None:
            return refused
        if scheme == "bearer":
            found = self._tokens.check(value.strip())
            if found is None:
                self.gate.failed(address, None, Attempt.TOKEN)
                return None
            return Principal(found.name, can_act=found.can_act)
        return await self._basic(value.strip(), view, address)

    @staticmethod
    def _stored(login: str, view: ConfigView) -> tuple[DataUser, str] | None:
        """An active data user and its stored hash as it travels (encrypted, or clear in old
        events): what a remembered check is keyed on, read without decrypting anything."""
        user = view.users.get(login)
        if user is None or not user.active:
            return None
        sealed = user.password_secret
        stored = sealed.ciphertext.decode() if sealed is not None else user.password_hash
        return (user, stored) if stored is not None else None

    def _hash(self, user: DataUser) -> str | None:
        """The argon2 hash of ``user``, decrypted; None under a key this machine does not
        have (no one can sign in as them)."""
        try:
            key = OperatorKey.load(self._key_file, create=False) if self._key_file else None
            return stored_hash(user, key)
        except ConfigurationError:
            return None

    async def _basic(
        self, value: str, view: ConfigView, address: str | None
    ) -> Principal | Banned | None:
        try:
            login, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            login, sep, password = "", "", ""
        if not sep or not login:
            self.gate.failed(address, None, Attempt.MALFORMED)
            return None
        found = self._stored(login, view)
        if found is not None:
            # a script putting many files pays the key file and argon2 once
            remembered = self._verified.get((login, found[1]))
            if remembered is not None and hmac.compare_digest(remembered, token_digest(password)):
                refused = self.gate.banned(address, login)
                if refused is not None:
                    return refused
                self.gate.succeeded(login)
                return Principal(login, user=login)
        password_hash = self._hash(found[0]) if found is not None else None
        # an unknown login is checked against a dummy hash: the same cost as a known one
        outcome = await self.gate.check(address, login, password_hash, password)
        if outcome is not True:
            return outcome if isinstance(outcome, Banned) else None
        assert found is not None  # a check against no hash never passes
        self._verified[(login, found[1])] = token_digest(password)
        return Principal(login, user=login)
