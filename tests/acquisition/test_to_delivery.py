"""Acquisition to delivery, nobody touching the file: a real acquisition runner process polls an
OpenSSH sshd provider; a file dropped there is discovered, retrieved into the store, queued,
scheduled by the real scheduler and delivered by a real mover to a local-folder destination.

The whole path is read back from the log as one chain: the listing that saw the file, its
discovery, the registration and storage of its bytes, the retrieval outcome, the transfer
queued, started and succeeded — each event caused by the one before it and, from the
registration on, carrying the data file's id as its correlation id. The stack (ingest API,
scheduler, mover) is the end-to-end suite's ``stack`` fixture, on its own topics.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable

import pytest

from bus.events import Event
from bus.events.acquisition import FileDiscovered, ListingCompleted, RetrievalSucceeded
from bus.events.datafiles import DataFileRegistered, DataFileStored
from bus.events.orders import TransferOrdered
from bus.events.transfers import (
    TransferQueued,
    TransferScheduled,
    TransferStarted,
    TransferSucceeded,
)
from producers.acquisition.state import requester
from tests.acquisition.conftest import read_topic
from tests.acquisition.test_runner import kinds
from tests.e2e.conftest import Stack, stack
from tests.protocols.test_sftp import LOGIN, Sshd, sshd

__all__ = ["sshd", "stack"]

pytestmark = pytest.mark.kafka
WAIT = 90.0


async def until(
    kafka: str, topic: str, check: Callable[[list[Event]], bool], timeout: float = WAIT
) -> list[Event]:
    """Re-read ``topic`` until ``check`` holds on its events (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await read_topic(kafka, topic)
        if check(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met on {topic}: {found[-5:]}")
        await asyncio.sleep(0.3)


def configuration(stack: Stack, sshd: Sshd, drop: str, outbox: str) -> str:
    """An acquisition destination fed by the SFTP provider and delivered to a local folder."""
    tag = stack.tag
    return (
        f"hosts:\n"
        f"  - id: prov-{tag}\n    nickname: sftp provider\n    type: acquisition\n"
        f"    protocol: sftp\n    address: 127.0.0.1:{sshd.port}\n    login: {LOGIN}\n"
        f'    directory: "{drop}/{{.*\\\\.grib}}"\n    polling_frequency: 500ms\n'
        f"    options:\n"
        f'      sftp.privateKeyFile: "{sshd.client_key}"\n'
        f'      sftp.fingerPrint: "{sshd.fingerprint()}"\n'
        f"  - id: out-{tag}\n    nickname: outbox\n    type: dissemination\n"
        f"    protocol: file\n    address: localhost{outbox}\n    directory: acq/\n"
        f"destinations:\n  - name: acqd-{tag}\n    type: acquisition\n"
        f"    transfer_group: {stack.group}\n"
        f"associations:\n"
        f"  - {{destination: acqd-{tag}, host: prov-{tag}, priority: 0}}\n"
        f"  - {{destination: acqd-{tag}, host: out-{tag}, priority: 0}}\n"
    )


def start_acquisition(stack: Stack) -> None:
    """``python -m producers.acquisition.runner`` on the stack's topics and store."""
    stack._spawn(
        "acquisition",
        [
            "-m", "producers.acquisition.runner",
            "--config-topic", stack.topic("config"),
            "--acquisition-topic", stack.topic("acquisition"),
            "--datafiles-topic", stack.topic("datafiles"),
            "--transfers-topic", stack.topic("transfers"),
            "--store-root", str(stack.root / "store"),
        ],
    )  # fmt: skip


@pytest.mark.slow
async def test_file_dropped_on_sftp_provider_reaches_its_destination(
    stack: Stack, sshd: Sshd
) -> None:
    """A file dropped on a polled SFTP provider is delivered whole to the destination's folder
    with no one acting on it, and its path is one chain of events linked by causation and by
    the data file's correlation id, from the listing that found it to TransferSucceeded."""
    tag, kafka = stack.tag, stack.kafka
    host, dest = f"prov-{tag}", f"acqd-{tag}"
    drop = sshd.data / f"drop-{tag}"
    drop.mkdir()
    outbox = stack.root / f"outbox-{tag}"
    outbox.mkdir()
    await stack.apply(configuration(stack, sshd, str(drop), str(outbox)))
    acquisition, datafiles = stack.topic("acquisition"), stack.topic("datafiles")
    start_acquisition(stack)
    try:
        # the runner polls the empty drop folder first: the file arrives while it runs
        await until(
            kafka,
            acquisition,
            lambda es: any(isinstance(e, ListingCompleted) and e.host_id == host for e in es),
        )
        data = os.urandom(300 * 1024)
        (drop / ".incoming.part").write_bytes(data)
        os.replace(drop / ".incoming.part", drop / "obs.grib")  # the provider's atomic drop
        assert stack.tail is not None
        await stack.tail.all_done(dest, 1)
        assert (outbox / "acq" / "obs.grib").read_bytes() == data
        # later polls see the file again and leave it alone
        seen = len(kinds(await read_topic(kafka, acquisition), ListingCompleted))
        acq_events = await until(
            kafka, acquisition, lambda es: len(kinds(es, ListingCompleted)) >= seen + 3
        )
    finally:
        await asyncio.to_thread(stack.stop, "acquisition")

    discovered = [e for e in kinds(acq_events, FileDiscovered) if e.host_id == host]
    assert [e.name for e in discovered] == ["obs.grib"]  # once, never again
    found = discovered[0]
    cause = found.envelope.causation_id
    listing = next(e for e in kinds(acq_events, ListingCompleted) if e.envelope.event_id == cause)
    assert (listing.host_id, listing.files_new, listing.errors) == (host, 1, ())
    assert found.size == len(data)
    retrieved = next(e for e in kinds(acq_events, RetrievalSucceeded) if e.host_id == host)
    dfid = retrieved.data_file_id
    assert (retrieved.size, retrieved.envelope.causation_id) == (len(data), found.envelope.event_id)

    files = [e for e in await read_topic(kafka, datafiles) if e.envelope.correlation_id == dfid]
    registered = kinds(files, DataFileRegistered)[0]
    stored = kinds(files, DataFileStored)[0]
    assert registered.envelope.causation_id == found.envelope.event_id
    assert (registered.acquisition_host, registered.requested_by) == (host, requester(host))
    assert (registered.destination, registered.target) == (dest, "obs.grib")
    assert stored.envelope.causation_id == registered.envelope.event_id
    assert stored.size == len(data)

    queued = [e for e in kinds(stack.tail.events, TransferQueued) if e.data_file_id == dfid]
    assert [(e.destination, e.size) for e in queued] == [(dest, len(data))]
    transfer = queued[0].transfer_id
    path = [e for e in stack.tail.events if getattr(e, "transfer_id", None) == transfer]
    scheduled = kinds(path, TransferScheduled)[0]
    orders = kinds(await read_topic(kafka, stack.orders), TransferOrdered)
    (ordered,) = [e for e in orders if e.transfer_id == transfer]
    started = kinds(path, TransferStarted)[0]
    succeeded = kinds(path, TransferSucceeded)[0]
    assert succeeded.host_id == f"out-{tag}"
    assert started.attempt == succeeded.attempt == ordered.attempt

    # one chain: each event caused by the one before it (the mover's outcomes by the order)
    chain: list[Event] = [listing, found, registered, stored, queued[0], scheduled, ordered]
    chain += [started, succeeded]
    links = [*itertools.pairwise(chain[:-1]), (ordered, succeeded)]
    for before, effect in links:
        assert effect.envelope.causation_id == before.envelope.event_id, type(effect).__name__
    times = [e.envelope.occurred_at for e in chain]
    assert times == sorted(times), [type(e).__name__ for e in chain]
    assert retrieved.envelope.occurred_at >= stored.envelope.occurred_at
    # from the registration on, the data file's id correlates the file's events; the mover's
    # outcomes correlate by their transfer
    assert all(e.envelope.correlation_id == dfid for e in chain[2:7])
    assert started.envelope.correlation_id == succeeded.envelope.correlation_id == transfer
