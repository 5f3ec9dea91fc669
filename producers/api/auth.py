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
- Every check goes through the sign-in defender (``bus.signin``, door ``api``): a banned client
  address or account is refused unchecked (``Banned``: 429 with ``Retry-After``), a wrong
  password, an unknown token or unreadable credentials is scored and evented, and an unknown or
  inactive login costs the same argon2 check as a known one (off the event loop).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from bus.config.view import ConfigView
from bus.defender import Attempt
from bus.signin import Banned, SignInGate

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

    def __init__(self, tokens: TokenBook, gate: SignInGate | None = None) -> None:
        self._tokens = tokens
        self.gate = gate or SignInGate("api")
        self._verified: dict[tuple[str, str], str] = {}  # (login, hash) -> password digest

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
            name = self._tokens.check(value.strip())
            if name is None:
                self.gate.failed(address, None, Attempt.TOKEN)
                return None
            return Principal(name)
        return await self._basic(value.strip(), view, address)

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
        user = view.users.get(login)
        known = user is not None and user.active and user.password_hash is not None
        password_hash = user.password_hash if user is not None and known else None
        if password_hash is not None:
            remembered = self._verified.get((login, password_hash))
            if remembered is not None and hmac.compare_digest(remembered, token_digest(password)):
                refused = self.gate.banned(address, login)
                if refused is not None:
                    return refused
                self.gate.succeeded(login)
                return Principal(login, user=login)
        outcome = await self.gate.check(address, login, password_hash, password)
        if outcome is not True:
            return outcome if isinstance(outcome, Banned) else None
        assert password_hash is not None  # a check against no hash never passes
        self._verified[(login, password_hash)] = token_digest(password)
        return Principal(login, user=login)


def main(argv: list[str]) -> None:
    """Print a new token and the line to append to the token file."""
    name = argv[1] if len(argv) > 1 else "script"
    token = new_token()
    sys.stdout.write(f"token: {token}\nline:  {name}:{token_digest(token)}\n")


if __name__ == "__main__":
    main(sys.argv)
