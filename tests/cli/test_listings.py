"""The CLI as scripts and pipes see it: every problem of a configuration file at once, named by
its place in the file; listings as JSON; tables not cut at 80 columns when piped; destination
status and counts from the read models (real Kafka and PostgreSQL, the command as a
subprocess)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from bus.config.view import ConfigView
from bus.events.config import Destination, DestinationType
from bus.settings import ROOT
from cli import status
from tests.cli.test_commands import ecpds

pytestmark = pytest.mark.kafka

BROKEN = """\
hosts:
  - id: h1
    nickname: primary
    type: dissemination
    protocol: ftp
    address: ftp.example
destinations:
  - name: d1
    type: dissemination
    transfer_group: nowhere
associations:
  - destination: d1
    host: h9
  - destination: d9
    host: h1
  - destination: d8
    host: h7
"""


def test_config_check_reports_every_reference_problem_by_its_place(tmp_path: Path) -> None:
    """`config check` lists every dangling reference of a file at once (both of one
    association too), each named by its YAML path and the user's own field names, exit 2."""
    file = tmp_path / "broken.yaml"
    file.write_text(BROKEN)
    result = ecpds("config", "check", "-f", str(file))
    assert result.returncode == 2
    assert "5 problems" in result.stdout
    for line in (
        "destinations[0].transfer_group: no transfer group named 'nowhere' (destination d1)",
        "associations[0].host: no host named 'h9' (association d1/h9)",
        "associations[1].destination: no destination named 'd9' (association d9/h1)",
        "associations[2].destination: no destination named 'd8' (association d8/h7)",
        "associations[2].host: no host named 'h7' (association d8/h7)",
    ):
        assert line in result.stdout


def test_config_check_reports_every_field_problem_with_written_names(tmp_path: Path) -> None:
    """Field problems are all listed at once, by YAML path, with the duration named as the
    user wrote it (`retry_frequency`, never `retry_frequency_ms`)."""
    file = tmp_path / "fields.yaml"
    file.write_text(
        "destinations:\n  - name: d1\n    type: dissemination\n    transfer_group: default\n"
        "    retry_frequency: soon\n    max_connections: 0\n    colour: blue\n"
        "hosts:\n  - id: h1\n    type: dissemination\n"
    )
    result = ecpds("config", "check", "-f", str(file))
    assert result.returncode == 2
    out = result.stdout
    assert "destinations[0].retry_frequency: expected a duration" in out
    assert "destinations[0].max_connections: 0 would never transfer" in out
    assert "destinations[0].colour: unknown field" in out
    assert "hosts[0].address: required" in out
    assert "_ms" not in out
    assert "__init__" not in out


def test_listings_are_json_and_full_width_when_piped(unique: str) -> None:
    """`destination list --json` prints one JSON array with each destination's status and
    counts; the table printed to a pipe is not cut at 80 columns."""
    topic = f"test.{unique}.config"
    example = ROOT / "infra" / "examples" / "quickstart.yaml"
    applied = ecpds("config", "--topic", topic, "apply", "-f", str(example))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    listed = ecpds("destination", "--topic", topic, "list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (row,) = orjson.loads(listed.stdout)
    assert row["name"] == "demo-local"
    assert row["hosts"] == ["demo-outbox"]
    assert set(status.COUNTS) <= set(row)
    assert "COLUMNS" not in os.environ  # stdout is a pipe and nothing sets a width
    table = ecpds("destination", "--topic", topic, "list")
    assert table.returncode == 0
    widest = max(len(line) for line in table.stdout.splitlines())
    assert widest > 80
    assert "demo-outbox" in table.stdout  # the last column, not cut away


def test_status_badges_keep_a_hold_apart_from_a_failure() -> None:
    """An operator's hold is a neutral badge with its reason; the scheduler's hold after every
    host failed is red; retrying is amber; an unknown status says so."""
    held = status.badge("HOLD", "Put on hold by ops: maintenance")
    assert held.startswith("[blue]on hold (HOLD)")
    assert "maintenance" in held
    assert status.badge("HOLD", "Failed: every host failed, 2 cycle(s)").startswith(
        "[red]failed (HOLD)"
    )
    assert status.badge("RETR").startswith("[yellow]retrying")
    assert status.badge("FAIL").startswith("[red]no hosts")
    assert status.badge(None) == "[dim]unknown[/dim]"


def test_a_pickup_destination_is_not_listed_as_a_failure() -> None:
    """A standby destination with no hosts (its files wait for pickup) reads as a dim
    "pickup", as the monitor's grey Pickup badge; without standby, no hosts stays red."""
    pick = Destination(name="pick", type=DestinationType.DISSEMINATION, transfer_group="g")
    view = ConfigView(destinations={"pick": pick})
    found = {"status": "FAIL", "status_reason": None, "standby": True, "current_host": None}
    found |= dict.fromkeys(status.COUNTS, 0)
    found |= {"last_success_at": None, "last_error_at": None, "last_error": None}
    shown = status.row(view, view.destinations["pick"], found)
    assert shown["pickup"] is True
    assert shown["status_name"] == "pickup (standby, no hosts)"
    assert status.badge("FAIL", None, shown["pickup"]).startswith("[dim]pickup")
    failing = status.row(view, view.destinations["pick"], found | {"standby": False})
    assert failing["status_name"] == "no hosts (FAIL)"
