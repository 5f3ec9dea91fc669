"""Settings come from the environment once, and bad values are refused by name."""

from __future__ import annotations

import pytest

from bus.errors import ConfigurationError
from bus.settings import Settings


def test_defaults_are_the_embedded_local_setup() -> None:
    """With no variables set, everything points at 127.0.0.1 and var/."""
    s = Settings.from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.pg_dsn == "postgresql://ecpds@127.0.0.1:5433/ecpds"
    assert s.mqtt_broker == "embedded"
    assert s.var_dir.name == "var"


def test_ports_follow_their_variables() -> None:
    """Changing the Kafka and PostgreSQL ports changes the derived addresses."""
    s = Settings.from_env({"ECPDS_KAFKA_PORT": "29092", "ECPDS_PG_PORT": "25433"})
    assert s.kafka_bootstrap == "127.0.0.1:29092"
    assert s.pg_dsn.endswith(":25433/ecpds")


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
        ("ECPDS_JANITOR_INTERVAL", "soon"),
        ("ECPDS_JANITOR_INTERVAL", "-1"),
        ("ECPDS_BACKUP_THREADS", "many"),
        ("ECPDS_REPLICATE_THREADS", "0"),
        ("ECPDS_MOVER_CAPACITY", "8.5"),
        ("ECPDS_MOVER_SHARE", "0"),
        ("ECPDS_CODEC", "java"),
        ("ECPDS_SESSION_IDLE", "forever"),
        ("ECPDS_SESSION_MAX", "0"),
    ],
)
def test_bad_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    """A bad value raises ConfigurationError whose field is the variable's name."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({name: value})
    assert caught.value.field == name
    assert name in str(caught.value)


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
