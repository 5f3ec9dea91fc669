"""The self-signed pair ``ecpds up`` generates: private key 0600 in a 0700 directory, names
127.0.0.1 and localhost, kept once made; and uvicorn's options believe no forwarded header
unless a proxy's address is configured."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from bus.settings import Settings
from bus.tls import ensure_self_signed, serving_options


def test_self_signed_pair_is_private_names_the_machine_and_is_kept(tmp_path: Path) -> None:
    """The key is 0600, the SAN holds 127.0.0.1 and localhost, and a second call keeps the pair."""
    cert, key = tmp_path / "tls" / "server.crt", tmp_path / "tls" / "server.key"
    assert ensure_self_signed(cert, key)
    assert key.stat().st_mode & 0o777 == 0o600
    assert cert.parent.stat().st_mode & 0o777 == 0o700
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    before = cert.read_bytes(), key.read_bytes()
    assert not ensure_self_signed(cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_serving_options_follow_settings(tmp_path: Path) -> None:
    """Plain HTTP trusts no proxy; TLS settings and a proxy address reach uvicorn's options."""
    plain = serving_options(Settings.from_env({"ECPDS_VAR": str(tmp_path)}))
    assert plain == {"host": "127.0.0.1", "proxy_headers": False, "forwarded_allow_ips": ""}
    settings = Settings.from_env(
        {
            "ECPDS_VAR": str(tmp_path),
            "ECPDS_TLS": "self-signed",
            "ECPDS_MONITOR_ADDRESS": "0.0.0.0",
            "ECPDS_FORWARDED_ALLOW_IPS": "10.0.0.5",
        }
    )
    options = serving_options(settings)
    assert options["host"] == "0.0.0.0"
    assert (options["proxy_headers"], options["forwarded_allow_ips"]) == (True, "10.0.0.5")
    assert options["ssl_certfile"] == str(tmp_path / "secrets" / "tls" / "server.crt")
    assert Path(options["ssl_keyfile"]).stat().st_mode & 0o777 == 0o600
