"""The Kafka clients' security options (bus.kafka_access): empty over plaintext, TLS verified
against the configured CA plus SCRAM-SHA-512 over sasl_ssl, the password only from a file its
owner alone may read; and, against a SASL_SSL broker (the suite's SASL leg), that the broker
lets in ecpds's clients and refuses one without the password or without trusting its
certificate."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import os
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bus.errors import ConfigurationError
from bus.faust_app import credentials
from bus.kafka_access import kafka_options
from bus.private import create_private
from bus.settings import ROOT, Settings
from bus.tls import ensure_self_signed
from tests.conftest import free_port


def sasl_settings(tmp_path: Path) -> Settings:
    """Settings of a sasl_ssl client whose CA and 0600 password file exist under ``tmp_path``."""
    ensure_self_signed(tmp_path / "tls" / "ca.crt", tmp_path / "tls" / "ca.key")
    create_private(tmp_path / "secrets" / "password", "s3cret-one\n")
    return Settings.from_env(
        {
            "ECPDS_KAFKA_SECURITY": "sasl_ssl",
            "ECPDS_KAFKA_CA": str(tmp_path / "tls" / "ca.crt"),
            "ECPDS_KAFKA_USER": "alice",
            "ECPDS_KAFKA_PASSWORD_FILE": str(tmp_path / "secrets" / "password"),
        }
    )


def test_plaintext_adds_no_options() -> None:
    """Over plaintext the clients keep aiokafka's defaults and faust gets no credentials."""
    plain = Settings.from_env({})
    assert kafka_options(plain) == {}
    assert credentials(plain) is None


def test_sasl_ssl_options_verify_the_broker_and_sign_in_with_scram(tmp_path: Path) -> None:
    """sasl_ssl gives SASL_SSL, SCRAM-SHA-512, the user, the file's password and a context that
    verifies the broker's certificate and name; faust gets the same in its own form."""
    s = sasl_settings(tmp_path)
    options = kafka_options(s)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "alice"
    assert options["sasl_plain_password"] == "s3cret-one"
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    faust_side = credentials(s)
    assert faust_side is not None
    assert (faust_side.username, faust_side.password) == ("alice", "s3cret-one")
    assert faust_side.mechanism.value == "SCRAM-SHA-512"
    assert faust_side.ssl_context is context
    assert "s3cret" not in repr(s) + repr(faust_side)


def test_a_password_file_others_may_read_is_refused(tmp_path: Path) -> None:
    """A password file readable by group or others is refused, naming the variable."""
    s = sasl_settings(tmp_path)
    assert s.kafka_password_file is not None
    s.kafka_password_file.chmod(0o644)
    with pytest.raises(ConfigurationError) as caught:
        kafka_options(s)
    assert caught.value.field == "ECPDS_KAFKA_PASSWORD_FILE"
    assert "chmod 600" in caught.value.reason


@pytest.mark.parametrize("variable", ["ECPDS_KAFKA_CA", "ECPDS_KAFKA_PASSWORD_FILE"])
def test_a_missing_file_is_refused_naming_its_variable(tmp_path: Path, variable: str) -> None:
    """A CA or password file that does not exist is refused by the variable's name."""
    s = sasl_settings(tmp_path)
    field = "kafka_ca" if variable == "ECPDS_KAFKA_CA" else "kafka_password_file"
    gone = dataclasses.replace(s, **{field: tmp_path / "nowhere"})
    with pytest.raises(ConfigurationError) as caught:
        kafka_options(gone)
    assert caught.value.field == variable


# -- against the SASL_SSL broker ---------------------------------------------------------------


@pytest.fixture
def sasl_broker(kafka: str, settings: Settings) -> Settings:
    """The suite's broker when it is the SASL_SSL one (`make test`'s SASL leg)."""
    if settings.kafka_security != "sasl_ssl":
        pytest.skip("the suite's broker is plaintext: this runs in the SASL leg")
    return settings


