"""The monitor served over HTTPS by configuration, checked from outside with curl: a CA-signed
pair given by ECPDS_TLS_CERT/_KEY, and the pair ECPDS_TLS=self-signed generates; the session
cookie is then ``Secure``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trustme
from psycopg import sql

from bus.settings import ROOT
from tests.conftest import free_port


def _serve(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The monitor runner as ``ecpds up`` starts it, until the test is done."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ECPDS_TLS")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "projections.monitor.runner", "--schema", env.pop("SCHEMA")],
        env={**base, **env, "ECPDS_MONITOR_PORT": str(port)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            ["curl", "-sk", "-m", "2", f"https://127.0.0.1:{port}/login"]
        ).returncode:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the monitor did not answer in time"
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-D", "-", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def schema(postgres: str) -> Iterator[str]:
    """A read-model schema name of its own, dropped afterwards."""
    name = f"tls_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_monitor_serves_https_with_given_pair_and_a_secure_cookie(
    kafka: str, postgres: str, schema: str, tmp_path: Path
) -> None:
    """With ECPDS_TLS_CERT/_KEY the monitor answers HTTPS that curl verifies against the CA,
    refuses curl without the CA, and its session cookie is marked Secure."""
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    env = {
        "SCHEMA": schema,
        "ECPDS_VAR": str(tmp_path / "var"),
        "ECPDS_PG_DSN": postgres,
        "ECPDS_KAFKA_BOOTSTRAP": kafka,
        "ECPDS_TLS_CERT": str(cert),
        "ECPDS_TLS_KEY": str(key),
    }
    for _ in _serve(env, port):
        answer = _curl("--cacert", str(ca_file), f"https://localhost:{port}/login")
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.startswith("HTTP/1.1 200")
        cookie = next(
            line for line in answer.stdout.splitlines() if line.lower().startswith("set-cookie:")
        )
        assert "ecpds_monitor=" in cookie
        assert "; secure" in cookie.lower()
        unverified = _curl(f"https://localhost:{port}/login")
        assert unverified.returncode == 60, unverified  # curl: peer certificate not trusted
        plain = _curl(f"http://127.0.0.1:{port}/login")
        assert not plain.stdout.startswith("HTTP/1.1 200")


def test_self_signed_pair_is_generated_and_verifies(
    kafka: str, postgres: str, schema: str, tmp_path: Path
) -> None:
    """ECPDS_TLS=self-signed writes a pair under var/secrets/tls (key 0600) that curl accepts as
    its own CA for both 127.0.0.1 and localhost."""
    var = tmp_path / "var"
    port = free_port()
    env = {
        "SCHEMA": schema,
        "ECPDS_VAR": str(var),
        "ECPDS_PG_DSN": postgres,
        "ECPDS_KAFKA_BOOTSTRAP": kafka,
        "ECPDS_TLS": "self-signed",
    }
    for _ in _serve(env, port):
        cert, key = var / "secrets" / "tls" / "server.crt", var / "secrets" / "tls" / "server.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert (var / "secrets" / "tls").stat().st_mode & 0o777 == 0o700
        for host in ("127.0.0.1", "localhost"):
            answer = _curl("--cacert", str(cert), f"https://{host}:{port}/login")
            assert answer.returncode == 0, answer.stderr
            assert answer.stdout.startswith("HTTP/1.1 200")
