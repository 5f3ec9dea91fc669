"""Operator key, encrypted credentials and hashed passwords: nothing shows a secret in clear."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from bus import codec
from bus.config.secrets import (
    ClearSecret,
    OperatorKey,
    decrypt,
    encrypt,
    hash_password,
    is_argon2_hash,
    verify_password,
)
from bus.errors import ConfigurationError
from bus.events import envelope
from bus.events.config_changes import DataUserDefined, HostDefined
from tests.config import factories as f

CLEAR = "s3cr3t-Pa55w0rd"


def test_round_trip_through_the_key_file(tmp_path: Path) -> None:
    """What is encrypted with the key file decrypts back with it."""
    key_file = tmp_path / "secrets" / "ecpds.key"
    secret = encrypt(CLEAR, key_file)
    assert decrypt(secret, key_file) == CLEAR
    assert secret.key_id == OperatorKey.load(key_file).key_id


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    """The first use creates the key file readable by its owner only; later uses keep it."""
    key_file = tmp_path / "secrets" / "ecpds.key"
    first = OperatorKey.load(key_file)
    mode = stat.S_IMODE(key_file.stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) & 0o077 == 0
    assert OperatorKey.load(key_file).key_id == first.key_id


def test_wrong_key_is_a_configuration_error_naming_credentials(tmp_path: Path) -> None:
    """A credential encrypted with another operator key is refused, naming 'credentials'."""
    secret = encrypt(CLEAR, tmp_path / "a.key")
    OperatorKey.load(tmp_path / "b.key")
    with pytest.raises(ConfigurationError) as caught:
        decrypt(secret, tmp_path / "b.key")
    assert caught.value.field == "credentials"
    assert CLEAR not in str(caught.value)


def test_missing_key_file_is_not_created_to_decrypt(tmp_path: Path) -> None:
    """Decrypting without the key file fails rather than inventing a new key."""
    secret = encrypt(CLEAR, tmp_path / "a.key")
    with pytest.raises(ConfigurationError):
        decrypt(secret, tmp_path / "missing.key")
    assert not (tmp_path / "missing.key").exists()


def test_encoded_events_carry_no_clear_secret(tmp_path: Path) -> None:
    """A HostDefined with credentials and a DataUserDefined with a password hold neither in
    clear, in their Avro bytes or their JSON view."""
    key = OperatorKey.load(tmp_path / "k")
    host = f.host(login="ecpds", credentials=key.encrypt(CLEAR))
    user = f.user(password_hash=hash_password(CLEAR))
    for event in (
        HostDefined(envelope=envelope("test", "host/ftp-1"), host=host),
        DataUserDefined(envelope=envelope("test", "data-user/alice"), data_user=user),
    ):
        assert CLEAR.encode() not in codec.encode(event)
        assert CLEAR not in str(codec.to_json(event))
        assert CLEAR not in repr(event)


def test_repr_of_clear_secrets_is_masked() -> None:
    """A ClearSecret never shows its value in repr, str or in a dataclass holding it."""

    @dataclasses.dataclass
    class Holder:
        password: ClearSecret

    held = Holder(ClearSecret(CLEAR))
    for text in (repr(held.password), str(held.password), repr(held), f"{held}"):
        assert CLEAR not in text
    assert held.password.value == CLEAR


def test_operator_key_repr_shows_only_its_id(tmp_path: Path) -> None:
    """The key object's repr names the key id, never the key."""
    key_file = tmp_path / "k"
    key = OperatorKey.load(key_file)
    assert key_file.read_text().strip() not in repr(key)
    assert key.key_id in repr(key)


def test_passwords_are_hashed_with_argon2() -> None:
    """A hashed password verifies, a wrong one does not, and the hash is an argon2 string."""
    hashed = hash_password(ClearSecret(CLEAR))
    assert is_argon2_hash(hashed)
    assert CLEAR not in hashed
    assert verify_password(hashed, CLEAR)
    assert not verify_password(hashed, "wrong")
    assert not verify_password("not-a-hash", CLEAR)


def test_empty_password_is_refused() -> None:
    """An empty password cannot be hashed (it would let anyone in)."""
    with pytest.raises(ConfigurationError):
        hash_password("")
