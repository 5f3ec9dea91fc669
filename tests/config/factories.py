"""Valid configuration entities to start tests from (change one field with ``replace``)."""

from __future__ import annotations

from bus.config.secrets import hash_password
from bus.events.config import (
    Association,
    DataUser,
    Destination,
    DestinationType,
    Host,
    HostType,
    Policy,
    TransferGroup,
)

_HASH = hash_password("portal-secret")


def destination(name: str = "site-a", **kw: object) -> Destination:
    fields: dict[str, object] = {
        "name": name,
        "type": DestinationType.DISSEMINATION,
        "transfer_group": "default",
    }
    fields.update(kw)
    return Destination(**fields)  # type: ignore[arg-type]


def host(host_id: str = "ftp-1", **kw: object) -> Host:
    fields: dict[str, object] = {
        "id": host_id,
        "nickname": f"host {host_id}",
        "type": HostType.DISSEMINATION,
        "protocol": "ftp",
        "address": "127.0.0.1:2121",
    }
    fields.update(kw)
    return Host(**fields)  # type: ignore[arg-type]


def association(dest: str = "site-a", host_id: str = "ftp-1", priority: int = 0) -> Association:
    return Association(destination=dest, host=host_id, priority=priority)


def group(name: str = "europe", **kw: object) -> TransferGroup:
    return TransferGroup(name=name, **kw)  # type: ignore[arg-type]


def user(login: str = "alice", **kw: object) -> DataUser:
    fields: dict[str, object] = {"login": login, "password_hash": _HASH}
    fields.update(kw)
    return DataUser(**fields)  # type: ignore[arg-type]


def policy(policy_id: str = "pol-1", **kw: object) -> Policy:
    return Policy(id=policy_id, **kw)  # type: ignore[arg-type]
