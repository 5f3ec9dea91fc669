"""Operator-held secrets: host credentials encrypted with the key file, user passwords hashed.

Rules kept here:

- The operator key file (``Settings.key_file``) holds one Fernet key; it is created on first use
  with mode 0600 in a 0700 directory, and never leaves the machine: events carry only the
  ciphertext and the ``key_id`` (a short hash of the key, for rotation).
- Data-user passwords are hashed with argon2 (argon2-cffi defaults), and the hash is encrypted
  with the operator key like a host password (``DataUser.password_secret``): no argon2 hash
  travels in clear (``password_hash`` is read only from events written before).
- Key rotation (``ecpds config rotate-key``) keeps two more files beside the key file while and
  after it runs: ``<key file>.next`` (the new key, until every secret is re-encrypted) and
  ``<key file>.retired`` (the previous key, kept afterwards so messages already in flight still
  decrypt). ``OperatorKey.load`` decrypts with any of the three and encrypts with the key file's.
- A clear secret is held in a ``ClearSecret``, whose ``repr`` and ``str`` mask it, so a log
  line or a traceback that prints one shows ``***``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from bus.errors import ConfigurationError
from bus.events.config import DataUser, EncryptedSecret, Host
from bus.private import create_private

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


def next_key_file(key_file: Path) -> Path:
    """Where a rotation keeps the new key until every secret is re-encrypted with it."""
    return key_file.with_name(key_file.name + ".next")


def retired_key_file(key_file: Path) -> Path:
    """Where a rotation keeps the previous key once it is done."""
    return key_file.with_name(key_file.name + ".retired")


class OperatorKey:
    """The operator's Fernet key, loaded from (or created in) its key file; it encrypts with
    that key and decrypts with it or with any of ``others`` (a rotation's next or retired key)."""

    def __init__(self, key: bytes, others: Sequence[bytes] = ()) -> None:
        self._fernet = Fernet(key)
        self.key_id = key_id_of(key)
        self._others = {key_id_of(k): Fernet(k) for k in others if key_id_of(k) != self.key_id}

    def __repr__(self) -> str:
        return f"OperatorKey(key_id={self.key_id!r})"

    @classmethod
    def load(cls, path: Path, *, create: bool = True) -> OperatorKey:
        """The key in ``path``; a missing file is created (mode 0600) when ``create`` is set."""
        others = [_read_key(p) for p in (next_key_file(path), retired_key_file(path))]
        found = [k for k in others if k is not None]
        try:
            return cls(path.read_bytes().strip(), found)
        except FileNotFoundError:
            if not create:
                raise ConfigurationError("credentials", f"no operator key file at {path}") from None
        except ValueError as error:
            raise ConfigurationError("credentials", f"{path} is not a Fernet key") from error
        return cls(_create(path), found)

    def encrypt(self, plain: str | ClearSecret) -> EncryptedSecret:
        """The credential encrypted with this key."""
        text = plain.value if isinstance(plain, ClearSecret) else plain
        return EncryptedSecret(key_id=self.key_id, ciphertext=self._fernet.encrypt(text.encode()))

    def decrypt(self, secret: EncryptedSecret) -> ClearSecret:
        """The credential in clear; another operator key is a ``ConfigurationError``."""
        fernet = self._others.get(secret.key_id, self._fernet)
        try:
            return ClearSecret(fernet.decrypt(secret.ciphertext).decode())
        except InvalidToken:
            raise ConfigurationError(
                "credentials",
                f"encrypted with key {secret.key_id}, which is not the operator key "
                f"{self.key_id} (wrong or rotated key file)",
            ) from None


def _read_key(path: Path) -> bytes | None:
    try:
        key = path.read_bytes().strip()
        Fernet(key)
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise ConfigurationError("credentials", f"{path} is not a Fernet key") from error
    return key


def _create(path: Path, key: bytes | None = None) -> bytes:
    """Write ``key`` (a new one by default) to a new file ``path`` (0600); when the file
    exists already, its key."""
    key = key or Fernet.generate_key()
    # created once: two processes creating the key at once must not end up with different keys
    if not create_private(path, key.decode() + "\n"):
        return path.read_bytes().strip()
    return key


def encrypt(plain: str | ClearSecret, key_file: Path) -> EncryptedSecret:
    """Encrypt a credential with the operator key in ``key_file`` (created on first use)."""
    return OperatorKey.load(key_file).encrypt(plain)


def decrypt(secret: EncryptedSecret, key_file: Path) -> str:
    """The clear credential; a wrong key raises ``ConfigurationError`` naming ``credentials``."""
    return OperatorKey.load(key_file, create=False).decrypt(secret).value


def host_password(host: Host, key_file: Path | None) -> str | None:
    """The clear password of ``host`` (None: it has none), decrypted with the operator key; a
    host with credentials and no key file is refused naming ``credentials``."""
    if host.credentials is None:
        return None
    if key_file is None:
        raise ConfigurationError("credentials", f"{host.id}: no operator key file")
    return decrypt(host.credentials, key_file)


def begin_rotation(key_file: Path) -> OperatorKey:
    """The new key of a rotation, created in ``<key file>.next`` unless a rotation that did not
    finish left one there (then it is reused, so running again resumes)."""
    return OperatorKey(_create(next_key_file(key_file)))


def finish_rotation(key_file: Path) -> None:
    """Make the next key the key: the current one is copied to ``.retired`` first, then the next
    one renamed over the key file, so at every instant a loader finds both keys."""
    retired, following = retired_key_file(key_file), next_key_file(key_file)
    temporary = retired.with_name(retired.name + ".tmp")
    temporary.unlink(missing_ok=True)
    _create(temporary, key_file.read_bytes().strip())
    os.replace(temporary, retired)
    os.replace(following, key_file)


def seal_password(password: str | ClearSecret, key: OperatorKey) -> EncryptedSecret:
    """A data user's password as events carry it: its argon2 hash, encrypted with ``key``."""
    return key.encrypt(hash_password(password))


def stored_hash(user: DataUser, key: OperatorKey | None) -> str | None:
    """The argon2 hash of ``user``: decrypted from ``password_secret``, or the clear
    ``password_hash`` of an event written before hashes were encrypted; None when it has none
    (or when the hash is encrypted and no key is given)."""
    if user.password_secret is not None:
        return key.decrypt(user.password_secret).value if key is not None else None
    return user.password_hash


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
