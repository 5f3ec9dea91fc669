"""Key rotation: every secret re-encrypted with a new key through new events, both keys kept
while it runs, and everything (host passwords, user hashes) still decrypts afterwards."""

from __future__ import annotations

from pathlib import Path

from bus.config.apply import Change, events_for, plan, reencrypt
from bus.config.secrets import (
    OperatorKey,
    begin_rotation,
    decrypt,
    finish_rotation,
    hash_password,
    next_key_file,
    retired_key_file,
    seal_password,
    stored_hash,
    verify_password,
)
from bus.config.view import ConfigView
from bus.events import envelope
from bus.events.config_changes import DataUserDefined, HostDefined
from tests.config import factories as f


def applied(view: ConfigView, changes: list[Change]) -> ConfigView:
    return view.evolve(event for _, event in events_for(changes, source="test"))


def configured(key: OperatorKey) -> ConfigView:
    """Two hosts with passwords, a user with an encrypted hash, one with an old clear hash."""
    defined = [
        HostDefined(
            envelope=envelope("test", f"host/{h}"),
            host=f.host(h, login="ecpds", credentials=key.encrypt(f"pw-{h}")),
        )
        for h in ("ftp-1", "ftp-2")
    ]
    users = [
        f.user("alice", password_hash=None, password_secret=seal_password("alice-pw", key)),
        f.user("old", password_hash=hash_password("old-pw")),
    ]
    return ConfigView().evolve(
        [
            *defined,
            *(
                DataUserDefined(envelope=envelope("test", f"data-user/{u.login}"), data_user=u)
                for u in users
            ),
        ]
    )


def test_rotation_reencrypts_every_secret_and_hosts_still_connect(tmp_path: Path) -> None:
    """Given secrets under the current key, a rotation plans one change per secret, under the
    new key; while it runs both keys decrypt; once done the key file holds the new key, the old
    one sits in ``.retired``, hosts' passwords decrypt as movers read them (``decrypt`` with the
    key file) and users' hashes verify; running it again plans nothing."""
    key_file = tmp_path / "secrets" / "ecpds.key"
    old = OperatorKey.load(key_file)
    view = configured(old)

    new = begin_rotation(key_file)
    assert new.key_id != old.key_id
    assert begin_rotation(key_file).key_id == new.key_id  # an unfinished rotation resumes
    reader = OperatorKey.load(key_file, create=False)
    changes = plan(view, reencrypt(view, reader, new))
    assert sorted(c.ident for c in changes) == ["alice", "ftp-1", "ftp-2", "old"]
    rotated = applied(view, changes)
    # mid-rotation: a process loading the key file decrypts old and new secrets alike
    assert decrypt(rotated.hosts["ftp-1"].credentials, key_file) == "pw-ftp-1"  # type: ignore[arg-type]
    assert decrypt(view.hosts["ftp-1"].credentials, key_file) == "pw-ftp-1"  # type: ignore[arg-type]

    finish_rotation(key_file)
    assert not next_key_file(key_file).exists()
    assert OperatorKey.load(key_file, create=False).key_id == new.key_id
    assert OperatorKey(retired_key_file(key_file).read_bytes().strip()).key_id == old.key_id
    for host_id in ("ftp-1", "ftp-2"):
        secret = rotated.hosts[host_id].credentials
        assert secret is not None
        assert secret.key_id == new.key_id
        assert decrypt(secret, key_file) == f"pw-{host_id}"
    for login in ("alice", "old"):
        user = rotated.users[login]
        assert user.password_hash is None
        assert user.password_secret is not None
        assert user.password_secret.key_id == new.key_id
        digest = stored_hash(user, new)  # the new key alone reads them
        assert digest is not None
        assert verify_password(digest, f"{login}-pw")
    again = OperatorKey.load(key_file, create=False)
    assert plan(rotated, reencrypt(rotated, again, again)) == []
