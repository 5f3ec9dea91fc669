"""Settings, read once from the environment into one frozen object.

Every component gets its settings from ``Settings.from_env()``; nothing else reads
``os.environ``. Defaults are the embedded single-machine set-up that ``make up`` runs
(everything on 127.0.0.1, data under ``var/``). A bad value is refused with a
``ConfigurationError`` naming the variable and what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bus.config.durations import parse_size
from bus.errors import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent

MqttBroker = Literal["embedded", "mosquitto", "external"]
LogFormat = Literal["console", "json"]


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(name, f"must be a port number, got {raw!r}") from None
    if not 1 <= value <= 65535:
        raise ConfigurationError(name, f"must be between 1 and 65535, got {value}")
    return value


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(name, f"must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigurationError(name, f"must be at least 1, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(name, f"must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigurationError(name, f"must be more than 0 seconds, got {raw!r}")
    return value


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse_size(raw, name)
    except ConfigurationError as error:
        raise ConfigurationError(name, error.reason) from None
    if value < 1:
        raise ConfigurationError(name, f"must be at least 1 byte, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise ConfigurationError(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


SMTP_SCHEMES = ("smtp", "smtps", "smtp+starttls")


def _smtp_url(env: Mapping[str, str]) -> str | None:
    """ECPDS_SMTP_URL checked: a known scheme, a host, no credentials in it (they would leak)."""
    raw = env.get("ECPDS_SMTP_URL")
    if not raw:
        return None
    scheme, sep, rest = raw.partition("://")
    host = rest.split("/", 1)[0]
    if not sep or scheme not in SMTP_SCHEMES or not host:
        raise ConfigurationError(
            "ECPDS_SMTP_URL", f"expected {'|'.join(SMTP_SCHEMES)}://host[:port], got {scheme}://..."
        )
    if "@" in host:
        raise ConfigurationError(
            "ECPDS_SMTP_URL", "no credentials in the URL: use ECPDS_SMTP_USER/_PASSWORD_FILE"
        )
    return raw


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _pg_dsn(env: Mapping[str, str], pg_port: int, passfile: Path) -> str:
    """ECPDS_PG_DSN checked (a postgresql:// URL, a known ``sslmode``), or the local cluster's.

    The local cluster's DSN names the password file (libpq's ``passfile``), never the password,
    so the DSN may be logged or passed to child processes as it is.
    """
    raw = env.get("ECPDS_PG_DSN")
    if not raw:
        path = urllib.parse.quote(str(passfile), safe="/")
        return f"postgresql://ecpds@127.0.0.1:{pg_port}/ecpds?passfile={path}"
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError("ECPDS_PG_DSN", "must be a postgresql:// URL")
    params = urllib.parse.parse_qs(urllib.parse.urlsplit(raw).query)
    for mode in params.get("sslmode", []):
        if mode not in SSL_MODES:
            raise ConfigurationError(
                "ECPDS_PG_DSN", f"sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}"
            )
    return raw


TlsMode = Literal["off", "self-signed"]


def _tls(env: Mapping[str, str], secrets: Path) -> tuple[Path | None, Path | None, bool]:
    """The monitor's and API's certificate and key: given files, a generated pair, or none.

    ECPDS_TLS_CERT and ECPDS_TLS_KEY come together (one without the other is refused, naming
    the missing one) and must exist; ECPDS_TLS=self-signed instead names the pair ``ecpds up``
    generates under ``<secrets>/tls``. Returns (cert, key, self_signed).
    """
    mode = _choice(env, "ECPDS_TLS", "off", ("off", "self-signed"))
    cert, key = env.get("ECPDS_TLS_CERT") or None, env.get("ECPDS_TLS_KEY") or None
    if (cert is None) != (key is None):
        missing = "ECPDS_TLS_KEY" if key is None else "ECPDS_TLS_CERT"
        other = "ECPDS_TLS_CERT" if key is None else "ECPDS_TLS_KEY"
        raise ConfigurationError(missing, f"must be set together with {other}")
    if cert is not None and key is not None:
        if mode == "self-signed":
            raise ConfigurationError("ECPDS_TLS", "self-signed conflicts with ECPDS_TLS_CERT/_KEY")
        for name, value in (("ECPDS_TLS_CERT", cert), ("ECPDS_TLS_KEY", key)):
            if not Path(value).is_file():
                raise ConfigurationError(name, f"no such file: {value}")
        return Path(cert), Path(key), False
    if mode == "self-signed":
        return secrets / "tls" / "server.crt", secrets / "tls" / "server.key", True
    return None, None, False


KafkaSecurity = Literal["plaintext", "sasl_ssl"]


def _kafka_access(
    env: Mapping[str, str], secrets: Path
) -> tuple[KafkaSecurity, Path | None, str | None, Path | None]:
    """How clients reach Kafka: (security, CA file, SCRAM user, password file).

    ``plaintext`` needs nothing. ``sasl_ssl`` (TLS, SCRAM-SHA-512) needs a CA certificate to
    verify the broker, a user and a password file: for the local broker (no
    ECPDS_KAFKA_BOOTSTRAP) they default to what ``infra/kafka/kafka.sh`` generates under
    ``<secrets>/kafka``; for a broker elsewhere each must be given, and a missing one is refused
    by name. The password stays in its file (never in the environment, logs or events).
    """
    security = _choice(env, "ECPDS_KAFKA_SECURITY", "plaintext", ("plaintext", "sasl_ssl"))
    given = {
        name: env.get(name) or None
        for name in ("ECPDS_KAFKA_CA", "ECPDS_KAFKA_USER", "ECPDS_KAFKA_PASSWORD_FILE")
    }
    if security == "plaintext":
        for name, value in given.items():
            if value is not None:
                raise ConfigurationError(name, "needs ECPDS_KAFKA_SECURITY=sasl_ssl")
        return "plaintext", None, None, None
    if env.get("ECPDS_KAFKA_BOOTSTRAP"):  # a broker elsewhere: nothing is guessed
        for name, value in given.items():
            if value is None:
                raise ConfigurationError(name, "must be set when ECPDS_KAFKA_SECURITY=sasl_ssl")
    local = secrets / "kafka"
    ca = given["ECPDS_KAFKA_CA"] or local / "server.crt"
    password = given["ECPDS_KAFKA_PASSWORD_FILE"] or local / "password"
    return "sasl_ssl", Path(ca), given["ECPDS_KAFKA_USER"] or "ecpds", Path(password)


def _port_range(env: Mapping[str, str], name: str) -> tuple[int, int] | None:
    """``first-last`` (a run of ports, both included); None when unset (any free port)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    first, sep, last = raw.partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ConfigurationError(name, f"must be a port range first-last, got {raw!r}")
    low, high = int(first), int(last)
    if not 1 <= low <= high <= 65535:
        raise ConfigurationError(name, f"must be 1 <= first <= last <= 65535, got {raw!r}")
    return low, high


