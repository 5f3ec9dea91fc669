"""Projection of ``ecpds.config``: destinations, hosts, associations, transfer groups, data
users and policies, plus ``config_changes`` (who changed what, when). A host's SSH keys
learnt, trusted and refused are audit rows of the host (a refused key also reaches the host
page as the failure of the connection it refused: ``HostKeyChanged`` in ``last_error``).

Rule kept here: configuration columns only. Status columns of the same rows come from
``ecpds.transfers`` and are never touched here, so the two topics commute. Hosts keep
``has_credentials``, data users ``has_password``: never the ciphertext or the hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg.types.json import Jsonb

from bus.codec import to_json
from bus.events import config_changes as c
from bus.events.base import Event
from bus.events.config import Association, DataUser, Host, Policy, TransferGroup
from projections.handlers.base import (
    FREE,
    Handler,
    Write,
    redacted,
    registrar,
    short_type,
    text,
    texts,
)

HANDLERS: dict[str, Handler] = {}
on = registrar(HANDLERS, {"config_changes": FREE})

_AUDIT = (
    "INSERT INTO config_changes (event_id, occurred_at, event_type, kind, entity,"
    " changed_fields, actor) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def _audit(event: Event, kind: str, entity: str, actor: str | None) -> Write:
    changed = list(getattr(event, "changed_fields", ()))
    env = event.envelope
    return Write(
        _AUDIT,
        (env.event_id, env.occurred_at, short_type(event), kind, entity, changed, actor),
    )


def _removal(
    table: LiteralString, column: LiteralString, key: str, kind: str, event: Any
) -> Sequence[Write]:
    """A removed entity keeps its row, flagged, with who removed it and when (the audit)."""
    # table and column are LiteralString constants of this module, never input
    sql = (
        "INSERT INTO " + table + " (" + column + ", removed, config_changed_at,"  # noqa: S608
        " config_changed_by) VALUES (%s, true, %s, %s) ON CONFLICT (" + column + ")"
        " DO UPDATE SET removed = true, config_changed_at = EXCLUDED.config_changed_at,"
        " config_changed_by = EXCLUDED.config_changed_by"
    )
    return (
        Write(sql, (key, event.envelope.occurred_at, event.actor)),
        _audit(event, kind, key, event.actor),
    )


# --- destinations ---------------------------------------------------------------------------

_DESTINATION = (
    "INSERT INTO destinations AS d (name, defined, removed, type, transfer_group, country, owner,"
    " comment, active, standby, max_connections, retry_count, retry_frequency_ms, max_start,"
    " max_requeue, max_pending, max_file_size, on_host_failure, compression,"
    " default_lifetime_ms, config, config_changed_at, config_changed_by)"
    " VALUES (%s, true, false, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " %s, %s, %s, %s)"
    " ON CONFLICT (name) DO UPDATE SET defined = true, removed = false, type = EXCLUDED.type,"
    " transfer_group = EXCLUDED.transfer_group, country = EXCLUDED.country,"
    " owner = EXCLUDED.owner, comment = EXCLUDED.comment, active = EXCLUDED.active,"
    " standby = EXCLUDED.standby, max_connections = EXCLUDED.max_connections,"
    " retry_count = EXCLUDED.retry_count, retry_frequency_ms = EXCLUDED.retry_frequency_ms,"
    " max_start = EXCLUDED.max_start, max_requeue = EXCLUDED.max_requeue,"
    " max_pending = EXCLUDED.max_pending, max_file_size = EXCLUDED.max_file_size,"
    " on_host_failure = EXCLUDED.on_host_failure, compression = EXCLUDED.compression,"
    " default_lifetime_ms = EXCLUDED.default_lifetime_ms, config = EXCLUDED.config,"
    " config_changed_at = EXCLUDED.config_changed_at,"
    " config_changed_by = EXCLUDED.config_changed_by"
)


def _destination_json(event: c.DestinationDefined | c.DestinationChanged) -> Jsonb:
    value = to_json(event)["destination"]
    assert isinstance(value, dict)
    value["properties"] = redacted(event.destination.properties).obj
    return Jsonb(value)


def _define_destination(event: c.DestinationDefined | c.DestinationChanged) -> Sequence[Write]:
    d = event.destination
    env = event.envelope
    row = (
        d.name,
        text(d.type),
        d.transfer_group,
        d.country,
        d.owner,
        d.comment,
        d.active,
        d.standby,
        d.max_connections,
        d.retry_count,
        d.retry_frequency_ms,
        d.max_start,
        d.max_requeue,
        d.max_pending,
        d.max_file_size,
        text(d.on_host_failure),
        text(d.compression),
        d.default_lifetime_ms,
        _destination_json(event),
        env.occurred_at,
        event.actor,
    )
    return (Write(_DESTINATION, row), _audit(event, "destination", d.name, event.actor))


on(c.DestinationDefined)(_define_destination)
on(c.DestinationChanged)(_define_destination)


@on(c.DestinationRemoved)
def _remove_destination(event: c.DestinationRemoved) -> Sequence[Write]:
    return _removal("destinations", "name", event.name, "destination", event)


# --- hosts ------------------------------------------------------------------------------------

_HOST = (
    "INSERT INTO hosts AS h (id, defined, removed, nickname, type, protocol, address, login,"
    " has_credentials, directory, options, max_connections, retry_count, retry_frequency_ms,"
    " polling_frequency_ms, active, transfer_group, network_code, comment, config_changed_at,"
    " config_changed_by)"
    " VALUES (%s, true, false, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " %s, %s)"
    " ON CONFLICT (id) DO UPDATE SET defined = true, removed = false,"
    " nickname = EXCLUDED.nickname, type = EXCLUDED.type, protocol = EXCLUDED.protocol,"
    " address = EXCLUDED.address, login = EXCLUDED.login,"
    " has_credentials = EXCLUDED.has_credentials, directory = EXCLUDED.directory,"
    " options = EXCLUDED.options, max_connections = EXCLUDED.max_connections,"
    " retry_count = EXCLUDED.retry_count, retry_frequency_ms = EXCLUDED.retry_frequency_ms,"
    " polling_frequency_ms = EXCLUDED.polling_frequency_ms, active = EXCLUDED.active,"
    " transfer_group = EXCLUDED.transfer_group, network_code = EXCLUDED.network_code,"
    " comment = EXCLUDED.comment, config_changed_at = EXCLUDED.config_changed_at,"
    " config_changed_by = EXCLUDED.config_changed_by"
)


def _define_host(event: c.HostDefined | c.HostChanged) -> Sequence[Write]:
    h: Host = event.host
    row = (
        h.id,
        h.nickname,
        text(h.type),
        h.protocol,
        h.address,
        h.login,
        h.credentials is not None,  # whether there is one: never the ciphertext
        h.directory,
        redacted(h.options),
        h.max_connections,
        h.retry_count,
        h.retry_frequency_ms,
        h.polling_frequency_ms,
        h.active,
        h.transfer_group,
        h.network_code,
        h.comment,
        event.envelope.occurred_at,
        event.actor,
    )
    return (Write(_HOST, row), _audit(event, "host", h.id, event.actor))


on(c.HostDefined)(_define_host)
on(c.HostChanged)(_define_host)


@on(c.HostRemoved)
def _remove_host(event: c.HostRemoved) -> Sequence[Write]:
    return _removal("hosts", "id", event.id, "host", event)


def _host_key(event: c.HostKeyLearned | c.HostKeyTrusted | c.HostKeyRefused) -> Sequence[Write]:
    actor = event.actor if isinstance(event, c.HostKeyTrusted) else None
    return (_audit(event, "host", event.key.host_id, actor),)


on(c.HostKeyLearned)(_host_key)
on(c.HostKeyTrusted)(_host_key)
on(c.HostKeyRefused)(_host_key)


# --- associations -------------------------------------------------------------------------------

# priority is also set by HostPriorityChanged (ecpds.transfers): the later event time wins
_ASSOCIATION = (
    "INSERT INTO associations AS a (destination, host, defined, removed, priority,"
    " priority_set_at) VALUES (%s, %s, true, false, %s, %s)"
    " ON CONFLICT (destination, host) DO UPDATE SET defined = true, removed = false,"
    " priority = CASE WHEN a.priority_set_at IS NULL"
    " OR a.priority_set_at <= EXCLUDED.priority_set_at"
    " THEN EXCLUDED.priority ELSE a.priority END,"
    " priority_set_at = greatest(a.priority_set_at, EXCLUDED.priority_set_at)"
)


def _define_association(event: c.AssociationDefined | c.AssociationChanged) -> Sequence[Write]:
    a: Association = event.association
    entity = f"{a.destination}/{a.host}"
    return (
        Write(_ASSOCIATION, (a.destination, a.host, a.priority, event.envelope.occurred_at)),
        _audit(event, "association", entity, event.actor),
    )


on(c.AssociationDefined)(_define_association)
on(c.AssociationChanged)(_define_association)


@on(c.AssociationRemoved)
def _remove_association(event: c.AssociationRemoved) -> Sequence[Write]:
    return (
        Write(
            "INSERT INTO associations (destination, host, removed) VALUES (%s, %s, true)"
            " ON CONFLICT (destination, host) DO UPDATE SET removed = true",
            (event.destination, event.host),
        ),
        _audit(event, "association", f"{event.destination}/{event.host}", event.actor),
    )


# --- transfer groups, data users, policies --------------------------------------------------------

_GROUP = (
    "INSERT INTO transfer_groups AS g (name, removed, region, stores, backup_host, backup,"
    " replicate, min_replication_count, active, comment, config_changed_at, config_changed_by)"
    " VALUES (%s, false, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (name) DO UPDATE SET removed = false, region = EXCLUDED.region,"
    " stores = EXCLUDED.stores, backup_host = EXCLUDED.backup_host, backup = EXCLUDED.backup,"
    " replicate = EXCLUDED.replicate, min_replication_count = EXCLUDED.min_replication_count,"
    " active = EXCLUDED.active, comment = EXCLUDED.comment,"
    " config_changed_at = EXCLUDED.config_changed_at,"
    " config_changed_by = EXCLUDED.config_changed_by"
)


def _define_group(event: c.TransferGroupDefined | c.TransferGroupChanged) -> Sequence[Write]:
    g: TransferGroup = event.transfer_group
    row = (
        g.name,
        g.region,
        list(g.stores),
        g.backup_host,
        g.backup,
        g.replicate,
        g.min_replication_count,
        g.active,
        g.comment,
        event.envelope.occurred_at,
        event.actor,
    )
    return (Write(_GROUP, row), _audit(event, "transfer-group", g.name, event.actor))


on(c.TransferGroupDefined)(_define_group)
on(c.TransferGroupChanged)(_define_group)


@on(c.TransferGroupRemoved)
def _remove_group(event: c.TransferGroupRemoved) -> Sequence[Write]:
    return _removal("transfer_groups", "name", event.name, "transfer-group", event)


_USER = (
    "INSERT INTO data_users AS u (login, removed, has_password, ssh_key_count, destinations,"
    " operations, portal_service, active, country, comment, properties, config_changed_at,"
    " config_changed_by) VALUES (%s, false, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (login) DO UPDATE SET removed = false, has_password = EXCLUDED.has_password,"
    " ssh_key_count = EXCLUDED.ssh_key_count, destinations = EXCLUDED.destinations,"
    " operations = EXCLUDED.operations, portal_service = EXCLUDED.portal_service,"
    " active = EXCLUDED.active, country = EXCLUDED.country, comment = EXCLUDED.comment,"
    " properties = EXCLUDED.properties, config_changed_at = EXCLUDED.config_changed_at,"
    " config_changed_by = EXCLUDED.config_changed_by"
)


def _define_user(event: c.DataUserDefined | c.DataUserChanged) -> Sequence[Write]:
    u: DataUser = event.data_user
    row = (
        u.login,
        u.password_secret is not None or u.password_hash is not None,  # set? never the hash
        len(u.ssh_authorized_keys),
        list(u.destinations),
        texts(u.operations),
        text(u.portal_service),
        u.active,
        u.country,
        u.comment,
        redacted(u.properties),
        event.envelope.occurred_at,
        event.actor,
    )
    return (Write(_USER, row), _audit(event, "data-user", u.login, event.actor))


on(c.DataUserDefined)(_define_user)
on(c.DataUserChanged)(_define_user)


@on(c.DataUserRemoved)
def _remove_user(event: c.DataUserRemoved) -> Sequence[Write]:
    return _removal("data_users", "login", event.login, "data-user", event)


_POLICY = (
    "INSERT INTO policies AS p (id, removed, active, destinations, users, comment, properties,"
    " config_changed_at, config_changed_by) VALUES (%s, false, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (id) DO UPDATE SET removed = false, active = EXCLUDED.active,"
    " destinations = EXCLUDED.destinations, users = EXCLUDED.users,"
    " comment = EXCLUDED.comment, properties = EXCLUDED.properties,"
    " config_changed_at = EXCLUDED.config_changed_at,"
    " config_changed_by = EXCLUDED.config_changed_by"
)


def _define_policy(event: c.PolicyDefined | c.PolicyChanged) -> Sequence[Write]:
    p: Policy = event.policy
    row = (
        p.id,
        p.active,
        list(p.destinations),
        list(p.users),
        p.comment,
        redacted(p.properties),
        event.envelope.occurred_at,
        event.actor,
    )
    return (Write(_POLICY, row), _audit(event, "policy", p.id, event.actor))


on(c.PolicyDefined)(_define_policy)
on(c.PolicyChanged)(_define_policy)


@on(c.PolicyRemoved)
def _remove_policy(event: c.PolicyRemoved) -> Sequence[Write]:
    return _removal("policies", "id", event.id, "policy", event)


__all__ = ["HANDLERS"]
