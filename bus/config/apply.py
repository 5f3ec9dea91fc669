"""Planning configuration changes: desired entities against the current view -> changes -> events.

Rules kept here:

- ``plan`` is pure and idempotent: planning the view that results from applying a plan's events
  plans nothing. Secrets take part in that: ``resolve`` reuses the stored ciphertext of a host
  whose clear password in the document decrypts-equal to it, and the stored encrypted hash of a
  user whose password verifies against it, so re-applying a file never re-encrypts unchanged
  secrets. A user's argon2 hash is only ever planned encrypted (``password_secret``).
- Nothing is removed unless asked (``prune``); removals go out after definitions, most
  dependent kind first, and a removal that would leave a dangling reference is refused.
- Every resulting entity is checked against the configuration it would produce
  (``validate_against``), so a plan either applies whole or is refused before any event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bus.config import KINDS, Entity, Kind, config_key, identity, key_of, kind_of
from bus.config.durations import format_duration
from bus.config.secrets import (
    ClearSecret,
    OperatorKey,
    hash_password,
    stored_hash,
    verify_password,
)
from bus.config.validate import flatten, raise_all, validate, validate_against
from bus.config.view import ConfigView
from bus.config.yamlio import Document, spoken
from bus.errors import ConfigurationError
from bus.events import Event, envelope
from bus.events import config_changes as ev
from bus.events.config import (
    Association,
    DataUser,
    Destination,
    EncryptedSecret,
    Host,
    Policy,
    TransferGroup,
)

Action = Literal["create", "change", "remove"]


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One changed field, its old and new values as shown to people (secrets masked)."""

    name: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Change:
    """One planned change: the entity to define (``None`` for a removal) and what differs."""

    action: Action
    kind: Kind
    ident: str
    entity: Entity | None
    diffs: tuple[FieldDiff, ...] = ()

    @property
    def key(self) -> str:
        return config_key(self.kind, self.ident)


def resolve(document: Document, view: ConfigView, key: OperatorKey) -> tuple[Entity, ...]:
    """The document's entities with secrets in stored form, reusing unchanged stored secrets."""
    out: list[Entity] = []
    for entity in document.entities:
        if isinstance(entity, Host):
            current = view.hosts.get(entity.id)
            stored = current.credentials if current is not None else None
            password = document.host_passwords.get(entity.id)
            if password is not None:
                entity = dataclasses.replace(
                    entity, credentials=_encrypt_unless_same(key, stored, password)
                )
            elif entity.id in document.kept_credentials:
                if stored is None:
                    raise ConfigurationError(
                        "host.credentials",
                        f"host {entity.id} has no stored credentials to keep: give password:",
                    )
                entity = dataclasses.replace(entity, credentials=stored)
        elif isinstance(entity, DataUser):
            entity = _seal_user(entity, document, view.users.get(entity.login), key)
        out.append(entity)
    return tuple(out)


def _seal_user(
    entity: DataUser, document: Document, current: DataUser | None, key: OperatorKey
) -> DataUser:
    """``entity`` with its argon2 hash encrypted in ``password_secret`` (never in clear): the
    stored one when the document's password verifies against it, or it keeps it (``password:
    {encrypted: ...}``), or gives the very same hash (an old export); else a new one."""
    old: str | None = None
    if current is not None:
        try:
            old = stored_hash(current, key)
        except ConfigurationError:
            old = None  # under a key this machine no longer has: a new password replaces it
    password = document.user_passwords.get(entity.login)
    if password is not None:
        wanted = old if old is not None and verify_password(old, password) else None
        wanted = wanted or hash_password(password)
    elif entity.login in document.kept_user_secrets:
        if old is None:
            raise ConfigurationError(
                "data_user.password",
                f"user {entity.login} has no stored password to keep: give password:",
            )
        wanted = old
    else:
        wanted = entity.password_hash
    if wanted is None:
        return dataclasses.replace(entity, password_hash=None, password_secret=None)
    same = current is not None and current.password_secret is not None and old == wanted
    secret = current.password_secret if same and current is not None else key.encrypt(wanted)
    return dataclasses.replace(entity, password_hash=None, password_secret=secret)


