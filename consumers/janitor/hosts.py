"""The janitor's one effect on destination hosts: removing a temporary file a mover left.

``HostFiles.remove`` connects to the host as a mover would (its Location, its decrypted
credential) through a connection pool, so the leftovers of one host in a sweep share a
connection, and deletes one path; a path already gone counts as removed. Errors are
the transfer modules' own (``TransferError`` with ``retriable``), so the sweep can tell a host
that is down (try again at the next sweep) from a refusal (give up, logged).
"""

from __future__ import annotations

from pathlib import Path

from bus.config.secrets import host_password
from bus.events.config import Host
from protocols.base import NotFound
from protocols.location import location_for
from protocols.pool import ConnectionPool


class HostFiles:
    """Deletes files on hosts, credentials decrypted with the operator's key file."""

    def __init__(self, key_file: Path) -> None:
        self._key_file = key_file
        self._pool = ConnectionPool(per_key=1, idle_timeout=30.0)

    async def remove(self, host: Host, path: str) -> None:
        password = host_password(host, self._key_file)
        async with self._pool.connection(location_for(host, password)) as conn:
            try:
                await conn.delete(path)
            except NotFound:
                return

    async def close(self) -> None:
        await self._pool.close()
