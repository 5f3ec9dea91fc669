"""HTTPS for our web servers (the monitor, the ingest API): the uvicorn options and the
self-signed pair ``ecpds up`` generates when ECPDS_TLS=self-signed.

Rules kept here: the key file is written 0600 in a 0700 directory, created with those modes
(never widened then narrowed); an existing pair is kept (it is what browsers were told to trust),
and a lock makes two processes starting at once agree on one pair. Forwarded headers
(X-Forwarded-For/-Proto) are believed only from the addresses in ECPDS_FORWARDED_ALLOW_IPS: by
default nobody's, so a local process cannot pose as another client address.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bus.private import replace_private
from bus.settings import Settings

SELF_SIGNED_NAMES = ("127.0.0.1", "localhost")
SELF_SIGNED_DAYS = 825  # the longest validity browsers accept for a server certificate


def ensure_self_signed(cert: Path, key: Path, names: Sequence[str] = SELF_SIGNED_NAMES) -> bool:
    """Write a self-signed certificate and its key unless both exist; whether it wrote them."""
    cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(cert.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cert.is_file() and key.is_file():
            return False
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        replace_private(key, pem.decode())  # PEM is ASCII
        certificate = _certificate(private, names).public_bytes(serialization.Encoding.PEM)
        replace_private(cert, certificate.decode())
        return True


def _certificate(private: ec.EllipticCurvePrivateKey, names: Sequence[str]) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ecpds {names[0]}")])
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        # its own trust anchor: `curl --cacert server.crt` and browsers' exceptions accept it
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(private, hashes.SHA256())
    )


def serving_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for where and how our web servers listen, from ``settings``.

    With ECPDS_TLS=self-signed the pair is generated here if ``ecpds up`` did not already.
    """
    options: dict[str, Any] = {
        "host": settings.monitor_address,
        "proxy_headers": settings.forwarded_allow_ips is not None,
        # uvicorn's default believes 127.0.0.1 (or $FORWARDED_ALLOW_IPS): say it outright
        "forwarded_allow_ips": settings.forwarded_allow_ips or "",
    }
    if settings.tls_cert is not None and settings.tls_key is not None:
        if settings.tls_self_signed:
            ensure_self_signed(settings.tls_cert, settings.tls_key)
        options["ssl_certfile"] = str(settings.tls_cert)
        options["ssl_keyfile"] = str(settings.tls_key)
    return options
