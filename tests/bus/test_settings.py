"""Settings come from the environment once, and bad values are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import ConfigurationError
from bus.settings import Settings


def test_defaults_are_the_embedded_local_setup() -> None:
    """With no variables set, everything points at 127.0.0.1 and var/."""
    s = Settings.from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.pg_dsn.startswith("postgresql://ecpds@127.0.0.1:5433/ecpds?passfile=/")
    assert s.pg_dsn.endswith("/var/secrets/pgpass")
    assert s.mqtt_broker == "embedded"
    assert s.var_dir.name == "var"


def test_ports_follow_their_variables() -> None:
    """Changing the Kafka and PostgreSQL ports changes the derived addresses."""
    s = Settings.from_env({"ECPDS_KAFKA_PORT": "29092", "ECPDS_PG_PORT": "25433"})
    assert s.kafka_bootstrap == "127.0.0.1:29092"
    assert ":25433/ecpds?" in s.pg_dsn


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ECPDS_KAFKA_PORT", "abc"),
        ("ECPDS_PG_PORT", "70000"),
        ("ECPDS_MQTT_BROKER", "rabbit"),
        ("ECPDS_KAFKA_BOOTSTRAP", "nohostport"),
        ("ECPDS_PG_DSN", "mysql://x"),
        ("ECPDS_LOG_LEVEL", "LOUD"),
        ("ECPDS_TOPIC_PARTITIONS", "0"),
        ("ECPDS_KAFKA_REPLICATION", "three"),
        ("ECPDS_JANITOR_INTERVAL", "soon"),
        ("ECPDS_JANITOR_INTERVAL", "-1"),
        ("ECPDS_BACKUP_THREADS", "many"),
        ("ECPDS_REPLICATE_THREADS", "0"),
        ("ECPDS_MOVER_CAPACITY", "8.5"),
        ("ECPDS_MOVER_SHARE", "0"),
        ("ECPDS_CODEC", "java"),
        ("ECPDS_SESSION_IDLE", "forever"),
        ("ECPDS_SESSION_MAX", "0"),
        ("ECPDS_KAFKA_SECURITY", "ssl"),
        ("ECPDS_KAFKA_USER", "ecpds"),  # meaningless without ECPDS_KAFKA_SECURITY=sasl_ssl
        ("ECPDS_PORTAL_FTP_PORT", "ftp"),
        ("ECPDS_PORTAL_FTPS_PORT", "0"),
        ("ECPDS_PORTAL_FTP_PASSIVE_PORTS", "30000"),
        ("ECPDS_PORTAL_FTP_PASSIVE_PORTS", "30100-30000"),
        ("ECPDS_PORTAL_FTP_PASSIVE_PORTS", "30000-70000"),
        ("ECPDS_PORTAL_FTP_ADVERTISED_ADDRESS", "portal.example.org"),
        ("ECPDS_PORTAL_FTP_ADVERTISED_ADDRESS", "::1"),
        ("ECPDS_PORTAL_FTP_IDLE_TIMEOUT", "never"),
    ],
)
def test_bad_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    """A bad value raises ConfigurationError whose field is the variable's name."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({name: value})
    assert caught.value.field == name
    assert name in str(caught.value)


def test_the_portal_ftp_passive_range_and_advertised_address_are_read() -> None:
    """A passive range ``first-last`` and an IPv4 advertised address are kept; unset, both
    are None (any free port, the address the client reached)."""
    given = Settings.from_env(
        {
            "ECPDS_PORTAL_FTP_PASSIVE_PORTS": "30000-30100",
            "ECPDS_PORTAL_FTP_ADVERTISED_ADDRESS": "192.0.2.7",
        }
    )
    assert given.portal_ftp_passive_ports == (30000, 30100)
    assert given.portal_ftp_advertised_address == "192.0.2.7"
    unset = Settings.from_env({})
    assert (unset.portal_ftp_passive_ports, unset.portal_ftp_advertised_address) == (None, None)


def test_a_cluster_is_named_by_its_bootstrap_list_and_replication() -> None:
    """A 3-broker cluster is reached through its list and gets topics of 3 copies (1 unless
    told), and ``variables`` names the variable among those ``from_env`` reads."""
    servers = "127.0.0.1:9192,127.0.0.1:9194,127.0.0.1:9196"
    s = Settings.from_env({"ECPDS_KAFKA_BOOTSTRAP": servers, "ECPDS_KAFKA_REPLICATION": "3"})
    assert (s.kafka_bootstrap, s.kafka_replication) == (servers, 3)
    assert Settings.from_env({}).kafka_replication == 1
    assert {"ECPDS_KAFKA_REPLICATION", "ECPDS_KAFKA_BOOTSTRAP", "ECPDS_INSTANCE"} <= (
        Settings.variables()
    )
    assert all(name.startswith("ECPDS_") for name in Settings.variables())


def test_stage_variables_are_read_by_settings() -> None:
    """The stage runners' variables (janitor, backup, replicator, mover) come from Settings."""
    s = Settings.from_env(
        {
            "ECPDS_JANITOR_INTERVAL": "2.5",
            "ECPDS_BACKUP_THREADS": "3",
            "ECPDS_REPLICATE_THREADS": "4",
            "ECPDS_MOVER_GROUP": "europe",
            "ECPDS_MOVER_CAPACITY": "16",
            "ECPDS_MOVER_SHARE": "1",
            "ECPDS_MOVER_ID": "m1",
            "ECPDS_CODEC": "python",
            "ECPDS_SESSION_IDLE": "600",
            "ECPDS_SESSION_MAX": "7200",
        }
    )
    assert (s.session_idle, s.session_max) == (600.0, 7200.0)
    assert (s.janitor_interval, s.backup_threads, s.replicate_threads) == (2.5, 3, 4)
    assert (s.mover_group, s.mover_capacity, s.mover_share, s.mover_id) == ("europe", 16, 1, "m1")
    assert s.codec == "python"