def reencrypt(view: ConfigView, reader: OperatorKey, writer: OperatorKey) -> tuple[Entity, ...]:
    """Every host and data user whose secret is not under ``writer``'s key yet (or is a clear
    hash from an old event), with it decrypted by ``reader`` and encrypted by ``writer``: the
    entities a key rotation redefines."""
    out: list[Entity] = []
    for host in view.hosts.values():
        c = host.credentials
        if c is not None and c.key_id != writer.key_id:
            out.append(dataclasses.replace(host, credentials=writer.encrypt(reader.decrypt(c))))
    for user in view.users.values():
        s = user.password_secret
        if (s is not None and s.key_id != writer.key_id) or user.password_hash is not None:
            digest = stored_hash(user, reader)
            assert digest is not None  # one of the two forms is set
            sealed = writer.encrypt(digest)
            out.append(dataclasses.replace(user, password_hash=None, password_secret=sealed))
    return tuple(out)


def _encrypt_unless_same(
    key: OperatorKey, stored: EncryptedSecret | None, password: ClearSecret
) -> EncryptedSecret:
    if stored is not None:
        try:
            if key.decrypt(stored).value == password.value:
                return stored
        except ConfigurationError:
            pass  # stored under another key: re-encrypting with ours is the change
    return key.encrypt(password)


def diff(old: Entity, new: Entity) -> tuple[FieldDiff, ...]:
    """The fields that differ between two versions of one entity."""
    return tuple(
        FieldDiff(f.name, show(f.name, getattr(old, f.name)), show(f.name, getattr(new, f.name)))
        for f in dataclasses.fields(new)
        if getattr(old, f.name) != getattr(new, f.name)
    )


