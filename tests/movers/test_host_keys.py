"""A mover with a configuration pins SFTP host keys: it records the key of a host it meets
first, and fails an order whose host offers another key than the pinned one as the host's
fault (``HostKeyChanged``), recording the refusal once on the configuration topic."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.config.source import FixedConfig
from bus.config.view import ConfigView, config_spec
from bus.events import config_changes as ev
from bus.events import envelope
from bus.events.config import Host, HostKey
from bus.events.transfers import Fault, TransferFailed, TransferSucceeded
from bus.topics import apply_topics
from consumers.movers.runner import Mover
from store.local import LocalStore
from store.named import NamedStores
from tests.acquisition.conftest import read_topic
from tests.movers.support import Outcomes, Topics, host, order, publish_orders, stored
from tests.protocols.test_sftp import LOGIN, Sshd

pytestmark = pytest.mark.kafka


@contextlib.asynccontextmanager
async def mover_with(
    kafka: str, topics: Topics, key_file: Path, store: LocalStore, view: ConfigView, config: str
) -> AsyncIterator[Mover]:
    """A mover that reads ``view`` as its configuration and records keys on ``config``."""
    settings = topics.config(kafka, key_file, config_topic=config)
    mover = Mover(settings, NamedStores(store.root, durable=False), live=FixedConfig(view))
    task = asyncio.create_task(mover.run())
    try:
        yield mover
    finally:
        mover.stop()
        await asyncio.wait_for(task, 30)


def sftp_host(sshd: Sshd) -> Host:
    return host(
        "sftp",
        f"127.0.0.1:{sshd.port}",
        login=LOGIN,
        directory=f"{sshd.data}/$destination[name]/",
        options={"sftp.privateKeyFile": str(sshd.client_key)},
    )


def defined(target: Host, *keys: HostKey) -> ConfigView:
    view = ConfigView().apply(ev.HostDefined(envelope=envelope("t", target.id), host=target))
    return view.evolve(ev.HostKeyLearned(envelope=envelope("t", k.host_id), key=k) for k in keys)


async def test_first_delivery_records_the_key_and_a_changed_key_fails_the_host(
    kafka: str,
    topics: Topics,
    outcomes: Outcomes,
    key_file: Path,
    store: LocalStore,
    sshd: Sshd,
    unique: str,
) -> None:
    """An unpinned host: delivered, and HostKeyLearned recorded with the server's key. A host
    pinned to another key: TransferFailed HostKeyChanged, the host's fault, not retriable,
    and HostKeyRefused recorded (once for two orders)."""
    config = f"test.{unique}.config"
    await apply_topics(kafka, [config_spec(config)])
    first = sftp_host(sshd)
    async with mover_with(kafka, topics, key_file, store, defined(first), config):
        sent = order(await stored(store, size=1000), first)
        await publish_orders(kafka, topics.orders, sent)
        outcome = await outcomes.wait(sent.transfer_id, (TransferSucceeded, TransferFailed))
        assert isinstance(outcome, TransferSucceeded), outcome
    (learnt,) = [e for e in await read_topic(kafka, config) if isinstance(e, ev.HostKeyLearned)]
    assert (learnt.key.host_id, learnt.key.fingerprint) == (first.id, sshd.fingerprint())

    other = sftp_host(sshd)
    stale = HostKey(
        host_id=other.id,
        address=f"127.0.0.1:{sshd.port}",
        key_type="ssh-ed25519",
        fingerprint="SHA256:" + "A" * 43,
    )
    async with mover_with(kafka, topics, key_file, store, defined(other, stale), config):
        orders = [order(await stored(store, size=1000), other) for _ in range(2)]
        await publish_orders(kafka, topics.orders, *orders)
        for sent in orders:
            failed = await outcomes.wait(sent.transfer_id, (TransferSucceeded, TransferFailed))
            assert isinstance(failed, TransferFailed), failed
            assert (failed.error_class, failed.fault, failed.retriable) == (
                "HostKeyChanged",
                Fault.HOST,
                False,
            )
            assert sshd.fingerprint() in failed.message
    refused = [e for e in await read_topic(kafka, config) if isinstance(e, ev.HostKeyRefused)]
    assert [(r.key.fingerprint, r.expected) for r in refused] == [
        (sshd.fingerprint(), stale.fingerprint)
    ]
