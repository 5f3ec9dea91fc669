"""Publishing verbs of the CLI need an operator token, checked before anything is published."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bus.errors import ConfigurationError
from bus.settings import ROOT, Settings
from bus.tokens import TokenFile, TokenRole
from cli.credentials import operator


def ecpds(var: Path, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    # no broker on this port: a verb that got past the token check would fail with exit 1
    env = {**os.environ, "ECPDS_VAR": str(var), "ECPDS_TOKEN": token, "COLUMNS": "200"}
    env |= {"ECPDS_KAFKA_BOOTSTRAP": "127.0.0.1:9", "HOME": str(var)}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_only_an_operator_token_from_the_token_file_may_publish(tmp_path: Path) -> None:
    """No token, an unknown one and a viewer one are refused naming ``token``; an operator
    token (from ECPDS_TOKEN, or the admin.token file ``ecpds up`` wrote) is accepted."""
    book = TokenFile(tmp_path / "secrets" / "api-tokens")
    viewer = book.create("reader", TokenRole.VIEWER)
    ops = book.create("ops", TokenRole.OPERATOR)
    env = {"ECPDS_VAR": str(tmp_path)}
    for token, why in ((None, "needs an operator token"), ("nope", "not known"), (viewer, "read")):
        settings = Settings.from_env({**env, "ECPDS_TOKEN": token} if token else env)
        with pytest.raises(ConfigurationError, match=why) as refused:
            operator(settings)
        assert refused.value.field == "token"
    assert operator(Settings.from_env({**env, "ECPDS_TOKEN": ops})).name == "ops"
    (tmp_path / "secrets" / "admin.token").write_text(ops + "\n")
    assert operator(Settings.from_env(env)).name == "ops"
    assert ops not in repr(Settings.from_env({**env, "ECPDS_TOKEN": ops}))


def test_publishing_verbs_refuse_without_a_valid_token(tmp_path: Path) -> None:
    """A configuration change, an operator request and a key rotation exit 2 naming the token
    when it is a viewer's (nothing reaches the broker), and go on to the broker with an
    operator's."""
    book = TokenFile(tmp_path / "secrets" / "api-tokens")
    viewer = book.create("reader", TokenRole.VIEWER)
    ops = book.create("ops", TokenRole.OPERATOR)
    verbs = (
        ("destination", "add", "d1"),
        ("destination", "hold", "d1", "--wait", "0"),
        ("config", "rotate-key"),
    )
    for verb in verbs:
        refused = ecpds(tmp_path, viewer, *verb)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "token" in refused.stdout
        assert "read-only" in refused.stdout
    passed = ecpds(tmp_path, ops, "destination", "add", "d1")
    assert "token" not in passed.stdout
    assert passed.returncode == 1  # got past the check, then found no broker