def show(name: str, value: Any) -> str:
    """A value as shown in a diff; secrets only by their key id or as 'argon2 hash'."""
    if isinstance(value, EncryptedSecret):
        return f"encrypted:{value.key_id}"
    if name == "password_hash" and value is not None:
        return "(argon2 hash)"
    if name.endswith("_ms") and isinstance(value, int):
        return format_duration(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(show(name, v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = (
            f"{f.name}={show(f.name, getattr(value, f.name))}" for f in dataclasses.fields(value)
        )
        return "{" + ", ".join(inner) + "}"
    if hasattr(value, "value") and isinstance(value.value, str):
        return str(value.value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) + "}"
    return "-" if value is None else str(value)


def current_entity(view: ConfigView, kind: Kind, ident: str) -> Entity | None:
    """The entity of ``kind`` named ``ident`` in ``view``, if any."""
    if kind == "destination":
        return view.destinations.get(ident)
    if kind == "host":
        return view.hosts.get(ident)
    if kind == "association":
        destination, _, host = ident.partition("/")
        return view.associations.get((destination, host))
    if kind == "transfer-group":
        return view.transfer_groups.get(ident)
    if kind == "data-user":
        return view.users.get(ident)
    return view.policies.get(ident)


def entities(view: ConfigView) -> Iterable[Entity]:
    """Every entity of a view."""
    yield from view.transfer_groups.values()
    yield from view.hosts.values()
    yield from view.destinations.values()
    yield from view.associations.values()
    yield from view.users.values()
    yield from view.policies.values()


def plan(
    view: ConfigView,
    desired: Sequence[Entity],
    *,
    prune: bool = False,
    where: Mapping[tuple[str, str], str] | None = None,
) -> list[Change]:
    """The changes that turn ``view`` into ``desired`` (removals only with ``prune``),
    checked against the configuration they produce; ``where`` (``Document.where``) names the
    entities of a file by their place in it in every problem."""
    changes: list[Change] = []
    wanted: set[tuple[Kind, str]] = set()
    for entity in desired:
        validate(entity)
        kind, ident = kind_of(entity), identity(entity)
        wanted.add((kind, ident))
        old = current_entity(view, kind, ident)
        if old is None:
            changes.append(Change("create", kind, ident, entity))
        elif old != entity:
            changes.append(Change("change", kind, ident, entity, diff(old, entity)))
    if prune:
        for entity in entities(view):
            kind, ident = kind_of(entity), identity(entity)
            if (kind, ident) not in wanted:
                changes.append(Change("remove", kind, ident, None))
    return check(view, _ordered(changes), where)


def removal(view: ConfigView, kind: Kind, ident: str) -> list[Change]:
    """Removing one entity, with the associations of a removed destination or host."""
    if current_entity(view, kind, ident) is None:
        raise ConfigurationError(kind.replace("-", "_"), f"no {kind} named {ident!r}")
    changes = [Change("remove", kind, ident, None)]
    if kind in ("destination", "host"):
        for a in view.associations.values():
            if (a.destination if kind == "destination" else a.host) == ident:
                changes.append(Change("remove", "association", identity(a), None))
    return check(view, _ordered(changes))


def _ordered(changes: list[Change]) -> list[Change]:
    rank = {kind: index for index, kind in enumerate(KINDS)}
    defined = sorted((c for c in changes if c.action != "remove"), key=lambda c: rank[c.kind])
    removed = sorted((c for c in changes if c.action == "remove"), key=lambda c: -rank[c.kind])
    return defined + removed


def check(
    view: ConfigView,
    changes: list[Change],
    where: Mapping[tuple[str, str], str] | None = None,
) -> list[Change]:
    """Refuse changes that would leave a reference to something that does not exist, with
    every such problem at once (each named by its place in the file when ``where`` has it)."""
    after = view.evolve(e for _, e in events_for(changes, source="plan"))
    touched = {(c.kind, c.ident) for c in changes}
    removed = any(c.action == "remove" for c in changes)
    problems: list[ConfigurationError] = []
    for entity in entities(after):
        # with a removal anything may now dangle; otherwise only what changed needs a look
        kind, ident = kind_of(entity), identity(entity)
        if removed or (kind, ident) in touched:
            try:
                validate_against(after, entity)
            except ConfigurationError as error:
                place = (where or {}).get((kind, ident))
                label = f"{kind} {ident}"
                for e in flatten([error]):
                    problems.append(
                        spoken(e, kind.replace("-", "_"), place, label=label)
                        if place
                        else ConfigurationError(e.field, f"{e.reason} ({label})")
                    )
    raise_all(problems)
    return changes


def events_for(
    changes: Iterable[Change], *, source: str, actor: str | None = None
) -> list[tuple[str, Event]]:
    """The events (with their keys) that carry out the changes, in order."""
    out: list[tuple[str, Event]] = []
    for change in changes:
        env = envelope(source, change.key)
        event = _event(change, env, actor)
        out.append((change.key if change.entity is None else key_of(change.entity), event))
    return out


def _event(change: Change, env: Any, actor: str | None) -> Event:
    e = change.entity
    fields = tuple(d.name for d in change.diffs)
    if change.action == "remove":
        return _removed(change, env, actor)
    created = change.action == "create"
    if isinstance(e, Destination):
        if created:
            return ev.DestinationDefined(envelope=env, destination=e, actor=actor)
        return ev.DestinationChanged(
            envelope=env, destination=e, changed_fields=fields, actor=actor
        )
    if isinstance(e, Host):
        if created:
            return ev.HostDefined(envelope=env, host=e, actor=actor)
        return ev.HostChanged(envelope=env, host=e, changed_fields=fields, actor=actor)
    if isinstance(e, Association):
        if created:
            return ev.AssociationDefined(envelope=env, association=e, actor=actor)
        return ev.AssociationChanged(
            envelope=env, association=e, changed_fields=fields, actor=actor
        )
    if isinstance(e, TransferGroup):
        if created:
            return ev.TransferGroupDefined(envelope=env, transfer_group=e, actor=actor)
        return ev.TransferGroupChanged(
            envelope=env, transfer_group=e, changed_fields=fields, actor=actor
        )
    if isinstance(e, DataUser):
        if created:
            return ev.DataUserDefined(envelope=env, data_user=e, actor=actor)
        return ev.DataUserChanged(envelope=env, data_user=e, changed_fields=fields, actor=actor)
    assert isinstance(e, Policy)
    if created:
        return ev.PolicyDefined(envelope=env, policy=e, actor=actor)
    return ev.PolicyChanged(envelope=env, policy=e, changed_fields=fields, actor=actor)


def _removed(change: Change, env: Any, actor: str | None) -> Event:
    ident = change.ident
    if change.kind == "destination":
        return ev.DestinationRemoved(envelope=env, name=ident, actor=actor)
    if change.kind == "host":
        return ev.HostRemoved(envelope=env, id=ident, actor=actor)
    if change.kind == "association":
        destination, _, host = ident.partition("/")
        return ev.AssociationRemoved(envelope=env, destination=destination, host=host, actor=actor)
    if change.kind == "transfer-group":
        return ev.TransferGroupRemoved(envelope=env, name=ident, actor=actor)
    if change.kind == "data-user":
        return ev.DataUserRemoved(envelope=env, login=ident, actor=actor)
    return ev.PolicyRemoved(envelope=env, id=ident, actor=actor)
