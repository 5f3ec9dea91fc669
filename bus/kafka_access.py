"""How every Kafka client of ecpds reaches the broker: the one home of its security options.

Rule: every ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient`` outside the
tests is built with ``**kafka_options()`` (or ``kafka_options(settings)`` where the caller holds
its settings), and every faust app with ``faust_credentials``; nothing else names a security
protocol, a SASL mechanism or a password. With ``ECPDS_KAFKA_SECURITY=plaintext`` (the default)
the options are empty: aiokafka's own defaults. With ``sasl_ssl`` the broker is verified against
ECPDS_KAFKA_CA over TLS and ecpds signs in with SCRAM-SHA-512 as ECPDS_KAFKA_USER.

The password is read from ECPDS_KAFKA_PASSWORD_FILE, which must be readable by its owner only
(0600, as ``bus.private`` writes): a file others may read is refused by name, as is a missing one
or a CA that does not load. Options are built once per process and setting (the SSL context is
shared by every client); the password appears in no repr, log line or event.
"""

from __future__ import annotations

import functools
import ssl
import stat
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from bus.errors import ConfigurationError
from bus.settings import KafkaSecurity, Settings

SASL_MECHANISM = "SCRAM-SHA-512"


def kafka_options(settings: Settings | None = None) -> dict[str, Any]:
    """The keyword arguments an aiokafka client needs to reach the broker securely.

    ``settings`` defaults to ``Settings.from_env()``, read once per process: the security of
    a process does not change while it runs, and most clients are built where only the
    bootstrap address is at hand.
    """
    s = settings if settings is not None else _settings_from_env()
    return dict(_options(s.kafka_security, s.kafka_ca, s.kafka_user, s.kafka_password_file))


@functools.cache
def _settings_from_env() -> Settings:
    return Settings.from_env()


@functools.cache
def _options(
    security: KafkaSecurity, ca: Path | None, user: str | None, password_file: Path | None
) -> tuple[tuple[str, Any], ...]:
    if security == "plaintext":
        return ()
    # Settings.from_env gives all three with sasl_ssl
    assert ca is not None
    assert user is not None
    assert password_file is not None
    return (
        ("security_protocol", "SASL_SSL"),
        ("sasl_mechanism", SASL_MECHANISM),
        ("sasl_plain_username", user),
        ("sasl_plain_password", read_password(password_file)),
        ("ssl_context", _ssl_context(ca)),
    )


def read_password(path: Path) -> str:
    """The password in ``path`` (surrounding white space dropped), refused unless only its owner
    may read the file."""
    name = "ECPDS_KAFKA_PASSWORD_FILE"
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as error:
        raise ConfigurationError(name, f"cannot read {path}: {error.strerror}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigurationError(
            name, f"{path} may be read by others (mode {stat.S_IMODE(mode):o}): chmod 600 it"
        )
    if not text:
        raise ConfigurationError(name, f"{path} is empty")
    return text


def _ssl_context(ca: Path) -> ssl.SSLContext:
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigurationError("ECPDS_KAFKA_CA", f"cannot load {ca}: {reason}") from None
    return context
