"""The ``ecpds`` command against the real local services, run as a subprocess as people do."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from bus.publisher import Publisher
from bus.settings import ROOT, Settings
from bus.topics import TopicSpec, apply_topics
from tests.bus.test_kafka import heartbeat
from tests.conftest import free_port

pytestmark = pytest.mark.kafka


def ecpds(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


async def test_status_reports_every_service_healthy(
    kafka: str, postgres: str, mqtt_port: int
) -> None:
    """`ecpds status` exits 0 and names Kafka, PostgreSQL and MQTT as healthy."""
    # the embedded broker runs on this test's event loop: keep the loop free while waiting
    result = await asyncio.to_thread(ecpds, "status", env={"ECPDS_MQTT_PORT": str(mqtt_port)})
    assert result.returncode == 0, result.stdout + result.stderr
    for service in ("kafka", "postgres", "mqtt"):
        assert service in result.stdout
    assert result.stdout.count("healthy") == 3


def test_status_fails_when_a_service_is_down(kafka: str, postgres: str) -> None:
    """`ecpds status` exits 1 when the MQTT broker cannot be reached."""
    result = ecpds("status", env={"ECPDS_MQTT_PORT": str(free_port())})
    assert result.returncode == 1
    assert "down" in result.stdout


def test_bad_setting_is_refused_by_name() -> None:
    """An invalid variable stops the command with a message naming it."""
    result = ecpds("status", env={"ECPDS_KAFKA_PORT": "ninety"})
    assert result.returncode == 2
    assert "ECPDS_KAFKA_PORT" in result.stdout


def test_topics_apply_is_idempotent(kafka: str) -> None:
    """A second `ecpds topics apply` reports every topic unchanged."""
    ecpds("topics", "apply")
    second = ecpds("topics", "apply")
    assert second.returncode == 0, second.stderr
    lines = [line for line in second.stdout.splitlines() if line.startswith("ecpds.")]
    assert lines
    assert all("unchanged" in line for line in lines)


async def test_events_tail_prints_json_lines(kafka: str, unique: str) -> None:
    """`ecpds events tail --json` prints one decoded event per line, with its origin."""
    spec = TopicSpec(f"test.{unique}.tail", "m", 1, "delete", 3_600_000, ("ecpds.movers",), "t")
    await apply_topics(kafka, [spec])
    sent = [heartbeat(n) for n in range(3)]
    async with Publisher(kafka) as publisher:
        for event in sent:
            await publisher.publish(spec.name, event.mover_id, event)
    result = await asyncio.to_thread(
        ecpds, "events", "tail", "--topic", spec.name, "--from-beginning", "--limit", "3"
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["event_type"] for r in rows] == ["ecpds.movers.MoverHeartbeat"] * 3
    assert [r["event"]["envelope"]["event_id"] for r in rows] == [e.envelope.event_id for e in sent]
    assert [r["offset"] for r in rows] == [0, 1, 2]


def test_up_starts_and_stops_cleanly_on_sigterm(
    kafka: str, postgres: str, settings: Settings
) -> None:
    """`ecpds up` reports the services healthy, then stops cleanly on SIGTERM."""
    env = {**os.environ, "ECPDS_MQTT_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--keep-infra"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "ecpds is up" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode == 0, output
    assert output.count("healthy") >= 3
    assert "stopping components" in output
