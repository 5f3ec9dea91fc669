"""The pure side of projections: the handler registry and what handlers write."""

from __future__ import annotations

import re

from bus.events import EVENT_TYPES, envelope
from bus.events.portal import AccessDeniedReason, PortalAccessDenied
from projections.handlers import HANDLERS
from projections.handlers.base import FREE, REDACTED, Write, redacted
from projections.handlers.plan import plan
from tests.bus.samples import SAMPLES
from tests.projections.stream import CIPHERTEXT, PASSWORD_HASH, events

SECRETS_IN_SAMPLES = (
    SAMPLES["ecpds.config.DataUserDefined"].data_user.password_hash,  # type: ignore[attr-defined]
    SAMPLES["ecpds.config.HostDefined"].host.credentials.ciphertext,  # type: ignore[attr-defined]
)


def _flat(value: object) -> list[object]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    obj = getattr(value, "obj", None)  # Jsonb
    if obj is not None:
        return [str(obj)]
    return [value]


def test_every_event_type_has_exactly_one_handler() -> None:
    """The registry covers every event type of the catalogue, and nothing else."""
    assert set(HANDLERS) == set(EVENT_TYPES)


def test_every_sample_produces_writes_to_known_tables() -> None:
    """Each sample event gives at least one SQL write, each naming the table it writes."""
    for name, event in SAMPLES.items():
        writes = HANDLERS[name](event)
        assert writes, name
        for write in writes:
            assert re.search(r"\b(INSERT INTO|UPDATE) [a-z_]+", write.sql), (name, write.sql)
            assert write.sql.count("%s") == len(write.params), (name, write.sql)


def test_no_write_carries_a_secret() -> None:
    """No parameter of any write holds a password hash, a ciphertext or a secret option."""
    sources = list(SAMPLES.values()) + [item.event for item in events(5)]
    secrets = (
        *SECRETS_IN_SAMPLES,
        PASSWORD_HASH,
        CIPHERTEXT,
        "clear-secret",
        "clear-text-password",
    )
    for event in sources:
        for write in HANDLERS[event.AVRO_NAME](event):
            for value in _flat(write.params):
                for secret in secrets:
                    if isinstance(secret, bytes):
                        assert not (isinstance(value, bytes) and secret in value), event.AVRO_NAME
                    else:
                        assert secret not in str(value), (event.AVRO_NAME, write.sql)


def test_secret_looking_options_are_redacted() -> None:
    """Options whose key looks like a secret keep the key but lose the value."""
    options = {"s3.secretKey": "x", "password": "y", "api_token": "z", "sftp.mkdirs": "yes"}
    assert redacted(options).obj == {
        "s3.secretKey": REDACTED,
        "password": REDACTED,
        "api_token": REDACTED,
        "sftp.mkdirs": "yes",
    }


def test_plan_keeps_each_key_in_order_and_groups_the_rest() -> None:
    """Writes of one key stay in event order, other writes are grouped by statement, and a
    barrier runs between what came before and after it."""
    a, b, barrier = "INSERT INTO a", "INSERT INTO b", "UPDATE c"
    writes = [
        Write(a, (1,), ("t", 1)),
        Write(b, (1,), ("t", 1)),
        Write(a, (2,), ("t", 2)),
        Write(b, (2,), ("t", 2)),
        Write(a, (3,), FREE),
        Write(barrier, (0,)),
        Write(a, (4,), ("t", 1)),
    ]
    steps = [(step.sql, step.params) for step in plan(writes)]
    assert steps == [
        (a, [(1,), (2,), (3,)]),
        (b, [(1,), (2,)]),
        (barrier, [(0,)]),
        (a, [(4,)]),
    ]


def test_a_portal_denial_is_counted_under_the_destination_its_path_names() -> None:
    """A denied ``/dest-p/a/b.grib`` is a portal_access row of destination ``dest-p``; a
    path outside any destination (or none) has no destination."""

    def row(path: str | None) -> tuple[object, ...]:
        event = PortalAccessDenied(
            envelope=envelope("tests", "u"),
            user="u",
            protocol="sftp",
            reason=AccessDeniedReason.NO_PERMISSION,
            message="no",
            path=path,
        )
        (write,) = HANDLERS[PortalAccessDenied.AVRO_NAME](event)
        return tuple(write.params)

    assert row("/dest-p/a/b.grib")[4] == "dest-p"
    assert row("/")[4] is None
    assert row(None)[4] is None
