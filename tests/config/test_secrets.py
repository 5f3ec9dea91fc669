"""Operator key, encrypted credentials and hashed passwords: nothing shows a secret in clear."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from bus import codec
from bus.config.apply import events_for, plan, resolve
from bus.config.secrets import (
    ClearSecret,
    OperatorKey,
    decrypt,
    encrypt,
    hash_password,
    is_argon2_hash,
    seal_password,
    stored_hash,
    verify_password,
)
from bus.config.view import ConfigView
from bus.config.yamlio import export, load
from bus.errors import ConfigurationError
from bus.events import envelope
from bus.events.config import DataUser
from bus.events.config_changes import DataUserDefined, HostDefined
from bus.settings import ROOT
from tests.config import factories as f

CLEAR = "s3cr3t-Pa55w0rd"
HASHED = hash_password(CLEAR)


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


def test_no_argon2_hash_in_config_events_or_export(tmp_path: Path) -> None:
    """Applying the example file (a data user with a password) publishes no argon2 hash in
    any event's bytes or JSON, nor does exporting the result; a hash in clear from an old event
    is not exported either, and applying the export keeps every stored secret unchanged."""
    key = OperatorKey.load(tmp_path / "k")
    text = (ROOT / "infra" / "examples" / "config.yaml").read_text()
    changes = plan(ConfigView(), resolve(load(text), ConfigView(), key))
    events = [e for _, e in events_for(changes, source="test")]
    assert any(isinstance(e, DataUserDefined) for e in events)
    for event in events:
        assert b"$argon2" not in codec.encode(event)
        assert "$argon2" not in str(codec.to_json(event))
    view = ConfigView().evolve(events)
    assert "$argon2" not in export(view)
    old = DataUserDefined(
        envelope=envelope("test", "data-user/old"), data_user=f.user("old", password_hash=HASHED)
    )
    legacy = view.evolve([old])
    exported = export(legacy)
    assert "$argon2" not in exported
    assert "password_secret" in exported
    # applying the export changes only the old user, whose clear hash gets encrypted
    (change,) = plan(legacy, resolve(load(exported), legacy, key))
    assert isinstance(change.entity, DataUser)
    assert change.entity.password_hash is None
    assert change.entity.password_secret is not None
    assert key.decrypt(change.entity.password_secret).value == HASHED


def test_a_sealed_password_is_an_encrypted_argon2_hash(tmp_path: Path) -> None:
    """``seal_password`` gives what DataUser events carry: the hash, encrypted; it verifies
    once decrypted with the operator key, and ``stored_hash`` reads both forms."""
    key = OperatorKey.load(tmp_path / "k")
    sealed = seal_password(CLEAR, key)
    assert b"$argon2" not in sealed.ciphertext
    user = f.user(password_hash=None, password_secret=sealed)
    digest = stored_hash(user, key)
    assert digest is not None
    assert verify_password(digest, CLEAR)
    assert stored_hash(user, None) is None
    assert stored_hash(f.user(password_hash=HASHED), None) == HASHED
