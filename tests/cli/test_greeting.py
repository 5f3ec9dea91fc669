"""`ecpds up` tells the operator the addresses it serves: https:// and the certificate to trust
when TLS is on, http:// otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.settings import Settings
from cli.supervisor import Component, _greet

MONITOR_AND_API = [Component("monitor", ("x",)), Component("api", ("x",))]


def test_greeting_names_https_and_the_self_signed_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ECPDS_TLS=self-signed the addresses are https:// and the certificate is named."""
    settings = Settings.from_env({"ECPDS_VAR": str(tmp_path), "ECPDS_TLS": "self-signed"})
    _greet(settings, MONITOR_AND_API)
    out = capsys.readouterr().out
    assert "monitor: https://127.0.0.1:8080/" in out
    assert "ingest API: https://127.0.0.1:8081/api/v1/openapi.json" in out
    assert f"curl --cacert {tmp_path}/secrets/tls/server.crt" in out
    assert "http://" not in out


def test_greeting_stays_http_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without TLS settings the quick tour's http://127.0.0.1:8080/ is what is printed."""
    _greet(Settings.from_env({"ECPDS_VAR": str(tmp_path)}), MONITOR_AND_API)
    out = capsys.readouterr().out
    assert "monitor: http://127.0.0.1:8080/" in out
    assert "https://" not in out


def test_greeting_names_the_portal_doors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the portal among the components, its sftp, ftp and https addresses and the
    certificate it creates on first run are printed."""
    settings = Settings.from_env({"ECPDS_VAR": str(tmp_path)})
    _greet(settings, [Component("portal", ("x",))])
    out = capsys.readouterr().out
    assert "sftp -P 2222 <data user>@127.0.0.1" in out
    assert "ftp://127.0.0.1:2121 (AUTH TLS)" in out
    assert (
        f"https://127.0.0.1:8443/ (curl --cacert {tmp_path}/secrets/portal/tls/server.crt)" in out
    )
