"""``ecpds up`` stops everything it started (Kafka, PostgreSQL, the components) when the terminal
hangs up, and when Ctrl-C comes after the reader of its output pipe died (``ecpds up | tee``);
and it restarts a Kafka or PostgreSQL of its own that was killed, saying so once each way.

Each case runs a real ``ecpds up`` with its own var dir and ports (its own Kafka and PostgreSQL,
not the suite's), so it is slow: three runs, each bounded by ``DEADLINE``.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.settings import ROOT, Settings
from cli.supervisor import Watch
from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services]
DEADLINE = 180.0  # seconds for `ecpds up` to come up, and again to stop


def _port_pair_near(base: int) -> int:
    """``base`` if it and ``base + 1`` are free (Kafka takes port + 1 for its controller),
    else another free pair."""
    for port in (base, *(free_port() for _ in range(20))):
        if _free(port) and _free(port + 1):
            return port
    raise AssertionError("no free pair of ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def up_env(unique: str) -> Iterator[dict[str, str]]:
    """The environment of an `ecpds up` of its own: a fresh var dir and ports next to this
    session's (the suite's own Kafka and PostgreSQL keep theirs); whatever the test leaves
    running there is stopped afterwards, and the var dir removed."""
    # under the checkout, not pytest's tmp_path: the PostgreSQL server user must reach it,
    # and another session's pytest may prune the shared temporary directories meanwhile
    var = ROOT / "var" / f"test-up-{unique}"
    mine = Settings.from_env()
    kafka = _port_pair_near(mine.kafka_port + 20)
    pg = mine.pg_port + 20 if _free(mine.pg_port + 20) else free_port()
    env = {
        **os.environ,
        "ECPDS_VAR": str(var),
        "ECPDS_KAFKA_PORT": str(kafka),
        "ECPDS_PG_PORT": str(pg),
        "ECPDS_MQTT_PORT": str(free_port()),
        "ECPDS_MONITOR_PORT": str(_port_pair_near(mine.monitor_port + 20)),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("ECPDS_KAFKA_CONTROLLER_PORT", None)
    yield env
    for script in ("pg/pg.sh", "kafka/kafka.sh"):  # only if the test failed half-way
        stop = ["bash", str(ROOT / "infra" / script), "stop"]
        subprocess.run(stop, env=env, capture_output=True, check=False)
    shutil.rmtree(var, ignore_errors=True)


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`ecpds up --only monitor` in its own session, read until it says it is up."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--only", "monitor"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # signals reach it only from this test
    )
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + DEADLINE
    while b"ecpds is up" not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
        if not chunk:
            proc.kill()
            raise AssertionError(f"`ecpds up` did not come up:\n{seen.decode(errors='replace')}")
        seen += chunk
    return proc, seen.decode(errors="replace")


def _read_until(proc: subprocess.Popen[bytes], text: str, seconds: float) -> str:
    """What ``proc`` prints until a line holding ``text`` (with that line), within ``seconds``."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + seconds
    while text.encode() not in seen or not seen.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
        if not chunk:
            raise AssertionError(
                f"no {text!r} in {seconds:.0f} s:\n{seen.decode(errors='replace')}"
            )
        seen += chunk
    return seen.decode(errors="replace")


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the components), once it has started some."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        )
        if found.stdout.split():
            return [int(p) for p in found.stdout.split()]
        time.sleep(0.2)
    return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _left_behind(var: str) -> list[str]:
    """Processes whose command line names this run's var dir (Kafka's java, postgres)."""
    found = subprocess.run(["pgrep", "-af", var], capture_output=True, text=True, check=False)
    return found.stdout.splitlines()


@pytest.mark.parametrize(
    ("sig", "close_output"),
    [(signal.SIGHUP, False), (signal.SIGINT, True)],
    ids=["terminal-hang-up", "ctrl-c-after-the-pipe-reader-died"],
)
def test_up_stops_everything_it_started(
    up_env: dict[str, str], sig: signal.Signals, close_output: bool
) -> None:
    """After SIGHUP, or SIGINT once its stdout pipe has no reader, `ecpds up` exits 0 and
    leaves no Kafka, no PostgreSQL and no component process of its var dir running."""
    proc, _ = _start(up_env)
    var = up_env["ECPDS_VAR"]
    try:
        components = _children(proc.pid)
        assert components, "no component was started"
        services = _left_behind(var)
        assert any("kafka.Kafka" in p for p in services), services
        assert any("postgres" in p for p in services), services
        assert proc.stdout is not None
        if close_output:
            proc.stdout.close()  # the reader end: every later write of `ecpds up` gets EPIPE
        proc.send_signal(sig)
        if close_output:
            code = proc.wait(timeout=DEADLINE)
            rest = ""
        else:
            out, _ = proc.communicate(timeout=DEADLINE)
            code, rest = proc.returncode, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, rest
    if not close_output:
        assert "stopping components" in rest
        assert "kafka: stopped" in rest
    assert [p for p in components if _alive(p)] == []
    assert _left_behind(var) == []


@pytest.mark.parametrize(
    ("service", "pid_file"),
    [("kafka", "kafka/kafka.pid"), ("postgres", "pg/data/postmaster.pid")],
)
def test_up_restarts_a_killed_service_and_says_so_once_each_way(
    up_env: dict[str, str], service: str, pid_file: str
) -> None:
    """Once the Kafka (or PostgreSQL) server of an `ecpds up` is SIGKILLed, it runs again
    within ``DEADLINE`` (its script's status says so), and the output holds exactly one
    "died" line and one "back" line for it."""
    proc, _ = _start(up_env)
    var = Path(up_env["ECPDS_VAR"])
    try:
        pid = int((var / pid_file).read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        said = _read_until(proc, f"{service}: back", DEADLINE)
        script = {"kafka": "kafka/kafka.sh", "postgres": "pg/pg.sh"}[service]
        status = subprocess.run(
            ["bash", str(ROOT / "infra" / script), "status"],
            env=up_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        time.sleep(3 * Watch.CHECK)  # three more looks of the watch: it must not see a death again
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = (said + rest.decode(errors="replace")).splitlines()
    assert len([line for line in lines if line.startswith(f"{service}: died")]) == 1, lines
    assert len([line for line in lines if line.startswith(f"{service}: back")]) == 1, lines
    assert proc.returncode == 0
