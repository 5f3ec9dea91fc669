"""API tokens: the one token file the REST API, the monitor and the CLI all read.

Rules kept here:

- The file (default ``var/secrets/api-tokens``, mode 0600 in a 0700 directory) holds one
  ``name:role:sha256hex`` line per token; only the SHA-256 of a token is kept, never the token.
  A ``name:sha256hex`` line (written before tokens had roles) is an operator token.
- Roles: ``viewer`` (read-only: every route that publishes answers 403) and ``operator``.
- The file is re-read whenever it changes (no restart); changes are written whole to a
  temporary file and renamed over it, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bus.private import create_private, replace_private

TOKEN_BYTES = 32
_HEADER = "# API tokens: name:role:sha256hex of the token, one per line (roles viewer operator)\n"


class TokenRole(StrEnum):
    """What a token may do: read only, or also act (publish requests, put files)."""

    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Token:
    """A token as the file names it (never the token itself)."""

    name: str
    role: TokenRole

    @property
    def can_act(self) -> bool:
        return self.role is TokenRole.OPERATOR


API_TOKENS = "api-tokens"  # the token file, under the secrets directory


def tokens_path(secrets_dir: Path) -> Path:
    """Where the API, the monitor and the CLI read tokens (``$ECPDS_VAR/secrets``)."""
    return secrets_dir / API_TOKENS


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _parse(line: str) -> tuple[str, Token] | None:
    """``(digest, token)`` of one line, or None for a comment, a blank or a bad line."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    parts = line.split(":")
    if len(parts) == 2:
        (name, digest), role = parts, TokenRole.OPERATOR.value
    elif len(parts) == 3:
        name, role, digest = parts
    else:
        return None
    if not name or len(digest) != 64 or role not in TokenRole.__members__.values():
        return None  # an unknown role grants nothing
    return digest.lower(), Token(name, TokenRole(role))


def _line(token: Token, digest: str) -> str:
    return f"{token.name}:{token.role.value}:{digest}\n"


class TokenFile:
    """The token file: checked on every request, re-read when it changes, edited whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._by_digest: dict[str, Token] = {}

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._by_digest, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        if stamp == self._stamp:
            return
        found: dict[str, Token] = {}
        for raw in self.path.read_text().splitlines():
            parsed = _parse(raw)
            if parsed is not None:
                found[parsed[0]] = parsed[1]
        self._by_digest, self._stamp = found, stamp

    def check(self, token: str) -> Token | None:
        """The token's name and role, or None when the file does not list it."""
        self._reload()
        digest = token_digest(token)
        for known, found in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return found
        return None

    def tokens(self) -> list[Token]:
        """Every token the file lists, by name."""
        self._reload()
        return sorted(self._by_digest.values(), key=lambda t: t.name)

    def create(self, name: str, role: TokenRole) -> str:
        """Add a token named ``name`` and return it: the only time it is seen in clear."""
        if not name or ":" in name or any(c.isspace() for c in name):
            raise ValueError(f"not a token name: {name!r}")
        self._reload()
        if any(t.name == name for t in self._by_digest.values()):
            raise ValueError(f"a token named {name!r} exists already: revoke it first")
        token = new_token()
        kept = dict(self._by_digest.items())
        kept[token_digest(token)] = Token(name, role)
        self._write(kept)
        return token

    def revoke(self, name: str) -> bool:
        """Remove every token named ``name``; False when there was none."""
        self._reload()
        kept = {d: t for d, t in self._by_digest.items() if t.name != name}
        if len(kept) == len(self._by_digest):
            return False
        self._write(kept)
        return True

    def _write(self, tokens: dict[str, Token]) -> None:
        replace_private(self.path, _HEADER + "".join(_line(t, d) for d, t in tokens.items()))
        self._stamp = None


def create_file(path: Path, name: str = "admin") -> str | None:
    """Create a missing token file with one operator token ``name``, returned (the only time it
    is seen in clear); None when the file exists already (another process may have won)."""
    token = new_token()
    text = _HEADER + _line(Token(name, TokenRole.OPERATOR), token_digest(token))
    return token if create_private(path, text) else None
