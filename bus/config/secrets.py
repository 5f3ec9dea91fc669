"""Operator-held secrets: host credentials encrypted with the key file, user passwords hashed.

Rules kept here:

- The operator key file (``Settings.key_file``) holds one Fernet key; it is created on first use
  with mode 0600 in a 0700 directory, and never leaves the machine: events carry only the
  ciphertext and the ``key_id`` (a short hash of the key, for rotation).
- Data-user passwords are hashed with argon2 (argon2-cffi defaults); only the hash travels.
- A clear secret is held in a ``ClearSecret``, whose ``repr`` and ``str`` mask it, so a log
  line or a traceback that prints one shows ``***``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from bus.errors import ConfigurationError
from bus.events.config import EncryptedSecret

_HASHER = argon2.PasswordHasher()
MASK = "***"


@dataclass(frozen=True, slots=True)
class ClearSecret:
    """A secret in clear, only in memory; it never shows itself in ``repr`` or ``str``."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return f"ClearSecret({MASK})"

    def __str__(self) -> str:
        return MASK


def key_id_of(key: bytes) -> str:
    """A short, stable name for a key (12 hex digits of its SHA-256)."""
    return hashlib.sha256(key).hexdigest()[:12]


class OperatorKey:
    """The operator's Fernet key, loaded from (or created in) its key file."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self.key_id = key_id_of(key)

    def __repr__(self) -> str:
        return f"OperatorKey(key_id={self.key_id!r})"

    @classmethod
    def load(cls, path: Path, *, create: bool = True) -> OperatorKey:
        """The key in ``path``; a missing file is created (mode 0600) when ``create`` is set."""
        try:
            return cls(path.read_bytes().strip())
        except FileNotFoundError:
            if not create:
                raise ConfigurationError("credentials", f"no operator key file at {path}") from None
        except ValueError as error:
            raise ConfigurationError("credentials", f"{path} is not a Fernet key") from error
        return cls(_create(path))

    def encrypt(self, plain: str | ClearSecret) -> EncryptedSecret:
        """The credential encrypted with this key."""
        text = plain.value if isinstance(plain, ClearSecret) else plain
        return EncryptedSecret(key_id=self.key_id, ciphertext=self._fernet.encrypt(text.encode()))

    def decrypt(self, secret: EncryptedSecret) -> ClearSecret:
        """The credential in clear; another operator key is a ``ConfigurationError``."""
        try:
            return ClearSecret(self._fernet.decrypt(secret.ciphertext).decode())
        except InvalidToken:
            raise ConfigurationError(
                "credentials",
                f"encrypted with key {secret.key_id}, which is not the operator key "
                f"{self.key_id} (wrong or rotated key file)",
            ) from None


def _create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    # O_EXCL: two processes creating the key at once must not end up with different keys
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as out:
        out.write(key + b"\n")
    return key


def encrypt(plain: str | ClearSecret, key_file: Path) -> EncryptedSecret:
    """Encrypt a credential with the operator key in ``key_file`` (created on first use)."""
    return OperatorKey.load(key_file).encrypt(plain)


def decrypt(secret: EncryptedSecret, key_file: Path) -> str:
    """The clear credential; a wrong key raises ``ConfigurationError`` naming ``credentials``."""
    return OperatorKey.load(key_file, create=False).decrypt(secret).value


def hash_password(password: str | ClearSecret) -> str:
    """An argon2 hash of a data user's password."""
    text = password.value if isinstance(password, ClearSecret) else password
    if not text:
        raise ConfigurationError("data_user.password", "must not be empty")
    return _HASHER.hash(text)


def verify_password(password_hash: str, password: str | ClearSecret) -> bool:
    """Whether ``password`` matches ``password_hash`` (a malformed hash never matches)."""
    text = password.value if isinstance(password, ClearSecret) else password
    try:
        return _HASHER.verify(password_hash, text)
    except (VerificationError, InvalidHashError):
        return False


def is_argon2_hash(text: str) -> bool:
    """Whether ``text`` is a well-formed argon2 hash string (and not, say, a clear password)."""
    try:
        argon2.extract_parameters(text)
    except InvalidHashError:
        return False
    return text.startswith("$argon2")
