"""Health checks of the services ecpds needs: Kafka answers a metadata request, PostgreSQL
accepts a connection, the MQTT broker accepts a CONNECT. Each returns a ``Health`` line that
``ecpds status`` prints; none raises."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg
from aiokafka.admin import AIOKafkaAdminClient

from bus.kafka_access import kafka_options
from bus.mqtt import aprobe
from bus.settings import Settings


@dataclass(frozen=True)
class Health:
    service: str
    healthy: bool
    detail: str


async def kafka(settings: Settings, timeout: float = 5.0) -> Health:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout * 1000),
        **kafka_options(settings),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        topics = await asyncio.wait_for(admin.list_topics(), timeout)
        ecpds_topics = [t for t in topics if t.startswith("ecpds.")]
        return Health(
            "kafka", True, f"{settings.kafka_bootstrap}, {len(ecpds_topics)} ecpds topics"
        )
    except Exception as error:
        return Health("kafka", False, f"{settings.kafka_bootstrap}: {type(error).__name__} {error}")
    finally:
        await admin.close()


async def postgres(settings: Settings, timeout: float = 5.0) -> Health:
    try:
        conn = await psycopg.AsyncConnection.connect(settings.pg_dsn, connect_timeout=int(timeout))
        async with conn:
            row = await (await conn.execute("SHOW server_version")).fetchone()
        version = row[0] if row else "?"
        return Health("postgres", True, f"{_safe_dsn(settings.pg_dsn)}, PostgreSQL {version}")
    except Exception as error:
        return Health("postgres", False, f"{_safe_dsn(settings.pg_dsn)}: {error}")


async def mqtt(settings: Settings, timeout: float = 5.0) -> Health:
    where = f"{settings.mqtt_host}:{settings.mqtt_port} ({settings.mqtt_broker})"
    ok = await aprobe(settings.mqtt_host, settings.mqtt_port, timeout)
    return Health("mqtt", ok, where if ok else f"{where}: no CONNACK")


async def check_all(settings: Settings) -> list[Health]:
    return list(await asyncio.gather(kafka(settings), postgres(settings), mqtt(settings)))


def _safe_dsn(dsn: str) -> str:
    """The DSN without any password in it."""
    head, sep, tail = dsn.partition("@")
    if not sep:
        return dsn
    scheme, _, userinfo = head.partition("://")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"