def test_tls_cert_and_key_come_together(tmp_path: Path) -> None:
    """ECPDS_TLS_CERT without ECPDS_TLS_KEY (or the reverse) is refused, naming the missing one."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"ECPDS_TLS_CERT": str(cert)})
    assert caught.value.field == "ECPDS_TLS_KEY"
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"ECPDS_TLS_KEY": str(key)})
    assert caught.value.field == "ECPDS_TLS_CERT"
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"ECPDS_TLS_CERT": str(tmp_path / "gone"), "ECPDS_TLS_KEY": str(key)})
    assert caught.value.field == "ECPDS_TLS_CERT"
    both = Settings.from_env({"ECPDS_TLS_CERT": str(cert), "ECPDS_TLS_KEY": str(key)})
    assert (both.tls_cert, both.tls_key, both.web_scheme) == (cert, key, "https")


def test_tls_defaults_to_http_and_self_signed_names_the_generated_pair() -> None:
    """No TLS variable: plain HTTP on 127.0.0.1; ECPDS_TLS=self-signed: the pair in var/secrets."""
    plain = Settings.from_env({})
    assert (plain.tls_cert, plain.web_scheme) == (None, "http")
    assert plain.web_url(8080) == "http://127.0.0.1:8080"
    assert (plain.monitor_address, plain.forwarded_allow_ips) == ("127.0.0.1", None)
    signed = Settings.from_env({"ECPDS_TLS": "self-signed", "ECPDS_MONITOR_ADDRESS": "0.0.0.0"})
    assert signed.tls_self_signed
    assert signed.tls_cert is not None
    assert signed.tls_cert.parent == signed.var_dir / "secrets" / "tls"
    assert signed.web_url(8443) == "https://127.0.0.1:8443"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"ECPDS_TLS": "yes"}, "ECPDS_TLS"),
        ({"ECPDS_MONITOR_ADDRESS": "127.0.0.1:80"}, "ECPDS_MONITOR_ADDRESS"),
        ({"ECPDS_MONITOR_ADDRESS": "http://x"}, "ECPDS_MONITOR_ADDRESS"),
        ({"ECPDS_PG_DSN": "postgresql://h/db?sslmode=maybe"}, "ECPDS_PG_DSN"),
    ],
)
def test_bad_web_and_database_security_values_are_refused(env: dict[str, str], name: str) -> None:
    """A TLS mode, bind address or sslmode that means nothing is refused by its variable."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert caught.value.field == name


def test_given_dsn_keeps_its_sslmode() -> None:
    """ECPDS_PG_DSN is used as given, its sslmode included (psycopg then obeys it)."""
    dsn = "postgresql://ecpds@db.example:5432/ecpds?sslmode=verify-full"
    assert Settings.from_env({"ECPDS_PG_DSN": dsn}).pg_dsn == dsn


def test_kafka_sasl_ssl_defaults_to_the_local_brokers_files() -> None:
    """sasl_ssl towards the local broker uses the user, certificate and password file that
    infra/kafka/kafka.sh makes under the secrets directory; plaintext needs none of them."""
    plain = Settings.from_env({"ECPDS_VAR": "/srv/ecpds"})
    assert (plain.kafka_security, plain.kafka_ca, plain.kafka_password_file) == (
        "plaintext", None, None,
    )  # fmt: skip
    s = Settings.from_env({"ECPDS_VAR": "/srv/ecpds", "ECPDS_KAFKA_SECURITY": "sasl_ssl"})
    assert s.kafka_security == "sasl_ssl"
    assert s.kafka_user == "ecpds"
    assert s.kafka_ca == Path("/srv/ecpds/secrets/kafka/server.crt")
    assert s.kafka_password_file == Path("/srv/ecpds/secrets/kafka/password")
    assert s.infra_env()["ECPDS_KAFKA_PASSWORD_FILE"] == "/srv/ecpds/secrets/kafka/password"


@pytest.mark.parametrize(
    "missing", ["ECPDS_KAFKA_CA", "ECPDS_KAFKA_USER", "ECPDS_KAFKA_PASSWORD_FILE"]
)
def test_kafka_sasl_ssl_elsewhere_needs_each_credential(missing: str) -> None:
    """Towards a broker elsewhere (ECPDS_KAFKA_BOOTSTRAP) nothing is guessed: a missing CA,
    user or password file is refused by name."""
    env = {
        "ECPDS_KAFKA_BOOTSTRAP": "kafka.example:9093",
        "ECPDS_KAFKA_SECURITY": "sasl_ssl",
        "ECPDS_KAFKA_CA": "/etc/ecpds/kafka-ca.pem",
        "ECPDS_KAFKA_USER": "ecpds",
        "ECPDS_KAFKA_PASSWORD_FILE": "/etc/ecpds/kafka-password",
    }
    Settings.from_env(env)  # complete: accepted
    del env[missing]
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert caught.value.field == missing
