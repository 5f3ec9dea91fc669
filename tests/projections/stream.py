"""A deterministic, realistic event stream for projection tests and the benchmark.

Configuration first (destinations, hosts with encrypted credentials, associations, a data user
with a password hash), then transfers through their lifecycle (registered, stored, queued,
scheduled, ordered, started, then done, or failed and requeued and retried, sometimes with a
superseded attempt's late outcome), interleaved across transfers the way a scheduler would
emit them, with mover heartbeats and listings between. Each item says which topic family it
goes to and its key.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bus.events import Envelope, Event
from bus.events import acquisition as a
from bus.events import config_changes as c
from bus.events import datafiles as f
from bus.events import movers as m
from bus.events import orders as o
from bus.events import transfers as t
from bus.events.base import TransferStatus
from bus.events.config import (
    Association,
    DataUser,
    Destination,
    DestinationType,
    EncryptedSecret,
    Host,
    HostType,
)
from bus.events.datafiles import Checksums
from bus.events.transfers import Verification

START = datetime(2026, 3, 1, tzinfo=UTC)
PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c3RyZWFtc2FsdA$c3RyZWFtaGFzaHN0cmVhbWhhc2g"
CIPHERTEXT = b"\x01stream-ciphertext\xfe"

FAMILIES = (
    ("config", "ecpds.config", 1),
    ("datafiles", "ecpds.datafiles", 2),
    ("acquisition", "ecpds.acquisition", 2),
    ("transfers", "ecpds.transfers", 3),
    ("orders", "ecpds.orders", 2),
    ("portal", "ecpds.portal", 1),
    ("notifications", "ecpds.notifications", 1),
    ("movers", "ecpds.movers", 1),
    ("deadletter", "ecpds.deadletter", 1),
    ("products", "ecpds.products", 1),
)
"""(family, event namespace, partitions) of the test topics."""


@dataclass(frozen=True)
class Item:
    """One event to publish: its topic family and key."""

    family: str
    key: str
    event: Event


class _Clock:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = START

    def envelope(self, correlation: str) -> Envelope:
        self.now += timedelta(microseconds=self.rng.randint(1, 2000))
        return Envelope(
            event_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            occurred_at=self.now,
            source="tests/stream",
            correlation_id=correlation,
        )


def config(clock: _Clock, destinations: int) -> Iterator[Item]:
    for d in range(destinations):
        name = f"dest-{d}"
        yield Item(
            "config",
            f"destination/{name}",
            c.DestinationDefined(
                envelope=clock.envelope(name),
                destination=Destination(
                    name=name,
                    type=DestinationType.DISSEMINATION,
                    transfer_group="europe",
                    country="fr",
                    properties={"scheduler.x": "1", "portal.password": "clear-text-password"},
                ),
            ),
        )
        host = Host(
            id=f"host-{d}",
            nickname=f"host {d}",
            type=HostType.DISSEMINATION,
            protocol="sftp",
            address="127.0.0.1:2222",
            login="ecpds",
            credentials=EncryptedSecret(key_id="k1", ciphertext=CIPHERTEXT),
            options={"sftp.mkdirs": "yes", "s3.secretKey": "clear-secret"},
        )
        yield Item(
            "config", f"host/{host.id}", c.HostDefined(envelope=clock.envelope(name), host=host)
        )
        yield Item(
            "config",
            f"association/{name}/{host.id}",
            c.AssociationDefined(
                envelope=clock.envelope(name),
                association=Association(destination=name, host=host.id, priority=0),
            ),
        )
    yield Item(
        "config",
        "data-user/alice",
        c.DataUserDefined(
            envelope=clock.envelope("alice"),
            data_user=DataUser(
                login="alice", password_hash=PASSWORD_HASH, destinations=("dest-0",)
            ),
        ),
    )


def _transfer(clock: _Clock, rng: random.Random, n: int, destinations: int) -> Iterator[Item]:
    dest = f"dest-{rng.randrange(destinations)}"
    host = f"host-{dest.rpartition('-')[2]}"
    file_id = f"file-{n}"
    tid = f"transfer-{n}"
    size = rng.randint(1, 10_000_000)
    env = clock.envelope
    yield Item(
        "datafiles",
        file_id,
        f.DataFileRegistered(
            envelope=env(file_id),
            data_file_id=file_id,
            destination=dest,
            target=f"data/{n}.grib",
            transfer_group="europe",
            expiry_time=START + timedelta(days=2),
            metadata={"n": str(n)},
        ),
    )
    yield Item(
        "datafiles",
        file_id,
        f.DataFileStored(
            envelope=env(file_id),
            data_file_id=file_id,
            guid=str(uuid.UUID(int=n + 1)),
            store="local",
            location=f"local/{n}",
            size=size,
            checksums=Checksums(adler32=f"{n:08x}"),
            duration_ms=3,
        ),
    )
    yield Item(
        "transfers",
        dest,
        t.TransferQueued(
            envelope=env(tid),
            transfer_id=tid,
            destination=dest,
            data_file_id=file_id,
            target=f"data/{n}.grib",
            status=TransferStatus.WAIT,
            priority=rng.randint(0, 99),
            queue_time=clock.now,
            expiry_time=START + timedelta(days=2),
            size=size,
        ),
    )
    attempts = 1 + (rng.random() < 0.3) + (rng.random() < 0.1)
    for attempt in range(1, attempts + 1):
        yield Item(
            "transfers",
            dest,
            t.TransferScheduled(
                envelope=env(tid),
                transfer_id=tid,
                destination=dest,
                attempt=attempt,
                host_id=host,
                transfer_group="europe",
            ),
        )
        yield Item("orders", dest, _order(env(tid), tid, dest, file_id, attempt, host, size))
        mover = f"mover-{rng.randrange(4)}"
        yield Item(
            "transfers",
            dest,
            t.TransferStarted(
                envelope=env(tid),
                transfer_id=tid,
                destination=dest,
                attempt=attempt,
                host_id=host,
                mover_id=mover,
            ),
        )
        if attempt < attempts:
            yield Item(
                "transfers",
                dest,
                t.TransferFailed(
                    envelope=env(tid),
                    transfer_id=tid,
                    destination=dest,
                    attempt=attempt,
                    host_id=host,
                    mover_id=mover,
                    error_class="ConnectionRefused",
                    message="connection refused",
                    retriable=True,
                ),
            )
            yield Item(
                "transfers",
                dest,
                t.TransferRequeued(
                    envelope=env(tid),
                    transfer_id=tid,
                    destination=dest,
                    reason="retry",
                    requeue_count=attempt,
                    queue_time=clock.now,
                ),
            )
            continue
        yield Item(
            "transfers",
            dest,
            t.TransferSucceeded(
                envelope=env(tid),
                transfer_id=tid,
                destination=dest,
                attempt=attempt,
                host_id=host,
                mover_id=mover,
                remote_path=f"/in/{n}.grib",
                bytes_sent=size,
                duration_ms=10,
                bytes_per_second=size / 0.01,
                verification=Verification.SIZE,
            ),
        )
        if attempt > 1 and rng.random() < 0.5:
            # a superseded attempt's late outcome: kept in the timeline, changes nothing else
            yield Item(
                "transfers",
                dest,
                t.TransferFailed(
                    envelope=env(tid),
                    transfer_id=tid,
                    destination=dest,
                    attempt=attempt - 1,
                    host_id=host,
                    mover_id=mover,
                    error_class="Timeout",
                    message="late outcome",
                    retriable=True,
                ),
            )


def _order(
    envelope: Envelope, tid: str, dest: str, file_id: str, attempt: int, host: str, size: int
) -> o.TransferOrdered:
    return o.TransferOrdered(
        envelope=envelope,
        transfer_id=tid,
        destination=dest,
        data_file_id=file_id,
        attempt=attempt,
        transfer_group="europe",
        host=Host(
            id=host,
            nickname=host,
            type=HostType.DISSEMINATION,
            protocol="sftp",
            address="127.0.0.1:2222",
            credentials=EncryptedSecret(key_id="k1", ciphertext=CIPHERTEXT),
        ),
        target="t",
        guid="g",
        store="local",
        location="local/x",
        size=size,
        checksums=Checksums(adler32="00000001"),
        priority=50,
        expiry_time=START + timedelta(days=2),
    )


def events(
    transfers: int,
    *,
    destinations: int = 20,
    seed: int = 7,
    first: int = 0,
    with_config: bool = True,
) -> list[Item]:
    """The stream: configuration, then ``transfers`` lifecycles (numbered from ``first``)
    interleaved, with heartbeats and listings."""
    rng = random.Random(seed)
    clock = _Clock(rng)
    if first:
        clock.now += timedelta(hours=1)
    items = list(config(clock, destinations)) if with_config else []
    live: list[Iterator[Item]] = []
    n = first
    transfers += first
    while n < transfers or live:
        while n < transfers and len(live) < 50:
            live.append(_transfer(clock, rng, n, destinations))
            n += 1
        i = rng.randrange(len(live))
        item = next(live[i], None)
        if item is None:
            live.pop(i)
            continue
        items.append(item)
        if rng.random() < 0.02:
            mover = f"mover-{rng.randrange(4)}"
            items.append(
                Item(
                    "movers",
                    mover,
                    m.MoverHeartbeat(
                        envelope=clock.envelope(mover),
                        mover_id=mover,
                        transfer_group="europe",
                        capacity=8,
                        running=rng.randrange(8),
                        started_at=START,
                    ),
                )
            )
        if rng.random() < 0.01:
            host = f"host-{rng.randrange(destinations)}"
            items.append(
                Item(
                    "acquisition",
                    host,
                    a.ListingCompleted(
                        envelope=clock.envelope(host),
                        host_id=host,
                        destination="dest-0",
                        started_at=clock.now,
                        duration_ms=rng.randint(1, 500),
                        entries_listed=rng.randint(0, 100),
                    ),
                )
            )
    return items