async def admin_topics(bootstrap: str, **options: object) -> list[str]:
    """The topic names a metadata request with ``options`` gets, or the error it meets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **options)
    try:
        await asyncio.wait_for(admin.start(), 20)
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def test_the_broker_admits_ecpds_clients(sasl_broker: Settings) -> None:
    """A client with kafka_options() signs in to the SASL_SSL broker and is answered."""
    assert isinstance(await admin_topics(sasl_broker.kafka_bootstrap, **kafka_options()), list)


async def test_the_broker_refuses_a_client_without_credentials(sasl_broker: Settings) -> None:
    """A plaintext client gets no answer from the SASL_SSL listener."""
    with pytest.raises(KafkaError):
        await admin_topics(sasl_broker.kafka_bootstrap)


async def test_the_broker_refuses_a_wrong_password(sasl_broker: Settings) -> None:
    """The right user over TLS with a wrong password fails SCRAM authentication."""
    options = {**kafka_options(), "sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaError):
        await admin_topics(sasl_broker.kafka_bootstrap, **options)


async def test_a_client_not_trusting_the_broker_certificate_stops(
    sasl_broker: Settings, tmp_path: Path
) -> None:
    """A client whose CA did not sign the broker's certificate never sends its password: the
    TLS handshake fails (the context verifies the broker)."""
    other = sasl_settings(tmp_path)  # another self-signed certificate as the CA
    options = {**kafka_options(), "ssl_context": kafka_options(other)["ssl_context"]}
    with pytest.raises(KafkaError):
        await admin_topics(sasl_broker.kafka_bootstrap, **options)


# -- one home ----------------------------------------------------------------------------------

CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
SOURCES = ("bus", "cli", "consumers", "producers", "projections", "protocols", "store", "bench")


def test_every_kafka_client_outside_the_tests_takes_the_security_options() -> None:
    """Every aiokafka client built outside the tests is given ``**kafka_options(...)``: none
    could reach a SASL_SSL broker without it, nor name its own protocol or password."""
    built, missing = 0, []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name not in CLIENTS:
                    continue
                built += 1
                spread = [k.value for k in node.keywords if k.arg is None]
                if not any(map(_is_kafka_options, spread)) and not _forwards_options(node, tree):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert built >= 12  # the scan sees the clients (it would pass vacuously otherwise)
    assert missing == []


def _is_kafka_options(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "kafka_options"


def _forwards_options(call: ast.Call, tree: ast.Module) -> bool:
    """``AIOKafkaProducer(**self._options)`` (the publisher's, renewed after a broker restart)
    where the module writes that dict with ``**kafka_options()`` in it."""
    forwarded = any(
        k.arg is None and isinstance(k.value, ast.Attribute) and k.value.attr == "_options"
        for k in call.keywords
    )
    spread_in_a_dict = any(
        key is None and _is_kafka_options(value)
        for d in ast.walk(tree)
        if isinstance(d, ast.Dict)
        for key, value in zip(d.keys, d.values, strict=True)
    )
    return forwarded and spread_in_a_dict


@pytest.mark.kafka  # kafka.sh fetches the broker's jars first when they are missing
def test_the_local_broker_refuses_to_start_with_another_security_than_formatted(
    tmp_path: Path,
) -> None:
    """kafka.sh keeps the security a data dir was formatted with: a plaintext one started
    with sasl_ssl (it has no SCRAM user) is refused with a message saying what to do."""
    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("node.id=1\n")  # formatted, by a broker before
    port = free_port()
    env = {
        **os.environ,
        "ECPDS_VAR": str(tmp_path),
        "ECPDS_KAFKA_PORT": str(port),
        "ECPDS_KAFKA_CONTROLLER_PORT": str(free_port()),
        "ECPDS_KAFKA_SECURITY": "sasl_ssl",
    }
    env.pop("ECPDS_KAFKA_PASSWORD_FILE", None)
    env.pop("ECPDS_KAFKA_USER", None)
    done = subprocess.run(
        ["bash", str(ROOT / "infra" / "kafka" / "kafka.sh"), "start"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert "was formatted for plaintext, not sasl_ssl" in done.stderr
    assert not (tmp_path / "kafka" / "kafka.pid").exists()  # nothing was started
    password = tmp_path / "secrets" / "kafka" / "password"
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
