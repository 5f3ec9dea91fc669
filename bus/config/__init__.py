"""Configuration as events: validation, secrets, the live view and configuration as code.

Every entity on ``ecpds.config`` is keyed ``kind/id`` (``destination/NAME``, ``host/ID``,
``association/DEST/HOST``, ``transfer-group/NAME``, ``data-user/LOGIN``, ``policy/ID``) so the
compacted topic keeps the latest definition of each. A removal is a ``*Removed`` event on the
same key (not a tombstone), which keeps the audit trail of who removed what.
"""

from __future__ import annotations

from typing import Literal

from bus.events.config import Association, DataUser, Destination, Host, Policy, TransferGroup

Kind = Literal["destination", "host", "association", "transfer-group", "data-user", "policy"]
Entity = Destination | Host | Association | TransferGroup | DataUser | Policy

KINDS: tuple[Kind, ...] = (
    "transfer-group",
    "host",
    "destination",
    "association",
    "data-user",
    "policy",
)
"""Every kind, in the order definitions are published (referenced kinds first)."""

KNOWN_SCHEMES: tuple[str, ...] = (
    "ftp",
    "ftps",
    "sftp",
    "http",
    "https",
    "s3",
    "az",
    "gs",
    "file",
    "memory",
)
"""URL schemes of the transfer modules (``protocols.registry.MODULES``; ``bus`` may not import
``protocols``, so a test keeps the two in step)."""


def kind_of(entity: Entity) -> Kind:
    """The kind of an entity."""
    if isinstance(entity, Destination):
        return "destination"
    if isinstance(entity, Host):
        return "host"
    if isinstance(entity, Association):
        return "association"
    if isinstance(entity, TransferGroup):
        return "transfer-group"
    if isinstance(entity, DataUser):
        return "data-user"
    return "policy"


def identity(entity: Entity) -> str:
    """The id of an entity within its kind (an association's is ``DEST/HOST``)."""
    if isinstance(entity, Destination | TransferGroup):
        return entity.name
    if isinstance(entity, Host | Policy):
        return entity.id
    if isinstance(entity, Association):
        return f"{entity.destination}/{entity.host}"
    return entity.login


def config_key(kind: Kind, ident: str) -> str:
    """The Kafka key of an entity on ``ecpds.config``."""
    return f"{kind}/{ident}"


def key_of(entity: Entity) -> str:
    """The Kafka key of an entity."""
    return config_key(kind_of(entity), identity(entity))


__all__ = [
    "KINDS",
    "KNOWN_SCHEMES",
    "Entity",
    "Kind",
    "config_key",
    "identity",
    "key_of",
    "kind_of",
]
