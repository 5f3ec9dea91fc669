"""Pure parts of the monitor: OpenECPDS badge colours, formatting and the users file
(the request events its actions publish are pinned in ``tests/bus/test_requests.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.config.secrets import verify_password
from projections.monitor.auth import Role, WebUsers, csrf_ok
from projections.monitor.view import (
    destination_badge,
    explain,
    health,
    size,
    status_badge,
)


@pytest.mark.parametrize(
    ("code", "name", "colour"),
    [
        ("EXEC", "Running", "green"),
        ("SCHE", "Waiting", "yellow"),
        ("RETR", "Retrying", "yellow"),
        ("INTR", "Interrupted", "yellow"),
        ("RSTR", "Restarting", "lightblue"),
        ("DONE", "Resending", "lightblue"),
        ("WAIT", "Idle", "grey"),
        ("INIT", "Initialized", "red"),
        ("STOP", "Stopped", "red"),
        ("FAIL", "NoHosts", "red"),
        ("HOLD", "Failed", "red"),
        ("XXXX", "XXXX", "red"),
    ],
)
def test_destination_badges_follow_openecpds(code: str, name: str, colour: str) -> None:
    """Each destination status shows OpenECPDS's display name and badge colour (unknown: red)."""
    badge = destination_badge(code)
    assert (badge.name, badge.colour) == (name, colour)


def test_sizes_use_binary_units() -> None:
    """Sizes use binary units."""
    assert size(512) == "512 B"
    assert size(3 * 2**20) == "3.0 MiB"


def test_users_file_is_created_with_a_private_admin_password(tmp_path: Path) -> None:
    """The first start creates an admin whose password is only in a 0600 file and works."""
    users = WebUsers.open(tmp_path / "secrets")
    password_file = tmp_path / "secrets" / "admin.password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secrets" / "web-users").stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().strip()
    assert password not in (tmp_path / "secrets" / "web-users").read_text()
    admin = users.lookup("admin")
    assert admin is not None
    assert admin[0] is Role.ADMINISTRATOR
    assert verify_password(admin[1], password)
    assert not verify_password(admin[1], "wrong")
    users.add("v", Role.VIEWER, "pw")
    viewer = users.lookup("v")
    assert viewer is not None
    assert viewer[0] is Role.VIEWER
    assert verify_password(viewer[1], "pw")


def test_csrf_comparison() -> None:
    """A CSRF token matches only the session's own, and a missing one never matches."""
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", "abd")
    assert not csrf_ok(None, "abc")
    assert not csrf_ok("abc", None)
    assert not csrf_ok("", "")


T1 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("row", "level"),
    [
        ({"status": "HOLD", "status_reason": "Failed: every host failed"}, "critical"),
        ({"status": "FAIL"}, "critical"),  # NoHosts
        ({"status": "IDLE"}, "critical"),  # sleeping between retry cycles
        ({"status": "RETR"}, "warning"),
        ({"status": "STOP"}, "warning"),
        ({"status": "WAIT", "last_error_at": T2, "last_success_at": T1}, "warning"),
        ({"status": "WAIT", "last_error_at": T1, "last_success_at": T2}, "ok"),
        ({"status": "EXEC"}, "ok"),
    ],
)
def test_health_follows_the_openecpds_monitoring_rule(row: dict[str, object], level: str) -> None:
    """Failed, NoHosts and Sleeping are critical; Stopped, Retrying and Interrupted, or a last
    error newer than the last success, are a warning; anything else is OK."""
    assert health(row).level == level


def test_an_operators_hold_is_neutral_and_a_failure_red() -> None:
    """HOLD set by an operator is "On hold" (neutral, health Held, the reason and who said
    it); HOLD set by the scheduler after every host failed stays red "Failed", critical."""
    held = {"status": "HOLD", "status_actor": "alice", "status_reason": "maintenance"}
    badge, h = status_badge(held), health(held)
    assert (badge.name, badge.colour) == ("On hold", "neutral")
    assert (h.level, h.colour, h.reason) == ("held", "neutral", "maintenance (by alice)")
    failed = {"status": "HOLD", "status_actor": None, "status_reason": "every host failed"}
    assert (status_badge(failed).name, status_badge(failed).colour) == ("Failed", "red")
    assert health(failed).level == "critical"


def test_a_pickup_only_destination_is_not_red() -> None:
    """A standby destination with no hosts (NoHosts by design) is a grey Pickup, health OK;
    without standby NoHosts stays red and critical."""
    pickup = {"status": "FAIL", "standby": True}
    assert (status_badge(pickup).name, status_badge(pickup).colour) == ("Pickup", "grey")
    assert health(pickup).level == "ok"
    assert health({"status": "FAIL", "standby": False}).level == "critical"


def test_errors_read_as_the_operators_sentence_with_the_detail_kept() -> None:
    """A known error class names the host and what to check; the text is the detail; an
    unknown class says so plainly."""
    raw = "ConnectionError: ClientConnectorError(ConnectionKey(host='10.0.0.9', port=443))"
    said = explain(raw, "site-a")
    assert said.sentence.startswith("Could not connect to site-a")
    assert "firewall" in said.sentence
    assert said.detail == raw
    assert explain("AuthenticationFailed: denied", None).sentence.startswith("The host refused")
    odd = explain("WeirdError: boom", "h")
    assert odd.sentence == "The transfer failed (WeirdError): see the detail."
    assert explain(None).sentence == ""