def _ipv4(env: Mapping[str, str], name: str) -> str | None:
    """An IPv4 address (what a PASV answer can carry), or None when unset."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        return str(ipaddress.IPv4Address(raw))
    except ValueError:
        raise ConfigurationError(name, f"must be an IPv4 address, got {raw!r}") from None


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    """A bind address: an IP address or a host name, nothing with a port or a scheme in it."""
    value = env.get(name) or default
    if not value or any(c in value for c in "/ @") or value.count(":") == 1:
        raise ConfigurationError(name, f"must be an IP address or a host name, got {value!r}")
    return value


class _Recording(Mapping[str, str]):
    """An empty environment that notes every name looked up in it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True)
class Settings:
    """Where the services are and how this process behaves."""

    var_dir: Path = ROOT / "var"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_port: int = 9092
    # how clients reach Kafka (bus.kafka_access turns these into client options): plaintext,
    # or TLS verified against ``kafka_ca`` with SCRAM-SHA-512 as ``kafka_user``, whose password
    # is read from ``kafka_password_file`` (never the environment)
    kafka_security: KafkaSecurity = "plaintext"
    kafka_ca: Path | None = None
    kafka_user: str | None = None
    kafka_password_file: Path | None = None
    pg_port: int = 5433
    # the local cluster's DSN names the password file (see _pg_dsn), never the password
    pg_dsn: str = (
        f"postgresql://ecpds@127.0.0.1:5433/ecpds?passfile={ROOT / 'var' / 'secrets' / 'pgpass'}"
    )
    mqtt_broker: MqttBroker = "embedded"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    monitor_port: int = 8080
    monitor_address: str = "127.0.0.1"  # where the monitor and the ingest API listen
    # HTTPS for the monitor and the ingest API: PEM certificate (chain) and key, or None for HTTP
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False  # the pair is generated under var/secrets/tls by `ecpds up`
    # addresses of reverse proxies whose X-Forwarded-For/-Proto are believed; None: nobody's
    forwarded_allow_ips: str | None = None
    topic_partitions: int = 4
    # copies of each ecpds topic ``apply_topics`` creates (3 on a cluster: see infra/kafka)
    kafka_replication: int = 1
    store_root: Path = ROOT / "var" / "store"
    key_file: Path = ROOT / "var" / "secrets" / "ecpds.key"
    log_format: LogFormat = "console"
    log_level: str = "INFO"
    # mailer: SMTP server URL (smtp://, smtps:// implicit TLS, smtp+starttls://); None = .eml outbox
    smtp_url: str | None = None
    smtp_user: str | None = None  # SMTP login, if the server wants one
    smtp_password_file: Path | None = None  # the password is read from this file, never the env
    mail_from: str = "ecpds@localhost"  # the From: of every mail sent
    janitor_interval: float = 60.0  # seconds between the janitor's sweeps
    # a scheduler snapshots the state of each partition it owns after this many events or
    # this many seconds, whichever comes first (consumers/scheduler/snapshots.py): a takeover
    # then replays at most about that much of the partition's log
    scheduler_snapshot_events: int = 50_000
    scheduler_snapshot_interval: float = 300.0
    session_idle: float = 3600.0  # seconds a monitor session may stay unused before it ends
    session_max: float = 12 * 3600.0  # seconds a monitor session lasts at most, used or not
    backup_threads: int = 15  # copies a backup runs at once
    replicate_threads: int = 15  # copies a replicator runs at once
    mover_group: str = "default"  # the transfer group a mover serves
    mover_capacity: int = 8  # transfers a mover runs at once
    mover_share: int = 4  # transfers one SFTP connection carries at once (1: a connection each)
    mover_id: str | None = None  # a mover's stable id (default: its instance)
    codec: Literal["auto", "native", "python"] = "auto"  # the Avro codec (read at import too)
    # the largest upload the ingest API takes for a destination without its own max_file_size
    max_upload: int = 10 * 1024**3
    # the Data Portal's doors: SFTP/SCP and HTTPS, on their own address (127.0.0.1 by default)
    portal_address: str = "127.0.0.1"
    portal_sftp_port: int = 2222
    portal_https_port: int = 8443
    # its FTP door: explicit TLS (AUTH TLS) on the FTP port, implicit FTPS on its own; passive
    # data connections on a port of the range (None: any free port), announced in PASV answers
    # at the advertised address (None: the address the client reached), as behind NAT
    portal_ftp_port: int = 2121
    portal_ftps_port: int = 2990
    portal_ftp_passive_ports: tuple[int, int] | None = None
    portal_ftp_advertised_address: str | None = None
    portal_ftp_idle: float = 600.0  # seconds a signed-in FTP client may stay silent, no transfer
    portal_s3_port: int = 9443  # the portal's S3 API (HTTPS)
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # the instance was named (ECPDS_INSTANCE), so it keeps its name across restarts
    instance_named: bool = False
    token: str | None = field(default=None, repr=False)  # the CLI's operator token (ECPDS_TOKEN)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the ``ECPDS_*`` variables; unknown values are refused by name."""
        env = os.environ if env is None else env
        var_dir = Path(env.get("ECPDS_VAR") or ROOT / "var")
        if not var_dir.is_absolute():
            var_dir = ROOT / var_dir
        kafka_port = _port(env, "ECPDS_KAFKA_PORT", 9092)
        pg_port = _port(env, "ECPDS_PG_PORT", 5433)
        bootstrap = env.get("ECPDS_KAFKA_BOOTSTRAP") or f"127.0.0.1:{kafka_port}"
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigurationError(
                    "ECPDS_KAFKA_BOOTSTRAP", f"expected host:port[,host:port], got {bootstrap!r}"
                )
        dsn = _pg_dsn(env, pg_port, var_dir / "secrets" / "pgpass")
        security, kafka_ca, kafka_user, kafka_password_file = _kafka_access(
            env, var_dir / "secrets"
        )
        tls_cert, tls_key, self_signed = _tls(env, var_dir / "secrets")
        store_root = Path(env.get("ECPDS_STORE_ROOT") or var_dir / "store")
        key_file = Path(env.get("ECPDS_KEY_FILE") or var_dir / "secrets" / "ecpds.key")
        level = (env.get("ECPDS_LOG_LEVEL") or "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigurationError(
                "ECPDS_LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, got {level!r}"
            )
        settings = cls(
            var_dir=var_dir,
            kafka_bootstrap=bootstrap,
            kafka_port=kafka_port,
            kafka_security=security,
            kafka_ca=kafka_ca,
            kafka_user=kafka_user,
            kafka_password_file=kafka_password_file,
            pg_port=pg_port,
            pg_dsn=dsn,
            mqtt_broker=_choice(
                env, "ECPDS_MQTT_BROKER", "embedded", ("embedded", "mosquitto", "external")
            ),  # type: ignore[arg-type]
            mqtt_host=env.get("ECPDS_MQTT_HOST") or "127.0.0.1",
            mqtt_port=_port(env, "ECPDS_MQTT_PORT", 1883),
            monitor_port=_port(env, "ECPDS_MONITOR_PORT", 8080),
            monitor_address=_address(env, "ECPDS_MONITOR_ADDRESS", "127.0.0.1"),
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_self_signed=self_signed,
            forwarded_allow_ips=env.get("ECPDS_FORWARDED_ALLOW_IPS") or None,
            topic_partitions=_positive(env, "ECPDS_TOPIC_PARTITIONS", 4),
            kafka_replication=_positive(env, "ECPDS_KAFKA_REPLICATION", 1),
            store_root=store_root,
            key_file=key_file,
            log_format=_choice(env, "ECPDS_LOG_FORMAT", "console", ("console", "json")),  # type: ignore[arg-type]
            log_level=level,
            smtp_url=_smtp_url(env),
            smtp_user=env.get("ECPDS_SMTP_USER") or None,
            smtp_password_file=(
                Path(env["ECPDS_SMTP_PASSWORD_FILE"])
                if env.get("ECPDS_SMTP_PASSWORD_FILE")
                else None
            ),
            mail_from=env.get("ECPDS_MAIL_FROM") or "ecpds@localhost",
            janitor_interval=_seconds(env, "ECPDS_JANITOR_INTERVAL", 60.0),
            scheduler_snapshot_events=_positive(env, "ECPDS_SCHEDULER_SNAPSHOT_EVENTS", 50_000),
            scheduler_snapshot_interval=_seconds(env, "ECPDS_SCHEDULER_SNAPSHOT_INTERVAL", 300.0),
            session_idle=_seconds(env, "ECPDS_SESSION_IDLE", 3600.0),
            session_max=_seconds(env, "ECPDS_SESSION_MAX", 12 * 3600.0),
            backup_threads=_positive(env, "ECPDS_BACKUP_THREADS", 15),
            replicate_threads=_positive(env, "ECPDS_REPLICATE_THREADS", 15),
            mover_group=env.get("ECPDS_MOVER_GROUP") or "default",
            mover_capacity=_positive(env, "ECPDS_MOVER_CAPACITY", 8),
            mover_share=_positive(env, "ECPDS_MOVER_SHARE", 4),
            mover_id=env.get("ECPDS_MOVER_ID") or None,
            codec=_choice(env, "ECPDS_CODEC", "auto", ("auto", "native", "python")),  # type: ignore[arg-type]
            max_upload=_size(env, "ECPDS_MAX_UPLOAD", 10 * 1024**3),
            portal_address=_address(env, "ECPDS_PORTAL_ADDRESS", "127.0.0.1"),
            portal_sftp_port=_port(env, "ECPDS_PORTAL_SFTP_PORT", 2222),
            portal_https_port=_port(env, "ECPDS_PORTAL_HTTPS_PORT", 8443),
            portal_ftp_port=_port(env, "ECPDS_PORTAL_FTP_PORT", 2121),
            portal_ftps_port=_port(env, "ECPDS_PORTAL_FTPS_PORT", 2990),
            portal_ftp_passive_ports=_port_range(env, "ECPDS_PORTAL_FTP_PASSIVE_PORTS"),
            portal_ftp_advertised_address=_ipv4(env, "ECPDS_PORTAL_FTP_ADVERTISED_ADDRESS"),
            portal_ftp_idle=_seconds(env, "ECPDS_PORTAL_FTP_IDLE_TIMEOUT", 600.0),
            portal_s3_port=_port(env, "ECPDS_PORTAL_S3_PORT", 9443),
            token=env.get("ECPDS_TOKEN") or None,
        )
        if env.get("ECPDS_INSTANCE"):
            named = {"instance": env["ECPDS_INSTANCE"], "instance_named": True}
            settings = cls(**{**settings.__dict__, **named})
        return settings

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def web_scheme(self) -> str:
        """``https`` when the monitor and the API are served over TLS, else ``http``."""
        return "https" if self.tls_cert is not None else "http"

    def web_url(self, port: int) -> str:
        """The base URL of a web server of ours on ``port`` (the monitor's, the API's)."""
        host = self.monitor_address
        if host in ("0.0.0.0", "::"):  # listening everywhere: this machine reaches it locally
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"{self.web_scheme}://{host}:{port}"

    @staticmethod
    def variables() -> frozenset[str]:
        """Every ``ECPDS_*`` variable ``from_env`` reads (for checks of files that set them)."""
        env = _Recording()
        Settings.from_env(env)
        return frozenset(env.asked)

    def infra_env(self) -> dict[str, str]:
        """The variables the infra scripts read, matching these settings."""
        env = {
            "ECPDS_VAR": str(self.var_dir),
            "ECPDS_KAFKA_PORT": str(self.kafka_port),
            "ECPDS_KAFKA_SECURITY": self.kafka_security,
            "ECPDS_PG_PORT": str(self.pg_port),
            "ECPDS_MQTT_PORT": str(self.mqtt_port),
        }
        if self.kafka_security == "sasl_ssl":  # the local broker's SCRAM user and its files
            env["ECPDS_KAFKA_USER"] = str(self.kafka_user)
            env["ECPDS_KAFKA_PASSWORD_FILE"] = str(self.kafka_password_file)
        return env
