"""The configuration commands against the real Kafka (typer's runner; a subprocess once mounted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bus.config.secrets import OperatorKey
from bus.settings import ROOT
from cli.config import config_app, destination_app, host_app, user_app

pytestmark = pytest.mark.kafka

EXAMPLE = ROOT / "infra" / "examples" / "config.yaml"


@pytest.fixture
def env(tmp_path: Path, kafka: str) -> dict[str, str]:
    return {"ECPDS_KEY_FILE": str(tmp_path / "ecpds.key"), "COLUMNS": "200"}


@pytest.fixture
def topic(unique: str) -> str:
    return f"test.{unique}.config"


def run(
    app: object, topic: str, env: dict[str, str], *args: str, stdin: str | None = None
) -> Result:
    result = CliRunner().invoke(app, ["--topic", topic, *args], input=stdin, env=env)  # type: ignore[arg-type]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_apply_is_idempotent_and_export_round_trips(
    topic: str, env: dict[str, str], tmp_path: Path
) -> None:
    """apply shows and publishes the plan; again plans nothing; export has no clear secret and
    applying the export plans nothing; --dry-run publishes nothing."""
    dry = run(config_app, topic, env, "apply", "-f", str(EXAMPLE), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "+ destination demo-site" in dry.output
    assert run(config_app, topic, env, "export").output.strip() == "{}"
    first = run(config_app, topic, env, "apply", "-f", str(EXAMPLE))
    assert first.exit_code == 0, first.output
    assert "+ host demo-sftp" in first.output
    assert "applied 10 change(s)" in first.output
    again = run(config_app, topic, env, "apply", "-f", str(EXAMPLE))
    assert again.exit_code == 0
    assert "no changes" in again.output
    exported = tmp_path / "export.yaml"
    assert run(config_app, topic, env, "export", "-o", str(exported)).exit_code == 0
    text = exported.read_text()
    assert "change-me" not in text
    assert "portal-secret" not in text
    assert "$argon2" not in text  # a user's hash only by the id of the key encrypting it
    assert "encrypted:" in text
    back = run(config_app, topic, env, "apply", "-f", str(exported), "--prune")
    assert back.exit_code == 0
    assert "no changes" in back.output


def test_rotate_key_reencrypts_through_new_events(
    topic: str, env: dict[str, str], tmp_path: Path
) -> None:
    """`config rotate-key` re-encrypts the example's host passwords and user hash under a new
    key, says where both keys are, keeps the old one as .retired; the file then applies as no
    change (its clear passwords decrypt-equal under the new key)."""
    assert run(config_app, topic, env, "apply", "-f", str(EXAMPLE)).exit_code == 0
    old = OperatorKey.load(tmp_path / "ecpds.key", create=False).key_id
    rotated = run(config_app, topic, env, "rotate-key")
    assert rotated.exit_code == 0, rotated.output
    new = OperatorKey.load(tmp_path / "ecpds.key", create=False).key_id
    assert new != old
    assert "ecpds.key.retired" in rotated.output
    assert old in rotated.output
    assert "re-encrypted" in rotated.output
    text = run(config_app, topic, env, "export").output
    assert f"encrypted: {new}" in text or f"encrypted: '{new}'" in text  # quoted if all digits
    assert old not in text  # no secret left under the old key
    assert (tmp_path / "ecpds.key.retired").exists()
    again = run(config_app, topic, env, "apply", "-f", str(EXAMPLE))
    assert "no changes" in again.output, again.output


def test_refusals_name_the_field_and_exit_2(topic: str, env: dict[str, str]) -> None:
    """A bad value, a duplicate, and an unknown entity are refused with exit code 2."""
    bad = run(destination_app, topic, env, "add", "d1", "--set", "max_connections=0")
    assert bad.exit_code == 2
    assert "destination.max_connections" in bad.output
    assert run(destination_app, topic, env, "add", "d1").exit_code == 0
    duplicate = run(destination_app, topic, env, "add", "d1")
    assert duplicate.exit_code == 2
    assert "exists" in duplicate.output
    missing = run(destination_app, topic, env, "edit", "nope", "--set", "max_connections=2")
    assert missing.exit_code == 2
    assert run(host_app, topic, env, "remove", "nope").exit_code == 2
    dangling = run(host_app, topic, env, "add", "h1", "-p", "ftp", "-a", "x:21", "-d", "ghost")
    assert dangling.exit_code == 2
    assert "association.destination" in dangling.output


def test_destination_host_user_lifecycle(topic: str, env: dict[str, str]) -> None:
    """add, edit, show, list and remove work for destinations, hosts and users; passwords come
    from stdin and never show."""
    assert run(destination_app, topic, env, "add", "site-1", "--country", "fr").exit_code == 0
    edited = run(destination_app, topic, env, "edit", "site-1", "--set", "retry_frequency=2m")
    assert edited.exit_code == 0
    assert "retry_frequency_ms: 30s -> 2m" in edited.output
    added = run(
        host_app, topic, env, "add", "h-1", "-p", "sftp", "-a", "127.0.0.1:22",
        "--login", "ecpds", "-d", "site-1", "--password-stdin", stdin="hunter2\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "+ association site-1/h-1" in added.output
    shown = run(host_app, topic, env, "show", "h-1")
    assert "encrypted:" in shown.output
    assert "hunter2" not in shown.output
    dest = run(destination_app, topic, env, "show", "site-1").output
    assert "h-1" in dest
    assert "retry_frequency: 2m" in dest
    user = run(
        user_app, topic, env, "add", "bob", "-d", "site-1", "-o", "get", "-o", "dir",
        "--password-stdin", stdin="pw-of-bob\n",
    )  # fmt: skip
    assert user.exit_code == 0, user.output
    listed = run(user_app, topic, env, "list").output
    assert "bob" in listed
    assert "pw-of-bob" not in listed
    assert "get, dir" in listed
    assert "site-1" in run(destination_app, topic, env, "list").output
    assert "h-1" in run(host_app, topic, env, "list").output
    assert run(user_app, topic, env, "edit", "bob", "--set", "active=no").exit_code == 0
    assert run(user_app, topic, env, "remove", "bob").exit_code == 0
    removed = run(destination_app, topic, env, "remove", "site-1")
    assert removed.exit_code == 0
    assert "- association site-1/h-1" in removed.output
    assert "site-1" not in run(destination_app, topic, env, "list").output


def test_password_is_never_a_command_line_argument(topic: str, env: dict[str, str]) -> None:
    """There is no --password option, and --set password=... is refused."""
    as_option = run(host_app, topic, env, "add", "h", "-p", "ftp", "-a", "x", "--password", "pw")
    assert as_option.exit_code == 2
    as_set = run(user_app, topic, env, "add", "u", "--set", "password=pw")
    assert as_set.exit_code == 2


def _mounted() -> bool:
    from cli.main import app

    names = {group.name for group in app.registered_groups}
    return {"destination", "host", "user", "config"} <= names


@pytest.mark.skipif(not _mounted(), reason="the lead has not mounted the config apps yet")
def test_ecpds_command_applies_and_exports(topic: str, env: dict[str, str]) -> None:
    """`python -m cli.main config apply` then `config export` work as a person would run them."""

    def ecpds(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
            check=False,
        )

    applied = ecpds("config", "--topic", topic, "apply", "-f", str(EXAMPLE))
    assert applied.returncode == 0, applied.stderr + applied.stdout
    exported = ecpds("config", "--topic", topic, "export")
    assert "demo-site" in exported.stdout
    assert "change-me" not in exported.stdout
